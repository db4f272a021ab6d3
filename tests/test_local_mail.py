"""Email on the local profile, with real parts: the mail catcher daemon the provider starts, the
real `resend` Python SDK and `smtplib` pointed at what the session's `.env` says, and the CLI."""

from __future__ import annotations

import json
import os
import smtplib
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from dotenv import dotenv_values
from ledgerkit import open_test_ledger

from mk0r_tui.core.models import Session, Status
from mk0r_tui.engine.orchestrator import provision_services
from mk0r_tui.engine.teardown import delete_orphans, find_orphans, teardown_session
from mk0r_tui.providers.mail_catcher import MailCatcher, MailStore, load_spec

ROOT = Path(__file__).resolve().parents[1]


def mk0r(*args, timeout=60):
    return subprocess.run([sys.executable, "-m", "mk0r_tui", *args], capture_output=True, text=True, env=dict(os.environ), timeout=timeout)


async def provision(runtime, key):
    report = await provision_services(runtime, Session.parse(key), runtime.plan())
    email = next(r for r in report.results if r.slot.value == "email")
    assert (email.name, email.status) == ("local-mail", Status.OK), email
    return report, dotenv_values(report.env_file)


@pytest.fixture
def resend_sdk(monkeypatch):
    import resend

    def point_at(env):
        monkeypatch.setattr(resend, "api_url", env["RESEND_API_URL"])
        monkeypatch.setattr(resend, "api_key", env["RESEND_API_KEY"])
        return resend

    return point_at


def smtp_send(env, user, password, *, subject="hello over smtp", to="someone@example.com"):
    with smtplib.SMTP(env["SMTP_HOST"], int(env["SMTP_PORT"]), timeout=10) as client:
        client.login(user, password)
        client.sendmail("app@example.com", [to], f"From: app@example.com\r\nTo: {to}\r\nSubject: {subject}\r\n\r\nbody\r\n".encode())


async def test_the_resend_sdk_sends_a_mail_that_mail_json_shows(runtime, session_key, resend_sdk):
    report, env = await provision(runtime, session_key)
    assert env["RESEND_BASE_URL"] == env["RESEND_API_URL"] and env["RESEND_API_URL"].startswith("http://127.0.0.1:")
    resend = resend_sdk(env)

    sent = resend.Emails.send({
        "from": "Acme <welcome@acme.test>", "to": ["new.user@example.com"], "subject": "Welcome to Acme",
        "text": "Thanks for signing up.", "html": "<p>Thanks for signing up.</p>", "cc": "boss@example.com",
    })
    fetched = resend.Emails.get(sent["id"])
    assert (fetched["id"], fetched["subject"], fetched["to"], fetched["cc"]) == (
        sent["id"], "Welcome to Acme", ["new.user@example.com"], ["boss@example.com"])
    assert fetched["text"].strip() == "Thanks for signing up." and "<p>" in fetched["html"]

    listed = mk0r("mail", session_key, "--json")
    assert listed.returncode == 0, listed.stderr
    mails = json.loads(listed.stdout)
    assert len(mails) == 1 and set(mails[0]) == {"id", "at", "from", "to", "subject", "via"}
    assert mails[0] | {"at": None} == {
        "id": sent["id"], "at": None, "from": "Acme <welcome@acme.test>", "to": ["new.user@example.com"],
        "subject": "Welcome to Acme", "via": "api",
    }
    # stored once, private, under the data dir, and never anywhere else
    box = runtime.settings.mail_dir / "boxes" / f"mk0r-{session_key[:12]}"
    files = list(box.glob("*.eml"))
    assert len(files) == 1 and stat.S_IMODE(files[0].stat().st_mode) == 0o600
    assert str(runtime.settings.mail_dir).startswith(str(runtime.settings.data_dir))

    # a second mail, by SMTP this time: newest first, `via` tells them apart
    smtp_send(env, env["SMTP_USER"], env["SMTP_PASSWORD"], subject="second")
    mails = json.loads(mk0r("mail", session_key, "--json").stdout)
    assert [(m["subject"], m["via"]) for m in mails] == [("second", "smtp"), ("Welcome to Acme", "api")]
    assert mails[0]["at"] >= mails[1]["at"]


