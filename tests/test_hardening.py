"""Issue 9, findings 6–10: the ledger and the CLI tell the truth and never crash.

Real subprocesses of the CLI, a real ledger file, real git, the fake upstream on loopback."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from crashkit import KEYS, cli_env, run_cli

import fakeupstream
import fakeupstream.neon
from fakeupstream import FakeUpstream
from mk0r_tui.core.ledger import SCHEMA, SCHEMA_VERSION, Ledger
from mk0r_tui.core.models import Session

PYTHON = sys.executable


def mk0r(*args, env=None, cwd=None, umask=None, timeout=90):
    full = {**os.environ, **(env or {})}
    return subprocess.run(
        [PYTHON, "-m", "mk0r_tui", *args], capture_output=True, text=True, env=full, cwd=cwd, timeout=timeout,
        stdin=subprocess.DEVNULL, preexec_fn=(lambda: os.umask(umask)) if umask is not None else None,
    )


def one_line_failure(result, code: int, *fragments: str) -> None:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


# -- 6: no secret in the ledger or --json; private modes ----------------------------------------


@pytest.fixture
def neon_fake(monkeypatch):
    # the fake makes Neon passwords with rand_alnum: a known one lets a fault echo it back
    monkeypatch.setattr(fakeupstream.neon, "rand_alnum", lambda n: "ECHOEDpassword0042"[:n].ljust(n, "x"))
    with FakeUpstream(config={"neon_operation_ms": 3000}) as upstream:
        yield upstream


def test_an_echoed_provisioning_key_or_provisioned_password_never_reaches_the_ledger_or_json(neon_fake, mk0r_home):
    password = "npg_" + "ECHOEDpassword0042"[:12]
    key = KEYS["NEON_PROVISIONING_KEY"]
    env = cli_env(neon_fake, mk0r_home, keys={"NEON_PROVISIONING_KEY": key}, MK0R_TARGET="local", MK0R_MAX_ATTEMPTS="1")
    # the create answers (and hands out the password); the operation poll then fails echoing it
    neon_fake.control(faults=[{
        "provider": "neon", "method": "GET", "path_prefix": "/projects/", "status": 400, "times": -1,
        "body": {"request_id": "r1", "code": "", "message": f"role neondb_owner/{password} rejected for key {key}"},
    }])
    result = run_cli(env, "provision", "--session", "echo-secret-01", "--json")
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    neon = next(p for p in report["providers"] if p["name"] == "neon")
    assert neon["status"] == "failed" and "rejected" in neon["error"]
    for secret in (password, key):
        assert secret not in result.stdout and secret not in result.stderr
        for path in mk0r_home.rglob("*"):
            if path.is_file() and path.name != ".env":
                assert secret.encode() not in path.read_bytes(), path
    with Ledger(mk0r_home / "ledger.sqlite3") as ledger:
        texts = list(ledger.iter_all_text())
    assert any("rejected" in t for t in texts)  # the error is kept, scrubbed
    assert not [t for t in texts if password in t or key in t]


def test_private_modes_whatever_the_umask_and_a_loose_data_dir_is_tightened(mk0r_home, session_key):
    mk0r_home.mkdir(parents=True)
    os.chmod(mk0r_home, 0o755)
    result = mk0r("provision", "--session", session_key, "--json", umask=0)
    assert result.returncode == 0, result.stderr
    slug = session_key[:12]
    assert mode(mk0r_home) == 0o700
    assert mode(mk0r_home / "ledger.sqlite3") == 0o600
    assert mode(mk0r_home / "mk0r-tui.log") == 0o600
    for folder in ("apps", f"apps/{slug}", "repos"):
        assert mode(mk0r_home / folder) == 0o700, folder
    assert mode(mk0r_home / "apps" / slug / ".env") == 0o600


# -- 7: one line, exit 2, for a damaged or newer ledger ------------------------------------------


def _ledger_with_a_session(home: Path) -> Path:
    home.mkdir(parents=True, exist_ok=True)
    path = home / "ledger.sqlite3"
    with Ledger(path) as ledger:
        for i in range(40):
            ledger.ensure_session(Session.parse(f"damaged-{i:04d}-x" + "y" * 200))
    return path


def test_a_zero_byte_ledger_is_damage_not_an_empty_ledger(mk0r_home):
    mk0r_home.mkdir(parents=True)
    (mk0r_home / "ledger.sqlite3").write_bytes(b"")
    one_line_failure(mk0r("sessions", "--json"), 2, str(mk0r_home / "ledger.sqlite3"), "0 bytes")


def test_a_file_that_is_not_a_database(mk0r_home):
    mk0r_home.mkdir(parents=True)
    (mk0r_home / "ledger.sqlite3").write_text("hello, I am a text file, not a ledger\n" * 200)
    one_line_failure(mk0r("sessions"), 2, str(mk0r_home / "ledger.sqlite3"), "damaged")


def test_a_corrupt_page(mk0r_home):
    path = _ledger_with_a_session(mk0r_home)
    data = bytearray(path.read_bytes())
    page = 4096
    assert len(data) > 3 * page
    data[2 * page:3 * page] = b"\xde\xad\xbe\xef" * (page // 4)
    path.write_bytes(bytes(data))
    for args in (("sessions",), ("orphans", "--json"), ("provision", "--session", "after-corrupt-1")):
        one_line_failure(mk0r(*args), 2, str(path))


def test_a_renamed_column_is_named(mk0r_home):
    path = _ledger_with_a_session(mk0r_home)
    with sqlite3.connect(path) as db:
        db.execute("ALTER TABLE resources RENAME COLUMN remote_id TO rid")
    one_line_failure(mk0r("sessions"), 2, str(path), "remote_id")


def test_a_ledger_from_a_newer_version_is_refused(mk0r_home):
    path = _ledger_with_a_session(mk0r_home)
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    one_line_failure(mk0r("sessions"), 2, str(path), "newer")


def test_an_unversioned_ledger_is_migrated_forward_and_keeps_its_rows(tmp_path):
    path = tmp_path / "ledger.sqlite3"
    with sqlite3.connect(path) as db:  # a ledger written before the schema had a version
        db.executescript(SCHEMA)
        db.execute("INSERT INTO sessions VALUES ('old-session-1', 'old-session-1', 1, 1, 'ready', 'local-folder', NULL)")
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == 0
    with Ledger(path) as ledger:
        assert ledger.require_session("old-session-1").state == "ready"
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_a_new_ledger_is_versioned_and_private(tmp_path):
    with Ledger(tmp_path / "ledger.sqlite3"):
        pass
    assert sqlite3.connect(tmp_path / "ledger.sqlite3").execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert mode(tmp_path / "ledger.sqlite3") == 0o600
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temp file left


def test_meta_that_is_not_json_does_not_break_commands(mk0r_home):
    path = _ledger_with_a_session(mk0r_home)
    with Ledger(path) as ledger:
        row = ledger.intend("damaged-0000-x" + "y" * 200, "local-git", "bare-repo", "mk0r-damaged-000")
    with sqlite3.connect(path) as db:
        db.execute("UPDATE resources SET meta = '{not json' WHERE id = ?", (row.id,))
    with Ledger(path) as ledger:
        assert ledger.resource(row.id).meta == {"unreadable_meta": "{not json"}
    result = mk0r("orphans", "--json")
    assert "Traceback" not in result.stderr and result.returncode in (0, 1), result.stderr
    assert any(o["name"] == "mk0r-damaged-000" for o in json.loads(result.stdout))


RACE = r"""
import os, sys, time
from pathlib import Path
from mk0r_tui.core.ledger import Ledger
from mk0r_tui.core.models import Session
go = Path(sys.argv[2])
while not go.exists():
    time.sleep(0.001)
