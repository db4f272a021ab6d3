"""The dashboard's email panel and mailbox screen against the real local profile: the real
`resend` SDK sends to the mail catcher the session's `.env` names, and the dashboard shows it."""

from __future__ import annotations

import smtplib
import time

from dotenv import dotenv_values
from textual.widgets import DataTable, Static

from mk0r_tui.core.models import Session, Status
from mk0r_tui.engine.runtime import Runtime
from mk0r_tui.providers import DEFAULT_REGISTRY
from mk0r_tui.tui.app import Mk0rApp
from mk0r_tui.tui.screens.dashboard import DashboardScreen
from mk0r_tui.tui.screens.help import HelpScreen
from mk0r_tui.tui.screens.mailbox import MailboxScreen

SIZE = (160, 48)


def text_of(widget: Static) -> str:
    return str(widget.render())


async def wait_for(pilot, condition, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await pilot.pause(0.05)


def mail_panel(app):
    return next(p for p in app.screen.provider_panels if p.panel.provider == "local-mail")


async def test_mail_sent_with_the_resend_sdk_shows_in_the_panel_and_the_mailbox(mk0r_home, session_key, monkeypatch):
    import resend

    runtime = Runtime(registry=DEFAULT_REGISTRY)
    app = Mk0rApp(runtime)
    try:
        async with app.run_test(size=SIZE) as pilot:
            app.start_provision(Session.parse(session_key))
            await wait_for(pilot, lambda: app.sessions.get(session_key) is not None and app.sessions[session_key].state == "ready", "provisioning")
            await wait_for(pilot, lambda: app.screen.selected_key == session_key and any(
                p.panel.provider == "local-mail" for p in app.screen.provider_panels), "the panels")
            panel = mail_panel(app)
            assert panel.panel.status is Status.OK
            await wait_for(pilot, lambda: "no mail caught yet" in text_of(panel._body), "the empty mailbox line")

            env = dotenv_values(runtime.settings.env_file_for(session_key[:12]))
            monkeypatch.setattr(resend, "api_url", env["RESEND_API_URL"])
            monkeypatch.setattr(resend, "api_key", env["RESEND_API_KEY"])
            resend.Emails.send({"from": "Acme <hi@acme.test>", "to": ["ada@example.com"], "subject": "Welcome, Ada",
                                "text": "Your account is ready.\nSee you soon."})
            await wait_for(pilot, lambda: "1 mail caught" in text_of(mail_panel(app)._body), "the count")
            body = text_of(mail_panel(app)._body)
            assert "Welcome, Ada" in body and "ada@example.com" in body

            with smtplib.SMTP(env["SMTP_HOST"], int(env["SMTP_PORT"]), timeout=10) as client:
                client.login(env["SMTP_USER"], env["SMTP_PASSWORD"])
                client.sendmail("hi@acme.test", ["bob@example.com"],
                                b"From: hi@acme.test\r\nTo: bob@example.com\r\nSubject: New signup: Bob\r\n\r\nBob signed up.\r\n")
            await wait_for(pilot, lambda: "2 mails caught" in text_of(mail_panel(app)._body), "the second mail")
            assert "New signup: Bob" in text_of(mail_panel(app)._body)

            assert app.screen.check_action("mailbox", ()) is True
            await pilot.press("m")
            await wait_for(pilot, lambda: isinstance(app.screen, MailboxScreen), "the mailbox screen")
            screen = app.screen
            table = screen.query_one(DataTable)
            await wait_for(pilot, lambda: table.row_count == 2, "two rows")
            assert [str(table.get_row_at(i)[3]) for i in range(2)] == ["New signup: Bob", "Welcome, Ada"]
            assert [table.get_row_at(i)[1] for i in range(2)] == ["smtp", "api"]
            shown = text_of(screen.query_one("#mail-body", Static))
            assert "Subject: New signup: Bob" in shown and "To: bob@example.com" in shown and "Bob signed up." in shown
            await pilot.press("down")
            await wait_for(pilot, lambda: "Your account is ready." in text_of(screen.query_one("#mail-body", Static)), "the second mail's body")
            shown = text_of(screen.query_one("#mail-body", Static))
            assert "From: Acme <hi@acme.test>" in shown and "X-Mk0r-Via: api" in shown
            assert env["RESEND_API_KEY"] not in shown and env["SMTP_PASSWORD"] not in shown

            # new mail shows up while the screen is open
            resend.Emails.send({"from": "hi@acme.test", "to": "cy@example.com", "subject": "Third", "text": "3"})
            await wait_for(pilot, lambda: table.row_count == 3, "the third row")
            await pilot.press("escape")
            await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen), "back on the dashboard")
            await wait_for(pilot, lambda: "3 mails caught" in text_of(mail_panel(app)._body), "the panel catching up")

            await pilot.press("question_mark")
            await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen), "help")
            keys = {title: [b.key for b in bindings] for title, bindings in app.screen.sections}
            assert "m" in keys["dashboard"] and "escape,q" in keys["mailbox"]
    finally:
        await runtime.aclose()
        runtime.close()
