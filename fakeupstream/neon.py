"""Neon API v2: projects, their operations, connection URIs, /users/me (neon.json)."""

from __future__ import annotations

import random
import re
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from .common import BadRequest, Request, Response, iso, iso_us, json_response, rand_alnum

_ADJ = ("autumn", "bitter", "black", "blue", "bold", "broad", "calm", "cold", "crimson", "curly",
        "damp", "dark", "divine", "dry", "falling", "floral", "fragrant", "frosty", "gentle", "green",
        "hidden", "icy", "jolly", "little", "lively", "lucky", "misty", "morning", "muddy", "odd",
        "old", "patient", "plain", "polished", "proud", "purple", "quiet", "rapid", "red", "royal",
        "shiny", "silent", "small", "snowy", "soft", "spring", "still", "summer", "sweet", "tiny",
        "twilight", "wandering", "white", "wild", "winter", "wispy", "yellow", "young")
_NOUN = ("art", "band", "bird", "block", "boat", "bread", "breeze", "brook", "bush", "cake", "cell",
         "cherry", "cloud", "darkness", "dawn", "dew", "dream", "dust", "feather", "field", "fire",
         "flower", "fog", "forest", "frog", "frost", "glade", "grass", "haze", "heart", "hill",
         "king", "lake", "leaf", "meadow", "moon", "mountain", "mouse", "night", "paper", "pine",
         "pond", "queen", "rain", "river", "sea", "shadow", "sky", "smoke", "snow", "sound", "star",
         "sun", "sunset", "surf", "thunder", "tree", "violet", "voice", "water", "wave", "wind")



def neon_name(rng: random.Random, prefix: str = "") -> str:
    return f"{prefix}{rng.choice(_ADJ)}-{rng.choice(_NOUN)}-{rng.randrange(10**7, 10**8)}"


def region_host(region_id: str) -> str:
    """aws-us-east-2 -> us-east-2.aws.neon.tech ; azure-eastus2 -> eastus2.azure.neon.tech"""
    platform, _, rest = region_id.partition("-")
    return f"{rest}.{platform}.neon.tech"




# -- serialisers: the JSON shapes of neon.json, used by the routes below and by tests/cloudmock.py
def project_obj(pid: str, name: str, region: str, pg_version: int, created: datetime, *,
                org_id: str | None = None, store_passwords: bool = True,
                history_retention_seconds: int = 86400) -> dict:
    """A ``Project`` as Neon returns it right after the create."""
    ts = iso(created)
    project = {
        "id": pid, "platform_id": region.split("-", 1)[0], "region_id": region,
        "name": name, "provisioner": "k8s-neonvm",
        "default_endpoint_settings": {"autoscaling_limit_min_cu": 0.25, "autoscaling_limit_max_cu": 2,
                                      "suspend_timeout_seconds": 0},
        "settings": {"allowed_ips": {"ips": [], "protected_branches_only": False},
                     "enable_logical_replication": False},
        "pg_version": pg_version, "proxy_host": region_host(region),
        "branch_logical_size_limit": 512, "branch_logical_size_limit_bytes": 536870912,
        "store_passwords": store_passwords, "active_time_seconds": 0,
        "compute_time_seconds": 0, "written_data_bytes": 0, "data_transfer_bytes": 0,
        "data_storage_bytes_hour": 0, "cpu_used_sec": 0, "creation_source": "console",
        "history_retention_seconds": history_retention_seconds,
        "created_at": ts, "updated_at": ts,
        "consumption_period_start": iso(created.replace(day=1, hour=0, minute=0, second=0, microsecond=0)),
        "consumption_period_end": iso((created.replace(day=1) + timedelta(days=32)).replace(
            day=1, hour=0, minute=0, second=0, microsecond=0)),
        "owner_id": "u-fake-0001",
        "owner": {"email": "dev@example.com", "name": "Dev User", "branches_limit": 10,
                  "subscription_type": "free_v3"},
    }
    if org_id:
        project["org_id"] = org_id
    return project


def list_item(project: dict) -> dict:
    """The ``ProjectListItem`` of a project (GET /projects)."""
    keep = ("id", "platform_id", "region_id", "name", "provisioner", "default_endpoint_settings",
            "settings", "pg_version", "proxy_host", "branch_logical_size_limit",
            "branch_logical_size_limit_bytes", "store_passwords", "cpu_used_sec", "creation_source",
            "created_at", "updated_at", "owner_id", "org_id")
    item = {k: project[k] for k in keep if k in project}
    item["active_time"] = project["active_time_seconds"]
    return item


