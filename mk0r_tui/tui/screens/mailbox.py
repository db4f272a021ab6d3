"""`m`: the mails a session's app sent to the local mail catcher, newest first, and the one
under the cursor (its headers and text body). Nothing here was sent anywhere: the local
profile's email slot catches every mail on disk. The list follows new mail as it lands."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Header, Static

from mk0r_tui.providers.mail_catcher import MailStore, MailSummary, text_body
from mk0r_tui.tui.widgets.footer import DebouncedFooter

SHOWN_HEADERS = ("From", "To", "Cc", "Reply-To", "X-Mk0r-Bcc", "Subject", "Date", "X-Mk0r-Via", "X-Mk0r-Received-At")
POLL_S = 0.5


class MailboxScreen(Screen[None]):
    TITLE = "Mailbox"
    AUTO_FOCUS = "#mail-table"
    BINDINGS = [
        Binding("escape,q", "close", "Back", id="mailbox.close"),
        Binding("r", "reload", "Reload", id="mailbox.reload", tooltip="Read the mailbox again"),
    ]

    def __init__(self, mail_dir: Path, name: str) -> None:
        super().__init__()
        self.store = MailStore(mail_dir)
        self.mailbox = name
        self.mails: list[MailSummary] = []
        self._stamp: int | None = -1

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="mailbox-path")
        yield DataTable(id="mail-table", cursor_type="row")
        with VerticalScroll(id="mail-view"):
            yield Static(id="mail-body")
        yield DebouncedFooter()

    def on_mount(self) -> None:
        self.query_one("#mail-view").border_title = "mail"
        table = self.query_one(DataTable)
        for key, label in (("at", "received (UTC)"), ("via", "via"), ("to", "to"), ("subject", "subject")):
            table.add_column(label, key=key)
        self.reload()
        self.set_interval(POLL_S, self._poll, name="mailbox-poll")

    def _box_stamp(self) -> int | None:
        try:
            return self.store.box_dir(self.mailbox).stat().st_mtime_ns
        except OSError:
            return None

    def _poll(self) -> None:
        if self._box_stamp() != self._stamp:
            self.reload()

    def reload(self) -> None:
        self._stamp = self._box_stamp()
        table = self.query_one(DataTable)
        selected = self.mails[table.cursor_row].id if self.mails and 0 <= table.cursor_row < len(self.mails) else None
        self.mails = self.store.list_mail(self.mailbox)
        box = self.store.box_dir(self.mailbox)
        count = len(self.mails)
        self.query_one("#mailbox-path", Static).update(
            f"{self.mailbox} · {count} mail{'s' if count != 1 else ''} caught locally, none sent · {box}"
        )
        table.clear()
        for mail in self.mails:
            at = mail.at.replace("T", " ")[:19]
            table.add_row(at, mail.via, ", ".join(mail.to), Text(mail.subject or "(no subject)", style="bold"), key=mail.id)
        if selected is not None:
            index = next((i for i, m in enumerate(self.mails) if m.id == selected), 0)
            table.move_cursor(row=index)
        self._show(table.cursor_row)

    def _show(self, row: int) -> None:
        body = self.query_one("#mail-body", Static)
        if not self.mails or not 0 <= row < len(self.mails):
            body.update(Text("No mail yet. Mail the app sends (SMTP or the Resend API in its .env) shows here.", style="dim"))
            return
        message = self.store.read(self.mailbox, self.mails[row].id)
        if message is None:
            body.update(Text("This mail is gone (the mailbox changed).", style="dim"))
            return
        text = Text()
        for name in SHOWN_HEADERS:
            for value in message.get_all(name, []):
                text.append(f"{name}: ", style="bold")
                text.append(f"{value}\n")
        text.append("\n")
        text.append(text_body(message) or "(no text body)")
        body.update(text)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show(event.cursor_row)

    def action_reload(self) -> None:
        self.reload()

    def action_close(self) -> None:
        self.dismiss()