async def test_a_request_the_spec_rejects_gets_resends_error_shape(runtime, session_key, resend_sdk):
    _, env = await provision(runtime, session_key)
    base, key = env["RESEND_API_URL"], env["RESEND_API_KEY"]
    auth = {"Authorization": f"Bearer {key}"}

    def post(body, headers=auth):
        return httpx.post(f"{base}/emails", json=body, headers=headers, timeout=10)

    cases = [
        (post({"from": "a@acme.test", "to": ["b@example.com"]}), 422, "missing_required_field", "subject"),
        (post({"from": "a@acme.test", "to": 42, "subject": "x"}), 422, "validation_error", "to"),
        (post({"from": "a@acme.test", "to": [], "subject": "x"}), 422, "validation_error", "to"),
        (post({"from": "a@acme.test", "to": "b@example.com", "subject": "x", "tags": "nope"}), 422, "validation_error", "tags"),
        (post({"from": "a@acme.test", "to": "b@example.com", "subject": "x\r\nBcc: victim@example.com"}), 422, "validation_error", "invalid"),
        (post({"from": "a@acme.test", "to": "b@example.com", "subject": "x"}, headers={}), 401, "missing_api_key", "API key"),
        (post({"from": "a@acme.test", "to": "b@example.com", "subject": "x"}, headers={"Authorization": "Bearer re_wrong"}), 403, "invalid_api_key", "invalid"),
        (httpx.get(f"{base}/emails/no-such-id", headers=auth, timeout=10), 404, "not_found", "not found"),
        (httpx.delete(f"{base}/emails", headers=auth, timeout=10), 405, "method_not_allowed", "not allowed"),
    ]
    for response, status, name, fragment in cases:
        body = response.json()
        assert response.status_code == status, body
        assert set(body) == {"statusCode", "name", "message"} and (body["statusCode"], body["name"]) == (status, name), body
        assert fragment.lower() in body["message"].lower(), body
    assert json.loads(mk0r("mail", session_key, "--json").stdout) == []

    # the SDK raises its own typed error for it, as it would against api.resend.com
    from resend.exceptions import MissingRequiredFieldsError

    with pytest.raises(MissingRequiredFieldsError):
        resend_sdk(env).Emails.send({"from": "a@acme.test", "to": ["b@example.com"]})

    # and a valid answer has the spec's Email shape
    from jsonschema import Draft202012Validator

    sent = post({"from": "a@acme.test", "to": "b@example.com", "subject": "ok", "text": "t"}).json()
    email = httpx.get(f"{base}/emails/{sent['id']}", headers=auth, timeout=10).json()
    spec = load_spec()
    Draft202012Validator({"$ref": "#/components/schemas/Email", "components": spec["components"]}).validate(email)
    assert email["object"] == "email" and email["to"] == ["b@example.com"]


async def test_smtp_delivers_with_the_sessions_credentials_and_refuses_others(runtime, session_key, resend_sdk):
    other_key = "other-" + session_key[:8]
    _, env = await provision(runtime, session_key)
    _, other = await provision(runtime, other_key)
    store = MailStore(runtime.settings.mail_dir)
    mine, theirs = f"mk0r-{session_key[:12]}", f"mk0r-{other_key[:12]}"

    smtp_send(env, env["SMTP_USER"], env["SMTP_PASSWORD"], subject="signup notification")
    assert [m.subject for m in store.list_mail(mine)] == ["signup notification"]

    for user, password in (
        (env["SMTP_USER"], "wrong"),
        (env["SMTP_USER"], other["SMTP_PASSWORD"]),  # another session's password
        ("postmaster", env["SMTP_PASSWORD"]),
    ):
        with pytest.raises(smtplib.SMTPAuthenticationError):
            smtp_send(env, user, password, subject="must not arrive")
    with smtplib.SMTP(env["SMTP_HOST"], int(env["SMTP_PORT"]), timeout=10) as client:  # no AUTH at all
        with pytest.raises(smtplib.SMTPSenderRefused) as refused:
            client.sendmail("app@example.com", ["x@example.com"], b"Subject: sneaky\r\n\r\nno")
        assert refused.value.smtp_code == 530

    # the other session's own credentials (and API key) only ever reach the other mailbox,
    # whatever the recipient: there is no way into this one with them
    smtp_send(other, other["SMTP_USER"], other["SMTP_PASSWORD"], subject="from the other app", to=env["SMTP_USER"])
    resend_sdk(other).Emails.send({"from": "o@acme.test", "to": "x@example.com", "subject": "other via api"})
    assert [m.subject for m in store.list_mail(mine)] == ["signup notification"]
    assert sorted(m.subject for m in store.list_mail(theirs)) == ["from the other app", "other via api"]
    for path in (store.account_file(mine), *store.box_dir(mine).glob("*.eml")):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    record = store.account_file(mine).read_text()
    assert env["SMTP_PASSWORD"] not in record and env["RESEND_API_KEY"] not in record
    ledger_bytes = b"".join(p.read_bytes() for p in runtime.settings.data_dir.glob("ledger.sqlite3*"))
    ledger_bytes += "\n".join(runtime.ledger.iter_all_text()).encode()  # also on a Postgres ledger
    for secret in (env["SMTP_PASSWORD"], env["RESEND_API_KEY"]):
        assert secret.encode() not in ledger_bytes