def list_body(items: list[dict], cursor: str | None = None) -> dict:
    body: dict[str, Any] = {"projects": items, "applications": {}, "integrations": {}}
    if cursor is not None:
        body["pagination"] = {"cursor": cursor}
    return body


def branch_obj(branch_id: str, pid: str, name: str, created: datetime) -> dict:
    ts = iso(created)
    return {
        "id": branch_id, "project_id": pid, "name": name,
        "current_state": "init", "pending_state": "ready", "state_changed_at": ts,
        "creation_source": "console", "primary": True, "default": True, "protected": False,
        "cpu_used_sec": 0, "compute_time_seconds": 0, "active_time_seconds": 0,
        "written_data_bytes": 0, "data_transfer_bytes": 0, "created_at": ts, "updated_at": ts,
    }


def endpoint_obj(ep_id: str, pid: str, branch_id: str, region: str, created: datetime) -> dict:
    ts, proxy_host = iso(created), region_host(region)
    return {
        "host": f"{ep_id}.{proxy_host}", "id": ep_id, "project_id": pid, "branch_id": branch_id,
        "autoscaling_limit_min_cu": 0.25, "autoscaling_limit_max_cu": 2, "region_id": region,
        "type": "read_write", "current_state": "init", "pending_state": "active", "settings": {},
        "pooler_enabled": False, "pooler_mode": "transaction", "disabled": False,
        "passwordless_access": True, "creation_source": "console", "created_at": ts, "updated_at": ts,
        "proxy_host": proxy_host, "suspend_timeout_seconds": 0, "provisioner": "k8s-neonvm",
    }


def role_obj(branch_id: str, name: str, password: str, created: datetime) -> dict:
    ts = iso(created)
    return {"branch_id": branch_id, "name": name, "password": password, "protected": False,
            "created_at": ts, "updated_at": ts}


def database_obj(db_id: int, branch_id: str, name: str, owner: str, created: datetime) -> dict:
    ts = iso(created)
    return {"id": db_id, "branch_id": branch_id, "name": name, "owner_name": owner,
            "created_at": ts, "updated_at": ts}


def operation_obj(op_id: str, pid: str, branch_id: str, action: str, created: datetime, *,
                  status: str = "running", endpoint_id: str | None = None) -> dict:
    ts = iso(created)
    op = {"id": op_id, "project_id": pid, "branch_id": branch_id}
    if endpoint_id is not None:
        op["endpoint_id"] = endpoint_id
    op.update({"action": action, "status": status, "failures_count": 0, "created_at": ts,
               "updated_at": ts, "total_duration_ms": 0})
    return op


def connection_uri(role: str, password: str, host: str, db: str) -> str:
    return f"postgresql://{role}:{password}@{host}/{db}?sslmode=require"


def created_body(project: dict, branch: dict, endpoint: dict, roles: list[dict], databases: list[dict],
                 operations: list[dict], *, password: str) -> dict:
    """The 201 answer of POST /projects (``CreatedProject``): the first role owns the first database."""
    role, db = roles[0]["name"], databases[0]["name"]
    host = endpoint["host"]
    pooler_host = host.replace(endpoint["id"], endpoint["id"] + "-pooler", 1)
    return {
        "project": project,
        "connection_uris": [{"connection_uri": connection_uri(role, password, host, db), "connection_parameters": {
            "database": db, "password": password, "role": role, "host": host, "pooler_host": pooler_host}}],
        "roles": roles, "databases": databases, "operations": operations,
        "branch": branch, "endpoints": [endpoint],
    }


# -- the answers every route shares (the server calls these by provider)

def error_body(message: str, code: str = "") -> dict:
    """Neon's error shape (``GeneralError``): a request id, a code, a message."""
    return {"request_id": str(uuid.uuid4()), "code": code, "message": message}


def error(status: int, message: str, name: str | None = None) -> Response:
    return json_response(status, error_body(message))


def unauthorized(token: str | None) -> Response:
    return error(401, "authorization failed")



def decorate(server: Any, resp: Response) -> Response:
    resp.headers.append(("X-Neon-Ret-Request-Id", uuid.uuid4().hex))
    return resp