with Ledger(sys.argv[1]) as ledger:
    ledger.ensure_session(Session.parse("racing-key-0001"), target="local-folder")
print("ok")
"""


def test_processes_racing_on_a_new_key_never_crash(tmp_path):
    go = tmp_path / "go"
    procs = [
        subprocess.Popen([PYTHON, "-c", RACE, str(tmp_path / "ledger.sqlite3"), str(go)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(8)
    ]
    go.write_text("")
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0] * 8, [err for _, err in outs if err]
    with Ledger(tmp_path / "ledger.sqlite3") as ledger:
        assert [s.key for s in ledger.list_sessions()] == ["racing-key-0001"]


DISK_FULL = r"""
import sqlite3, sys
from mk0r_tui.core import ledger as L

class FullDisk:
    def __init__(self, db):
        self._db = db
    def execute(self, sql, params=()):
        if sql.startswith("INSERT INTO runs"):
            raise sqlite3.OperationalError("database or disk is full")
        return self._db.execute(sql, params)
    def __getattr__(self, name):
        return getattr(self._db, name)

opened = L.Ledger.__init__
def init(self, path, **kwargs):
    opened(self, path, **kwargs)
    self._db = FullDisk(self._db)
L.Ledger.__init__ = init
from mk0r_tui.cli import main
sys.argv = ["mk0r-tui", *sys.argv[1:]]
main()
"""


def test_a_ledger_write_failing_inside_the_providers_task_group_is_one_line(mk0r_home, session_key):
    result = subprocess.run([PYTHON, "-c", DISK_FULL, "provision", "--session", session_key, "--json"],
                            capture_output=True, text=True, timeout=90, env=os.environ)
    one_line_failure(result, 2, "cannot write the ledger", "disk is full")


# -- 8: nothing under the data dir is followed through a symlink ---------------------------------


def test_a_symlinked_app_folder_is_refused_and_teardown_removes_only_the_link(mk0r_home, session_key, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "precious.txt").write_text("keep me")
    slug = session_key[:12]
    assert mk0r("sessions").returncode == 0  # makes the data dir
    (mk0r_home / "apps" / slug).symlink_to(elsewhere, target_is_directory=True)

    result = mk0r("provision", "--session", session_key, "--json")
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    target = next(p for p in json.loads(result.stdout)["providers"] if p["name"] == "local-folder")
    assert target["status"] == "failed" and "symbolic link" in target["error"]
    assert sorted(p.name for p in elsewhere.iterdir()) == ["precious.txt"]  # no .env, no repo in there

    down = mk0r("teardown", "--yes", session_key)
    assert down.returncode == 0, down.stdout + down.stderr
    assert not os.path.lexists(mk0r_home / "apps" / slug)
    assert (elsewhere / "precious.txt").read_text() == "keep me"


def test_a_symlinked_gitignore_is_not_copied_into_the_app(mk0r_home, session_key, tmp_path):
    outside = tmp_path / "outside-gitignore"
    outside.write_text("PRIVATE-CONTENT-OF-ANOTHER-FILE\n")
    folder = mk0r_home / "apps" / session_key[:12]
    folder.mkdir(parents=True)
    (folder / ".gitignore").symlink_to(outside)

    result = mk0r("provision", "--session", session_key, "--json")
    assert "Traceback" not in result.stderr
    target = next(p for p in json.loads(result.stdout)["providers"] if p["name"] == "local-folder")
    assert target["status"] == "failed" and "symbolic link" in target["error"]
    assert outside.read_text() == "PRIVATE-CONTENT-OF-ANOTHER-FILE\n"
    gitignore = folder / ".gitignore"
    assert gitignore.is_symlink() or "PRIVATE-CONTENT" not in gitignore.read_text()


def test_a_symlinked_local_repo_is_refused_and_its_target_untouched(mk0r_home, session_key, tmp_path):
    elsewhere = tmp_path / "not-a-repo"
    elsewhere.mkdir()
    (mk0r_home / "repos").mkdir(parents=True)
    (mk0r_home / "repos" / f"mk0r-{session_key[:12]}.git").symlink_to(elsewhere, target_is_directory=True)

    result = mk0r("provision", "--session", session_key, "--json")
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    repo = next(p for p in json.loads(result.stdout)["providers"] if p["name"] == "local-git")
    assert repo["status"] == "failed" and "refusing to use" in repo["error"] and "symbolic link" in repo["error"]
    assert list(elsewhere.iterdir()) == []  # no bare repo made inside the link's target


# -- 9: configuration accepted but broken is refused before anything is created ------------------


@pytest.mark.parametrize(("name", "value", "fragment"), [
    ("MK0R_HOME", "relative/home", "relative path"),
    ("MK0R_HOME", "", "empty"),
    ("MK0R_HTTP_TIMEOUT_S", "0", "above 0"),
    ("MK0R_HTTP_TIMEOUT_S", "nan", "above 0"),
    ("MK0R_PROVIDER_TIMEOUT_S", "-5", "above 0"),
    ("MK0R_RESEND_RPS", "-1", "above 0"),
    ("MK0R_GITHUB_MUTATION_GAP_S", "-1", "0 or more"),
])
def test_broken_configuration_is_exit_2_before_anything_is_created(name, value, fragment, tmp_path, mk0r_home):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    result = mk0r("provision", "--session", "config-check-1", "--json", env={name: value}, cwd=cwd)
    one_line_failure(result, 2, name, fragment)
    assert result.stdout == ""
    assert list(cwd.iterdir()) == [] and not mk0r_home.exists()


def test_a_key_with_escape_codes_is_refused_and_never_echoed_raw(mk0r_home):
    result = mk0r("provision", "--session", "abcdefgh-\x1b[31mred\x07")
    one_line_failure(result, 2, "control or escape characters")
    assert "\x1b" not in result.stderr and "\x07" not in result.stderr
    assert not (mk0r_home / "ledger.sqlite3").exists()


def test_a_key_starting_with_a_dash_is_addressed_after_double_dash(mk0r_home):
    key = "-dashkey-0001"
    made = mk0r("provision", f"--session={key}", "--json")
    assert made.returncode == 0, made.stderr
    shown = mk0r("env", "--json", "--", key)
    assert shown.returncode == 0 and json.loads(shown.stdout)["session"] == key, shown.stderr
    down = mk0r("teardown", "--yes", "--json", "--", key)
    assert down.returncode == 0 and json.loads(down.stdout)["ok"], down.stderr
    assert "'--'" in mk0r("teardown", "--help").stdout and "'--'" in mk0r("env", "--help").stdout


@pytest.mark.parametrize("url", ["ext::sh -c touch% {marker}", "-uhttps://x/y", "fd::17", "transport::x"])
async def test_git_never_gets_a_transport_form_or_option_like_remote(url, tmp_path):
    from mk0r_tui.core.config import load_settings
    from mk0r_tui.core.errors import ProviderError
    from mk0r_tui.core.events import Collector
    from mk0r_tui.core.provider import ProvisionContext, SessionResources
    from mk0r_tui.providers.local_git import check_remote_url
    from mk0r_tui.targets.e2b import sandbox_origin
    from mk0r_tui.targets.local import LocalFolderTarget

    marker = tmp_path / "pwned"
    url = url.format(marker=marker)
    settings = load_settings(home=tmp_path / "home")
    settings.ensure_data_dir()
    with pytest.raises(ProviderError, match="refusing the repository URL"):
        check_remote_url(url)
    with pytest.raises(ProviderError, match="refusing the repository URL"):
        sandbox_origin(url)
    with Ledger(settings.ledger_path) as ledger:
        session = Session.parse("git-remote-0001")
        ledger.ensure_session(session)
        ctx = ProvisionContext(session=session, provider="local-folder", settings=settings, resources=SessionResources(ledger, session),
                               sink=Collector(), env={"GIT_REMOTE_URL": url})
        with pytest.raises(ProviderError, match="refusing the repository URL"):
            await LocalFolderTarget(settings=settings).provision(ctx)
    assert not marker.exists()


# -- 10: no abort at interpreter exit --------------------------------------------------------------


def test_orphans_delete_never_aborts_on_exit(mk0r_home):
    runs = 30
    with FakeUpstream(config={"neon_operation_ms": 0}) as fake:
        env = cli_env(fake, mk0r_home, MK0R_TARGET="local")
        seeded = run_cli(env, "provision", "--session", "abort-seed-01", "--json")
        assert seeded.returncode == 0, seeded.stderr
        for path in mk0r_home.glob("ledger.sqlite3*"):  # everything it made is now an orphan
            path.unlink()
        codes = []
        for _ in range(runs):  # another ledger's now, and seconds old: both guards lifted on purpose
            result = run_cli(env, "orphans", "--delete", "--yes", "--json", "--include-foreign", "--older-than", "0s")
            assert "Fatal Python error" not in result.stderr, result.stderr
            codes.append(result.returncode)
    assert set(codes) <= {0}, codes


def test_the_embedded_postgres_inside_the_data_dir_survives_the_next_command(tmp_path):
    """As root, Postgres runs as a system user that must traverse the data dir: a 0700 data dir
    (tightened by every command) made its checkpointer PANIC at the next checkpoint, so a
    teardown's DROP DATABASE failed with "server closed the connection unexpectedly" and the
    session stayed teardown_incomplete. Not root: the server runs as us and 0700 stays."""
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MK0R_")}
    env.update({"MK0R_HOME": str(home), "MK0R_NO_KEYRING": "1", "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"})

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "mk0r_tui", *args], env=env, capture_output=True, text=True,
                              timeout=120, stdin=subprocess.DEVNULL)

    try:
        made = cli("provision", "--session", "pg-inside-0001", "--json")
        assert made.returncode == 0, made.stderr
        assert cli("sessions", "--json").returncode == 0  # a later command tightens the data dir again
        down = cli("teardown", "--yes", "--json", "pg-inside-0001")
        report = json.loads(down.stdout)
        assert down.returncode == 0 and report["ok"], [(r["name"], r["error"]) for r in report["resources"]]
        assert mode(home) == (0o711 if os.geteuid() == 0 else 0o700)
        assert "PANIC" not in (home / "postgres" / "data" / "server.log").read_text()
    finally:
        cli("local-postgres", "stop")
