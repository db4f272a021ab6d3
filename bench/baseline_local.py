"""The baseline of bench/local_profile.py: the SQL the local profile runs for one session (a login
role with a scram password, its database, no PUBLIC access), through psycopg on the same running
server, in a whole process that imports nothing of mk0r:
    python bench/baseline_local.py <admin dsn> <identifier>"""
import secrets
import sys

import psycopg
from psycopg import sql

dsn, ident = sys.argv[1], sys.argv[2]
password = secrets.token_urlsafe(24)
with psycopg.connect(dsn, autocommit=True) as conn:
    hashed = conn.pgconn.encrypt_password(password.encode(), ident.encode(), b"scram-sha-256").decode()
    conn.execute(sql.SQL("CREATE ROLE {} WITH LOGIN PASSWORD {}").format(sql.Identifier(ident), sql.Literal(hashed)))
    conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(ident), sql.Identifier(ident)))
    conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(sql.Identifier(ident)))
    print(f"postgresql://{ident}:{password}@{conn.info.host}:{conn.info.port}/{ident}")