#: (method, path pattern, handler method name); ``{name}`` matches one path segment
ROUTES = [
    ("GET", "/projects", "neon_list_projects"),
    ("POST", "/projects", "neon_create_project"),
    ("GET", "/projects/{project_id}", "neon_get_project"),
    ("PATCH", "/projects/{project_id}", "neon_update_project"),
    ("DELETE", "/projects/{project_id}", "neon_delete_project"),
    ("GET", "/projects/{project_id}/operations", "neon_list_operations"),
    ("GET", "/projects/{project_id}/operations/{operation_id}", "neon_get_operation"),
    ("GET", "/projects/{project_id}/connection_uri", "neon_connection_uri"),
    ("GET", "/users/me", "neon_me"),
]


class NeonApi:
    """Route handlers; mixed into the server, so ``self`` is the :class:`~fakeupstream.server.FakeServer`."""

    def _neon_op_view(self, op: dict) -> dict:
        out = {k: v for k, v in op.items() if not k.startswith("_")}
        if time.time() >= op["_finish_at"]:
            out["status"] = "finished"
            out["updated_at"] = iso(datetime.fromtimestamp(op["_finish_at"], UTC))
            out["total_duration_ms"] = op["_duration_ms"]
        return out

    def _neon_project(self, project_id: str) -> dict:
        rec = self.db["neon"]["projects"].get(project_id)
        if rec is None:
            raise BadRequest(self._error("neon", 404, f"project {project_id} not found"))
        return rec

    def neon_create_project(self, req: Request) -> Response:
        body = self._body(req)
        spec = body.get("project")
        if not isinstance(spec, dict):
            raise BadRequest(self._error("neon", 400, "request body must contain a 'project' object"))
        region = spec.get("region_id") or "aws-us-east-2"
        if not isinstance(region, str) or not re.fullmatch(r"(aws|azure)-[a-z0-9-]+", region):
            raise BadRequest(self._error("neon", 400, f"region {region!r} is not supported"))
        pg_version = spec.get("pg_version", 17)
        if not isinstance(pg_version, int) or not 14 <= pg_version <= 18:
            raise BadRequest(self._error("neon", 400, "pg_version must be an integer from 14 to 18"))
        name = spec.get("name")
        if name is not None and (not isinstance(name, str) or not 1 <= len(name) <= 256):
            raise BadRequest(self._error("neon", 400, "project name must be 1 to 256 characters"))
        org_id = spec.get("org_id")
        if org_id is not None and (not isinstance(org_id, str) or not re.fullmatch(r"[a-z0-9-]{1,60}", org_id)):
            raise BadRequest(self._error("neon", 400, "org_id is malformed"))
        branch_spec = spec.get("branch") or {}
        while True:
            pid = neon_name(self.rng)
            if pid not in self.db["neon"]["projects"] and pid not in self.db["tombstones"]:
                break
        created = self._created_now()
        branch_id, ep_id = neon_name(self.rng, "br-"), neon_name(self.rng, "ep-")
        role = branch_spec.get("role_name") or f"{branch_spec.get('database_name') or 'neondb'}_owner"
        dbname = branch_spec.get("database_name") or "neondb"
        password = "npg_" + rand_alnum(12)
        project = project_obj(pid, name or pid, region, pg_version, created, org_id=org_id,
                              store_passwords=spec.get("store_passwords", True),
                              history_retention_seconds=int(spec.get("history_retention_seconds", 86400)))
        branch = branch_obj(branch_id, pid, branch_spec.get("name") or "main", created)
        endpoint = endpoint_obj(ep_id, pid, branch_id, region, created)
        roles = [role_obj(branch_id, role, password, created)]
        databases = [database_obj(self.rng.randrange(10**6, 10**7), branch_id, dbname, role, created)]
        delay_ms = int(self.config["neon_operation_ms"])
        finish_at = created.timestamp() + delay_ms / 1000.0
        operations = [
            {**operation_obj(str(uuid.uuid4()), pid, branch_id, "create_timeline", created),
             "_finish_at": finish_at, "_duration_ms": delay_ms},
            {**operation_obj(str(uuid.uuid4()), pid, branch_id, "start_compute", created, endpoint_id=ep_id),
             "_finish_at": finish_at, "_duration_ms": delay_ms},
        ]
        rec = {"seq": self._next_seq(), "cursor": iso_us(created), "project": project, "branch": branch,
               "endpoints": [endpoint], "roles": roles, "databases": databases, "operations": operations}
        self.db["neon"]["projects"][pid] = rec
        self.persist()
        return json_response(201, created_body(
            project, branch, endpoint, roles, databases,
            [{k: v for k, v in op.items() if not k.startswith("_")} for op in operations], password=password))

    def neon_list_projects(self, req: Request) -> Response:
        q = req.query
        try:
            limit = int(q.get("limit", 10))
        except ValueError:
            limit = -1
        if not 1 <= limit <= 400:
            raise BadRequest(self._error("neon", 400, "limit must be an integer from 1 to 400"))
        recs = sorted(self.db["neon"]["projects"].values(), key=lambda r: r["cursor"])
        org_id = q.get("org_id") or None
        recs = [r for r in recs if r["project"].get("org_id") == org_id]
        search = (q.get("search") or "").lower()
        if search:
            recs = [r for r in recs if search in r["project"]["name"].lower() or search in r["project"]["id"]]
        cursor = q.get("cursor")
        if cursor:
            recs = [r for r in recs if r["cursor"] > cursor]
        page = recs[:limit]
        return json_response(200, list_body([list_item(r["project"]) for r in page],
                                            page[-1]["cursor"] if page else cursor or None))

    def neon_get_project(self, req: Request, project_id: str) -> Response:
        return json_response(200, {"project": self._neon_project(project_id)["project"]})

    def neon_update_project(self, req: Request, project_id: str) -> Response:
        """PATCH /projects/{id}: here only the name (updateProject); no operation is started."""
        rec = self._neon_project(project_id)
        spec = self._body(req).get("project")
        if not isinstance(spec, dict):
            raise BadRequest(self._error("neon", 400, "request body must contain a 'project' object"))
        name = spec.get("name")
        if name is not None:
            if not isinstance(name, str) or not 1 <= len(name) <= 256:
                raise BadRequest(self._error("neon", 400, "project name must be 1 to 256 characters"))
            rec["project"]["name"] = name
        self.persist()
        return json_response(200, {"project": rec["project"], "operations": []})

    def neon_delete_project(self, req: Request, project_id: str) -> Response:
        rec = self._neon_project(project_id)
        del self.db["neon"]["projects"][project_id]
        self.db["tombstones"][project_id] = rec["seq"]
        self.persist()
        return json_response(200, {"project": rec["project"]})

    def neon_list_operations(self, req: Request, project_id: str) -> Response:
        rec = self._neon_project(project_id)
        ops = [self._neon_op_view(op) for op in rec["operations"]]
        return json_response(200, {"operations": ops, **({"pagination": {"cursor": ops[-1]["id"]}} if ops else {})})

    def neon_get_operation(self, req: Request, project_id: str, operation_id: str) -> Response:
        rec = self._neon_project(project_id)
        for op in rec["operations"]:
            if op["id"] == operation_id:
                return json_response(200, {"operation": self._neon_op_view(op)})
        raise BadRequest(self._error("neon", 404, f"operation {operation_id} not found"))

    def neon_connection_uri(self, req: Request, project_id: str) -> Response:
        rec = self._neon_project(project_id)
        q = req.query
        db, role = q.get("database_name"), q.get("role_name")
        if not db or not role:
            raise BadRequest(self._error("neon", 400, "database_name and role_name are required"))
        if q.get("branch_id") and q["branch_id"] != rec["branch"]["id"]:
            raise BadRequest(self._error("neon", 404, f"branch {q['branch_id']} not found"))
        endpoint = rec["endpoints"][0]
        if q.get("endpoint_id") and q["endpoint_id"] != endpoint["id"]:
            raise BadRequest(self._error("neon", 404, f"endpoint {q['endpoint_id']} not found"))
        role_rec = next((r for r in rec["roles"] if r["name"] == role), None)
        if role_rec is None:
            raise BadRequest(self._error("neon", 404, f"role {role} not found"))
        if not any(d["name"] == db for d in rec["databases"]):
            raise BadRequest(self._error("neon", 404, f"database {db} not found"))
        host = endpoint["host"]
        if q.get("pooled", "").lower() == "true":
            host = host.replace(endpoint["id"], endpoint["id"] + "-pooler", 1)
        return json_response(200, {"uri": connection_uri(role, role_rec["password"], host, db)})

    def neon_me(self, req: Request) -> Response:
        return json_response(200, {
            "active_seconds_limit": 360000, "id": "u-fake-0001", "email": "dev@example.com",
            "login": "dev", "name": "Dev", "last_name": "User", "image": "", "projects_limit": 100,
            "branches_limit": 10, "max_autoscaling_limit": 2, "compute_seconds_limit": 360000,
            "auth_accounts": [{"provider": "github", "email": "dev@example.com", "name": "Dev User",
                               "login": "dev", "image": ""}],
            "plan": "free_v3",
        })
