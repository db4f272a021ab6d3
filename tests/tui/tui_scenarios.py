"""Deterministic dashboard scenes for snapshot tests: ledger rows written directly (under a
frozen clock) and hand-made events injected into the app, so every pixel is reproducible."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator

from tui_fakes import FAKE_API_KEY, FAKE_DB_PASSWORD, FAKE_SMTP_PASSWORD

from mk0r_tui.core.envfile import write_env_file
from mk0r_tui.core.events import (
    ProviderProgressed,
    ProviderRetrying,
    ProviderStarted,
    ProviderSucceeded,
)
from mk0r_tui.core.ledger import Ledger
from mk0r_tui.core.models import ProviderResult, ResourceRef, ResourceState, Session, Slot, Status
from mk0r_tui.engine.runtime import Runtime
from mk0r_tui.tui.state import WorkStarted

READY = Session.parse("7f3c9a21-ready-demo")
PARTIAL = Session.parse("b41e07d9-partial-demo")
DELETED = Session.parse("0c5d2e88-deleted-demo")
LIVE = Session.parse("e9a4b6f0-live-demo")

PLAN = (
    ("posthog", Slot.ANALYTICS), ("local-postgres", Slot.DATABASE), ("local-mail", Slot.EMAIL),
    ("local-git", Slot.REPO), ("local-folder", Slot.TARGET),
)
DB_LATENCIES = (812.0, 640.0, 930.0, 702.0, 1210.0, 655.0, 590.0, 780.0, 845.0, 610.0)
GIT_LATENCIES = (61.0, 48.0, 75.0, 52.0, 90.0, 44.0, 58.0, 66.0)


def seed_ledger(runtime: Runtime, now: float) -> None:
    """Three finished sessions (ready, partial, deleted) and some latency history."""
    ledger = runtime.ledger
    for age, session, state in ((3600.0, DELETED, "deleted"), (900.0, PARTIAL, "partial"), (240.0, READY, "ready")):
        ledger.ensure_session(session, target="local-folder")
        ledger._write("UPDATE sessions SET created_at = ? WHERE key = ?", (now - age, session.key))
    for index, latency in enumerate(DB_LATENCIES):
        ledger.record_run(DELETED.key, ProviderResult("local-postgres", Slot.DATABASE, Status.OK, latency, 1))
    for latency in GIT_LATENCIES:
        ledger.record_run(DELETED.key, ProviderResult("local-git", Slot.REPO, Status.OK, latency, 1))

    for session in (READY, PARTIAL):
        ledger.record_run(session.key, ProviderResult("posthog", Slot.ANALYTICS, Status.OK, 0.4, 1, note="tag only (set POSTHOG_PROJECT_KEY to send events)"))
        ledger.record_run(session.key, ProviderResult("local-mail", Slot.EMAIL, Status.OK, 38.0, 1))
        _created(runtime, session, "local-mail", "mailbox", session.resource_name, remote_id=f"/srv/mk0r/mail/boxes/{session.resource_name}")
    seed_mail(runtime, READY)
    _created(runtime, READY, "local-postgres", "role", READY.pg_identifier)
    _created(runtime, READY, "local-postgres", "database", READY.pg_identifier)
    ledger.record_run(READY.key, ProviderResult("local-postgres", Slot.DATABASE, Status.OK, 731.0, 1))
    _created(runtime, READY, "local-git", "bare-repo", READY.resource_name, remote_id=f"/srv/mk0r/repos/{READY.resource_name}.git")
    ledger.record_run(READY.key, ProviderResult("local-git", Slot.REPO, Status.OK, 57.0, 1))
    _created(runtime, READY, "local-folder", "app-folder", READY.resource_name, remote_id=f"/srv/mk0r/apps/{READY.slug}")
    ledger.record_run(READY.key, ProviderResult("local-folder", Slot.TARGET, Status.OK, 118.0, 1))
    env_path = runtime.settings.apps_dir / READY.slug / ".env"
    write_env_file(env_path, {
        "VITE_POSTHOG_APP_ID": READY.analytics_app_id,
        "DATABASE_URL": f"postgresql://{READY.pg_identifier}:{FAKE_DB_PASSWORD}@127.0.0.1:54329/{READY.pg_identifier}",
        "PGHOST": "127.0.0.1", "PGPORT": "54329", "PGUSER": READY.pg_identifier,
        "PGPASSWORD": FAKE_DB_PASSWORD, "PGDATABASE": READY.pg_identifier,
        "RESEND_API_KEY": FAKE_API_KEY,
        "RESEND_BASE_URL": "http://127.0.0.1:48025", "RESEND_API_URL": "http://127.0.0.1:48025",
        "SMTP_HOST": "127.0.0.1", "SMTP_PORT": "48026", "SMTP_USER": READY.resource_name, "SMTP_PASSWORD": FAKE_SMTP_PASSWORD,
        "GIT_REMOTE_URL": f"file:///srv/mk0r/repos/{READY.resource_name}.git",
        "LOCAL_GIT_REPO": f"/srv/mk0r/repos/{READY.resource_name}.git",
    }, header="demo")
    ledger.set_session_state(READY.key, "ready", env_file=str(env_path))

    _created(runtime, PARTIAL, "local-git", "bare-repo", PARTIAL.resource_name, remote_id=f"/srv/mk0r/repos/{PARTIAL.resource_name}.git")
    ledger.record_run(PARTIAL.key, ProviderResult("local-git", Slot.REPO, Status.OK, 63.0, 1))
    ledger.record_run(PARTIAL.key, ProviderResult(
        "local-postgres", Slot.DATABASE, Status.FAILED, 30012.0, 3,
        error="connect → cannot connect to Postgres at 127.0.0.1:5432: connection refused (check MK0R_LOCAL_POSTGRES_URL)",
    ))
    ledger.record_run(PARTIAL.key, ProviderResult("local-folder", Slot.TARGET, Status.OK, 121.0, 1))
    ledger.set_session_state(PARTIAL.key, "partial")

    row = ledger.intend(DELETED.key, "local-git", "bare-repo", DELETED.resource_name)
    ledger.mark_created(row.id, f"/srv/mk0r/repos/{DELETED.resource_name}.git")
    ledger.mark_state(row.id, ResourceState.DELETED)
    ledger.set_session_state(DELETED.key, "deleted")


def seed_mail(runtime: Runtime, session: Session) -> None:
    """One mail caught in the session's mailbox, as the app's welcome email would be."""
    from email.message import EmailMessage

    from mk0r_tui.providers.mail_catcher import MailStore

    store = MailStore(runtime.settings.mail_dir)
    store.create_account(session.resource_name)
    message = EmailMessage()
    message["From"] = "Demo app <hello@demo.test>"
    message["To"] = "ada@example.com"
    message["Subject"] = "Welcome to the demo app"
    message.set_content("Hi Ada, your account is ready.")
    store.deliver(session.resource_name, message, via="api")


def _created(runtime: Runtime, session: Session, provider: str, kind: str, name: str, *, remote_id: str | None = None) -> None:
    row = runtime.ledger.intend(session.key, provider, kind, name)
    runtime.ledger.mark_created(row.id, remote_id or name)


def live_events(now: float) -> list:
    """A session caught mid-provision: analytics ok, the database retrying, the repo running,
    email ok (the local mail catcher), the target waiting."""
    key = LIVE.key
    repo = ResourceRef("local-git", "bare-repo", LIVE.resource_name, f"/srv/mk0r/repos/{LIVE.resource_name}.git")
    del repo
    return [
        WorkStarted(session=key, kind="provision", plan=PLAN, slug=LIVE.slug, target="local-folder", at=now - 4.2),
        ProviderStarted(session=key, provider="posthog", slot=Slot.ANALYTICS, at=now - 4.1),
        ProviderSucceeded(session=key, provider="posthog", at=now - 4.1, result=ProviderResult(
            "posthog", Slot.ANALYTICS, Status.OK, 0.3, 1, note="tag only (set POSTHOG_PROJECT_KEY to send events)")),
        ProviderStarted(session=key, provider="local-postgres", slot=Slot.DATABASE, at=now - 4.1),
        ProviderStarted(session=key, provider="local-mail", slot=Slot.EMAIL, at=now - 4.1),
        ProviderSucceeded(session=key, provider="local-mail", at=now - 4.0, result=ProviderResult(
            "local-mail", Slot.EMAIL, Status.OK, 41.0, 1,
            resources=(ResourceRef("local-mail", "mailbox", LIVE.resource_name, f"/srv/mk0r/mail/boxes/{LIVE.resource_name}"),))),
        ProviderStarted(session=key, provider="local-git", slot=Slot.REPO, at=now - 4.0),
        ProviderProgressed(session=key, provider="local-postgres", message="starting embedded Postgres", at=now - 4.0),
        ProviderRetrying(session=key, provider="local-postgres", attempt=2, max_attempts=5, delay_s=1.5,
                         reason="connection refused: the server is still starting", at=now - 1.5),
        ProviderProgressed(session=key, provider="local-git", message="git init --bare mk0r-e9a4b6f0-liv.git", at=now - 0.8),
    ]


@contextlib.contextmanager
def provisioning_elsewhere(ledger: Ledger, session: Session) -> Iterator[subprocess.Popen]:
    """`session` provisioning, its lease held by another live process (yielded; killed after)."""
    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        ledger.ensure_session(session)
        ledger.set_session_state(session.key, "provisioning")
        assert ledger.acquire_lease(session.resource_name, session.key, "provision", "tok", stale_s=15) is None
        ledger._write("UPDATE leases SET pid = ?", (owner.pid,))  # the run is that other process's
        yield owner
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait()