async def test_teardown_removes_the_mailbox_and_its_credentials(runtime, session_key, resend_sdk):
    _, env = await provision(runtime, session_key)
    resend_sdk(env).Emails.send({"from": "a@acme.test", "to": "b@example.com", "subject": "before teardown"})
    store = MailStore(runtime.settings.mail_dir)
    name = f"mk0r-{session_key[:12]}"
    assert store.account_file(name).exists() and store.list_mail(name)

    report = await teardown_session(runtime, session_key)
    assert report.ok
    assert [(o.resource.provider, o.resource.kind, o.outcome) for o in report.outcomes if o.resource.provider == "local-mail"] == [
        ("local-mail", "mailbox", "deleted")]
    assert not store.account_file(name).exists() and not store.box_dir(name).exists()
    with pytest.raises(smtplib.SMTPAuthenticationError):
        smtp_send(env, env["SMTP_USER"], env["SMTP_PASSWORD"])
    refused = httpx.post(f"{env['RESEND_API_URL']}/emails", json={"from": "a@acme.test", "to": "b@x.test", "subject": "x"},
                         headers={"Authorization": f"Bearer {env['RESEND_API_KEY']}"}, timeout=10)
    assert (refused.status_code, refused.json()["name"]) == (403, "invalid_api_key")
    assert not store.box_dir(name).exists()  # the refused mail made no mailbox again
    again = await teardown_session(runtime, session_key)
    assert [o.outcome for o in again.outcomes] == []


async def test_orphans_finds_a_mailbox_with_no_session(runtime, session_key):
    report, _ = await provision(runtime, session_key)
    store = MailStore(runtime.settings.mail_dir)
    store.create_account("mk0r-leftover-mail")  # as a crash before the ledger row would leave it

    scan = await find_orphans(runtime, providers=["local-mail"])
    assert [(o.provider, o.kind, o.name) for o in scan.orphans] == [("local-mail", "mailbox", "mk0r-leftover-mail")]

    cli = json.loads(mk0r("orphans", "--provider", "local-mail", "--json").stdout)
    assert [o["name"] for o in cli] == ["mk0r-leftover-mail"]

    outcomes = await delete_orphans(runtime, scan.orphans)
    assert [o.outcome for o in outcomes] == ["deleted"]
    assert not store.account_file("mk0r-leftover-mail").exists()
    assert store.account_file(f"mk0r-{session_key[:12]}").exists()  # the live session's is untouched
    assert (await find_orphans(runtime, providers=["local-mail"])).orphans == []


def _listening(port: int) -> set[str]:
    """Local addresses of the listening TCP sockets on `port` (from /proc/net/tcp{,6})."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as handle:
            for line in handle.readlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                address, _, hex_port = local.partition(":")
                if state == "0A" and int(hex_port, 16) == port:
                    found.add(address)
    return found


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc")
async def test_the_catcher_listens_on_loopback_only_is_kept_warm_and_stops(runtime, session_key):
    _, env = await provision(runtime, session_key)
    catcher = MailCatcher(runtime.settings.mail_dir)
    running = catcher.running()
    assert running is not None and env["SMTP_PORT"] == str(running.smtp_port)
    for port in (running.smtp_port, running.http_port):
        assert _listening(port) == {"0100007F"}  # 127.0.0.1, nothing else

    status = mk0r("local-mail", "status")
    assert status.returncode == 0 and f"smtp 127.0.0.1:{running.smtp_port}" in status.stdout
    # a second session is served by the same, warm process
    await provision(runtime, "second-" + session_key[:8])
    assert catcher.running().pid == running.pid

    assert mk0r("local-mail", "stop").stdout.strip() == "stopped"
    assert catcher.running() is None and mk0r("local-mail", "status").stdout.strip() == "not running"
    # on demand again, on the same ports, so the .env written before still points at it
    restarted = catcher.ensure_running()
    assert (restarted.smtp_port, restarted.http_port) == (running.smtp_port, running.http_port)
    smtp_send(env, env["SMTP_USER"], env["SMTP_PASSWORD"], subject="after a restart")
    assert [m["subject"] for m in json.loads(mk0r("mail", session_key, "--json").stdout)] == ["after a restart"]


def test_the_shipped_resend_schemas_are_the_specs_own():
    """The wheel's copy of Resend's email schemas is the repository's copy of Resend's document."""
    from apispec import specs_dir

    full = json.loads((specs_dir() / "resend.json").read_text())
    ours = load_spec()
    for name, schema in ours["components"]["schemas"].items():
        assert schema == full["components"]["schemas"][name], name
    assert ours["paths"]["/emails"]["post"] == full["paths"]["/emails"]["post"]
    assert ours["paths"]["/emails/{email_id}"]["get"] == full["paths"]["/emails/{email_id}"]["get"]


def test_the_wheel_ships_the_resend_spec(tmp_path):
    import zipfile

    from hatchling.builders.wheel import WheelBuilder

    wheel = next(iter(WheelBuilder(str(ROOT)).build(directory=str(tmp_path), versions=["standard"])))
    assert "mk0r_tui/specs/resend-emails.json" in zipfile.ZipFile(wheel).namelist()


def test_mail_for_a_session_without_a_local_mailbox_or_an_unknown_one(mk0r_home, session_key):

    mk0r_home.mkdir(parents=True, exist_ok=True)
    with open_test_ledger(mk0r_home) as ledger:
        ledger.ensure_session(Session.parse(session_key))
    listed = mk0r("mail", session_key, "--json")
    assert listed.returncode == 0 and json.loads(listed.stdout) == []
    assert "no local mailbox" in listed.stderr
    unknown = mk0r("mail", "no-such-session-1")
    assert unknown.returncode == 2 and "no session" in unknown.stderr and "Traceback" not in unknown.stderr
