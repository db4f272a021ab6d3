"""The local profile's mail catcher: a small daemon that catches every email an app sends and
keeps it on disk, per session, never sending anything anywhere.

One process, started on demand and kept warm (like the embedded Postgres), listening on
127.0.0.1 only, serves two doors into the same mailboxes:
- SMTP (aiosmtpd), AUTH required: a session's `SMTP_USER`/`SMTP_PASSWORD` deliver into that
  session's mailbox only, whatever the recipients say;
- a Resend-compatible HTTP API (Starlette on uvicorn): `POST /emails` (validated against the
  Resend OpenAPI schema shipped in `mk0r_tui/specs/`) and `GET /emails/{id}`, with a
  per-session bearer key, so an app written against a Resend SDK works unchanged.

Layout of the catcher's folder (`<data dir>/mail`, or `MK0R_MAIL_DIR`):

    catcher.json            pid and ports of the running daemon (written once it listens)
    ports.json              the last ports, reused on the next start so an app's .env stays right
    catcher.log             the daemon's own log (never a credential)
    accounts/mk0r-<slug>.json   0600: SHA-256 of the session's SMTP password and API key
    boxes/mk0r-<slug>/<ns>-<id>.eml   0600: one caught mail, with X-Mk0r-* headers

The secrets are 32 random bytes each, so a plain SHA-256 is enough to keep them out of the
folder in clear (there is nothing to brute-force); the clear values live only in the app's .env.
This module reads and writes the folder for everyone (provider, CLI, dashboard); only `serve`
needs aiosmtpd, Starlette and uvicorn, and only the daemon runs it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hashlib
import hmac
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mk0r_tui.core.errors import ConfigError
from mk0r_tui.core.paths import folder_lock

if TYPE_CHECKING:  # the daemon's libraries, imported at run time only where they are used
    from email.message import EmailMessage, Message

    from aiosmtpd.smtp import SMTP, AuthenticatorType, Envelope, Session
    from jsonschema.protocols import Validator
    from starlette.applications import Starlette

HOST = "127.0.0.1"
ACCOUNT_PREFIX = "mk0r-"
VIA_HEADER, ID_HEADER, AT_HEADER = "X-Mk0r-Via", "X-Mk0r-Mail-Id", "X-Mk0r-Received-At"
ENVELOPE_TO_HEADER = "X-Mk0r-Envelope-To"
START_TIMEOUT_S = 20.0


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _write_private(path: Path, data: bytes) -> None:
    """Write `data` to `path` with mode 0600, atomically (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _check_name(name: str) -> str:
    if not name.startswith(ACCOUNT_PREFIX) or "/" in name or ".." in name or not name[len(ACCOUNT_PREFIX):]:
        raise ValueError(f"refusing to touch {name!r}: not an mk0r mailbox name")
    return name


@dataclasses.dataclass(frozen=True, slots=True)
class Credentials:
    """A session's clear credentials: returned once, at creation, for the app's .env."""

    smtp_user: str
    smtp_password: str
    api_key: str


@dataclasses.dataclass(frozen=True, slots=True)
class Endpoints:
    pid: int
    smtp_port: int
    http_port: int
    host: str = HOST

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.http_port}"


@dataclasses.dataclass(frozen=True, slots=True)
class MailSummary:
    id: str
    at: str  # ISO 8601, UTC
    sender: str
    to: tuple[str, ...]
    subject: str
    via: str  # "smtp" or "api"
    path: Path

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "at": self.at, "from": self.sender, "to": list(self.to), "subject": self.subject, "via": self.via}


@dataclasses.dataclass(frozen=True, slots=True)
class MailboxSummary:
    count: int
    latest: MailSummary | None


class MailStore:
    """The catcher's folder: accounts, mailboxes and the daemon's state files."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.accounts_dir = self.root / "accounts"
        self.boxes_dir = self.root / "boxes"
        self.state_file = self.root / "catcher.json"
        self.ports_file = self.root / "ports.json"
        self.log_file = self.root / "catcher.log"

    # -- accounts ------------------------------------------------------------------------

    def account_file(self, name: str) -> Path:
        return self.accounts_dir / f"{_check_name(name)}.json"

    def box_dir(self, name: str) -> Path:
        return self.boxes_dir / _check_name(name)

    def create_account(self, name: str) -> Credentials:
        """New credentials for `name` (replacing any old ones: the clear values cannot be read
        back, as with a database role's password) and an empty mailbox if it has none."""
        creds = Credentials(name, secrets.token_urlsafe(32), "re_local_" + secrets.token_urlsafe(32))
        record = {
            "name": name,
            "smtp_user": creds.smtp_user,
            "smtp_password_sha256": _digest(creds.smtp_password),
            "api_key_sha256": _digest(creds.api_key),
            "created_at": time.time(),
        }
        for folder in (self.root, self.accounts_dir, self.boxes_dir, self.box_dir(name)):
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        _write_private(self.account_file(name), json.dumps(record).encode())
        return creds

    def _accounts(self) -> Iterator[dict[str, Any]]:
        if not self.accounts_dir.is_dir():
            return
        for path in self.accounts_dir.glob(f"{ACCOUNT_PREFIX}*.json"):
            with contextlib.suppress(OSError, ValueError):
                yield json.loads(path.read_text())

    def check_smtp(self, user: str, password: str) -> str | None:
        """The mailbox name these SMTP credentials deliver into, or None."""
        try:
            path = self.account_file(user)
            record = json.loads(path.read_text())
        except (ValueError, OSError):
            return None
        if record.get("smtp_user") != user:
            return None
        ok = hmac.compare_digest(record.get("smtp_password_sha256", ""), _digest(password))
        return record["name"] if ok else None

    def check_api_key(self, key: str) -> str | None:
        """The mailbox name this bearer key sends into, or None."""
        wanted = _digest(key)
        for record in self._accounts():
            if hmac.compare_digest(record.get("api_key_sha256", ""), wanted):
                return record.get("name")
        return None

    def remove(self, name: str) -> bool:
        """Delete the mailbox and the credentials of `name`; False when neither existed."""
        import shutil

        existed = False
        account = self.account_file(name)
        if account.exists():
            account.unlink()
            existed = True
        box = self.box_dir(name)
        if box.exists():
            shutil.rmtree(box)
            existed = True
        return existed

    def names(self) -> dict[str, float]:
        """Every mailbox or account on disk → its creation time (mtime)."""
        found: dict[str, float] = {}
        if self.boxes_dir.is_dir():
            for path in self.boxes_dir.glob(f"{ACCOUNT_PREFIX}*"):
                found[path.name] = path.stat().st_mtime
        if self.accounts_dir.is_dir():
            for path in self.accounts_dir.glob(f"{ACCOUNT_PREFIX}*.json"):
                found.setdefault(path.name[: -len(".json")], path.stat().st_mtime)
        return found

    # -- mail ----------------------------------------------------------------------------

    def deliver(self, name: str, message: Message | bytes, *, via: str, envelope_to: tuple[str, ...] = ()) -> str:
        """Store one mail in `name`'s box; returns its id. `envelope_to`: SMTP's RCPT TO, kept
        so a mail with no To header (Bcc only) still says where it was going."""
        from email import policy  # here, not at import: provisioning never parses a mail

        raw = message if isinstance(message, bytes) else message.as_bytes(policy=policy.SMTP)
        mail_id = str(uuid.uuid4())
        now = dt.datetime.now(dt.UTC)
        stamp = (
            f"{VIA_HEADER}: {via}\r\n{ID_HEADER}: {mail_id}\r\n{AT_HEADER}: {now.isoformat(timespec='milliseconds')}\r\n"
            + "".join(f"{ENVELOPE_TO_HEADER}: {addr}\r\n" for addr in envelope_to if "\n" not in addr and "\r" not in addr)
        ).encode()
        box = self.box_dir(name)
        box.mkdir(parents=True, exist_ok=True, mode=0o700)
        _write_private(box / f"{time.time_ns():020d}-{mail_id}.eml", stamp + raw)
        return mail_id

    def _files(self, name: str) -> list[Path]:
        box = self.box_dir(name)
        if not box.is_dir():
            return []
        return sorted((p for p in box.glob("*.eml")), key=lambda p: p.name, reverse=True)

    @staticmethod
    def _summary(path: Path) -> MailSummary:
        from email import policy
        from email.parser import BytesHeaderParser
        from email.utils import getaddresses

        with open(path, "rb") as handle:
            headers = BytesHeaderParser(policy=policy.default).parse(handle)
        to = tuple(addr for _, addr in getaddresses([str(h) for h in headers.get_all("To", [])]) if addr)
        if not to:
            to = tuple(str(h) for h in headers.get_all(ENVELOPE_TO_HEADER, []))
        return MailSummary(
            id=str(headers.get(ID_HEADER, path.stem.partition("-")[2])),
            at=str(headers.get(AT_HEADER, "")),
            sender=str(headers.get("From", "")),
            to=to,
            subject=str(headers.get("Subject", "")),
            via=str(headers.get(VIA_HEADER, "smtp")),
            path=path,
        )

    def list_mail(self, name: str) -> list[MailSummary]:
        """Every caught mail of `name`, newest first."""
        found = []
        for path in self._files(name):
            with contextlib.suppress(OSError):
                found.append(self._summary(path))
        return found

    def mailbox_summary(self, name: str) -> MailboxSummary:
        """Count and the newest mail, reading one file's headers only (the dashboard polls this)."""
        files = self._files(name)
        latest = None
        for path in files:
            with contextlib.suppress(OSError):
                latest = self._summary(path)
                break
        return MailboxSummary(len(files), latest)

    def read(self, name: str, mail_id: str) -> EmailMessage | None:
        from email import policy
        from email.parser import BytesParser

        for path in self._files(name):
            if path.name.endswith(f"-{mail_id}.eml"):
                with open(path, "rb") as handle:
                    return BytesParser(policy=policy.default).parse(handle)
        return None

    # -- the daemon's state ----------------------------------------------------------------

    def running(self) -> Endpoints | None:
        """The live daemon serving this folder, or None (a stale state file is not a daemon)."""
        try:
            state = json.loads(self.state_file.read_text())
            endpoints = Endpoints(int(state["pid"]), int(state["smtp_port"]), int(state["http_port"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None
        try:
            os.kill(endpoints.pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return endpoints if _answers(endpoints, self.root) else None


def text_body(message: EmailMessage) -> str:
    """The plain-text body, else the HTML one, else ''."""
    part = message.get_body(preferencelist=("plain", "html"))
    if part is None:
        return ""
    try:
        content: str = part.get_content()  # a text/* part's content is str (email.contentmanager)
        return content
    except (LookupError, KeyError):
        payload = part.get_payload(decode=True)  # a non-multipart part decodes to bytes
        return payload.decode(errors="replace") if isinstance(payload, bytes) and payload else ""


def _answers(endpoints: Endpoints, root: Path) -> bool:
    """True when the HTTP port answers as the catcher of `root` (not some other process)."""
    import http.client

    try:
        conn = http.client.HTTPConnection(endpoints.host, endpoints.http_port, timeout=2)
        conn.request("GET", "/_mk0r/health")
        response = conn.getresponse()
        body = json.loads(response.read() or b"{}")
        conn.close()
    except (OSError, ValueError):
        return False
    return response.status == 200 and body.get("root") == str(root.resolve())


def _alive(pid: int) -> bool:
    """True while `pid` runs; reaps it when it is our own child that exited (a zombie would
    otherwise look alive to `kill(pid, 0)`)."""
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


class MailCatcher:
    """Starts, finds and stops the daemon of one folder. Safe across processes (a file lock)."""

    def __init__(self, root: Path) -> None:
        self.store = MailStore(root)
        self.root = self.store.root

    def running(self) -> Endpoints | None:
        return self.store.running()

    def ensure_running(self) -> Endpoints:
        with folder_lock(self.root):
            endpoints = self.store.running()
            if endpoints is not None:
                return endpoints
            return self._start()

    def _start(self) -> Endpoints:
        self.store.state_file.unlink(missing_ok=True)
        log = open(self.store.log_file, "ab")  # noqa: SIM115  (handed to the daemon, closed below)
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "mk0r_tui.providers.mail_catcher", "serve", str(self.root.resolve())],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,  # survives the CLI that started it: kept warm
                close_fds=True,
                cwd="/",
            )
        finally:
            log.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            endpoints = self.store.running()
            if endpoints is not None and endpoints.pid == proc.pid:
                return endpoints
            if proc.poll() is not None:
                break
            time.sleep(0.05)
        if proc.poll() is None:
            proc.terminate()
        tail = ""
        with contextlib.suppress(OSError):
            tail = " | ".join(self.store.log_file.read_text(errors="replace").strip().splitlines()[-3:])
        raise ConfigError(f"the local mail catcher did not start within {START_TIMEOUT_S:.0f}s: {tail or 'no log'}")

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop the daemon if it runs; True if it was running."""
        endpoints = self.store.running()
        if endpoints is None:
            return False
        with contextlib.suppress(ProcessLookupError):
            os.kill(endpoints.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not _alive(endpoints.pid):
                break
            time.sleep(0.02)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.kill(endpoints.pid, signal.SIGKILL)
        self.store.state_file.unlink(missing_ok=True)
        return True


# -- the Resend-compatible API: validation and the error shape --------------------------------


def load_spec() -> dict[str, Any]:
    """The part of Resend's OpenAPI document the catcher serves (shipped in the wheel)."""
    from importlib.resources import files

    spec: dict[str, Any] = json.loads((files("mk0r_tui") / "specs" / "resend-emails.json").read_text())
    return spec


def send_email_validator() -> Validator:
    """A JSON Schema validator for `POST /emails` bodies (OpenAPI 3.1 schemas are JSON Schema
    2020-12, so the spec's components are used as they are, `$ref`s and all)."""
    from jsonschema import Draft202012Validator

    spec = load_spec()
    return Draft202012Validator({"$ref": "#/components/schemas/SendEmailRequest", "components": spec["components"]})


def resend_error(status: int, name: str, message: str) -> dict[str, Any]:
    """Resend's error body (https://resend.com/docs/api-reference/errors)."""
    return {"statusCode": status, "name": name, "message": message}


def validation_problem(validator: Validator, body: Any) -> tuple[int, str, str] | None:
    """None when `body` is a valid send request, else (status, name, message) as Resend says:
    a missing field is 422 `missing_required_field`, anything else 422 `validation_error`."""
    errors = sorted(validator.iter_errors(body), key=lambda e: (len(e.path), e.message))
    if not errors:
        return None
    first = errors[0]
    if first.validator == "required":
        return 422, "missing_required_field", f"Missing `{first.message.split(chr(39))[1]}` field."
    where = "/".join(str(p) for p in first.path) or "body"
    if first.validator == "oneOf":
        message = f"Invalid `{where}` field: expected a string or an array of strings."
    else:
        message = f"Invalid `{where}` field: {first.message}"
    return 422, "validation_error", message


def _addresses(value: str | list[str] | None) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def message_from_request(body: Mapping[str, Any]) -> EmailMessage:
    """An RFC 5322 message for a valid `POST /emails` body."""
    import base64
    from email import policy
    from email.message import EmailMessage
    from email.utils import formatdate, make_msgid

    msg = EmailMessage(policy=policy.SMTP)
    msg["From"] = body["from"]
    msg["To"] = ", ".join(_addresses(body["to"]))
    for field, header in (("cc", "Cc"), ("reply_to", "Reply-To")):
        if body.get(field):
            msg[header] = ", ".join(_addresses(body[field]))
    if body.get("bcc"):  # a real Bcc never shows in the headers; kept visible here for the operator
        msg["X-Mk0r-Bcc"] = ", ".join(_addresses(body["bcc"]))
    msg["Subject"] = body["subject"]
    msg["Date"] = formatdate(localtime=False, usegmt=True)
    msg["Message-ID"] = make_msgid(domain="mail-catcher.mk0r.localhost")
    for key, value in (body.get("headers") or {}).items():
        if key.lower() not in ("from", "to", "cc", "subject", "date", "message-id"):
            msg[str(key)] = str(value)
    for tag in body.get("tags") or []:
        msg["X-Mk0r-Tag"] = f"{tag.get('name', '')}={tag.get('value', '')}"
    if body.get("template"):
        msg["X-Mk0r-Template"] = json.dumps(body["template"], sort_keys=True)
    text, html = body.get("text"), body.get("html")
    msg.set_content(text if text is not None else ("" if html is not None else "(no body)"))
    if html is not None:
        msg.add_alternative(html, subtype="html")
    for attachment in body.get("attachments") or []:
        filename = attachment.get("filename") or "attachment"
        if attachment.get("content") is not None:
            with contextlib.suppress(ValueError):
                data = base64.b64decode(attachment["content"], validate=False)
                maintype, _, subtype = (attachment.get("content_type") or "application/octet-stream").partition("/")
                msg.add_attachment(data, maintype=maintype, subtype=subtype or "octet-stream", filename=filename)
        elif attachment.get("path"):  # never fetched: the catcher makes no outside request
            msg["X-Mk0r-Attachment-Path"] = f"{filename}: {attachment['path']}"
    return msg


def email_object(summary: MailSummary, message: EmailMessage) -> dict[str, Any]:
    """`GET /emails/{id}`'s answer, shaped like the spec's `Email`."""
    from email.utils import getaddresses

    html_part = message.get_body(preferencelist=("html",))
    plain_part = message.get_body(preferencelist=("plain",))
    created = summary.at.replace("T", " ")

    def header_list(name: str) -> list[str]:
        return [addr for _, addr in getaddresses([str(h) for h in message.get_all(name, [])]) if addr]

    return {
        "object": "email",
        "id": summary.id,
        "message_id": str(message.get("Message-ID", "")).strip(),
        "to": list(summary.to),
        "from": summary.sender,
        "created_at": created,
        "subject": summary.subject,
        "html": html_part.get_content() if html_part is not None else "",
        "text": plain_part.get_content() if plain_part is not None else "",
        "bcc": header_list("X-Mk0r-Bcc"),
        "cc": header_list("Cc"),
        "reply_to": header_list("Reply-To"),
        "last_event": "delivered",
    }


# -- the daemon ---------------------------------------------------------------------------------


def build_http_app(store: MailStore) -> Starlette:
    """The Resend-compatible API. Starlette: small, async, on the uvicorn the team uses anyway."""
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    validator = send_email_validator()
    root = str(store.root.resolve())

    def error(status: int, name: str, message: str) -> JSONResponse:
        return JSONResponse(resend_error(status, name, message), status_code=status)

    def account_of(request: Request) -> str | JSONResponse:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return error(401, "missing_api_key", "Missing API key in the authorization header.")
        name = store.check_api_key(token.strip())
        if name is None:
            return error(403, "invalid_api_key", "API key is invalid.")
        return name

    async def send(request: Request) -> JSONResponse:
        name = account_of(request)
        if isinstance(name, JSONResponse):
            return name
        try:
            body = json.loads(await request.body() or b"null")
        except ValueError:
            return error(400, "validation_error", "The request body is not valid JSON.")
        problem = validation_problem(validator, body)
        if problem is not None:
            return error(*problem)
        try:
            message = message_from_request(body)
        except (ValueError, TypeError) as exc:  # e.g. a header value with a line break in it
            return error(422, "validation_error", f"Invalid email: {exc}")
        mail_id = store.deliver(name, message, via="api")
        return JSONResponse({"id": mail_id})

    async def get_email(request: Request) -> JSONResponse:
        name = account_of(request)
        if isinstance(name, JSONResponse):
            return name
        mail_id = request.path_params["email_id"]
        message = store.read(name, mail_id)
        summary = next((m for m in store.list_mail(name) if m.id == mail_id), None)
        if message is None or summary is None:
            return error(404, "not_found", "Email not found.")
        return JSONResponse(email_object(summary, message))

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True, "root": root, "pid": os.getpid()})

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        # Starlette's handler type takes any Exception; this one is registered for HTTPException only
        assert isinstance(exc, HTTPException)
        if exc.status_code == 405:
            return error(405, "method_not_allowed", "Method is not allowed for the requested path.")
        if exc.status_code == 404:
            return error(404, "not_found", "The requested endpoint does not exist.")
        return error(exc.status_code, "application_error", str(exc.detail))

    return Starlette(
        routes=[
            Route("/emails", send, methods=["POST"]),
            Route("/emails/{email_id}", get_email, methods=["GET"]),
            Route("/_mk0r/health", health, methods=["GET"]),
        ],
        exception_handlers={HTTPException: http_error},
    )


class _SmtpHandler:
    def __init__(self, store: MailStore) -> None:
        self.store = store

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        name = session.auth_data  # set by the authenticator: the mailbox these credentials own
        if not isinstance(name, str):
            return "530 5.7.0 Authentication required"
        self.store.deliver(
            name, envelope.original_content or envelope.content, via="smtp", envelope_to=tuple(envelope.rcpt_tos)
        )
        return "250 2.0.0 OK: caught locally, not sent"


def _authenticator(store: MailStore) -> AuthenticatorType:
    from aiosmtpd.smtp import AuthResult, LoginPassword

    def authenticate(server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        user = auth_data.login.decode(errors="replace")
        password = auth_data.password.decode(errors="replace")
        try:
            name = store.check_smtp(user, password)
        except ValueError:  # not an mk0r user name at all
            name = None
        return AuthResult(success=name is not None, handled=False, auth_data=name)

    return authenticate


def _bind(preferred: int | None) -> socket.socket:
    # IPPROTO_TCP, not 0: asyncio turns TCP_NODELAY on for accepted connections only when the
    # listening socket says TCP, else an answer written in two parts waits for a delayed ACK
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((HOST, preferred or 0))
    except OSError:
        sock.bind((HOST, 0))
    sock.listen(128)
    sock.setblocking(False)
    return sock


async def serve(root: Path) -> None:
    """Run the daemon until SIGTERM/SIGINT, or until its folder goes away."""
    import asyncio
    import logging
    import warnings

    import uvicorn
    from aiosmtpd.smtp import SMTP

    # aiosmtpd warns on every connection that AUTH without TLS is unsafe: on loopback it is
    # what we chose (see auth_require_tls below), so the log keeps only real problems
    warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")
    warnings.filterwarnings("ignore", message="Session.login_data is deprecated")
    logging.getLogger("mail.log").setLevel(logging.ERROR)
    store = MailStore(root)
    store.root.mkdir(parents=True, exist_ok=True, mode=0o700)
    previous: dict[str, int] = {}
    with contextlib.suppress(OSError, ValueError):
        previous = json.loads(store.ports_file.read_text())
    smtp_sock = _bind(previous.get("smtp_port"))
    http_sock = _bind(previous.get("http_port"))
    loop = asyncio.get_running_loop()
    handler = _SmtpHandler(store)
    smtp_server = await loop.create_server(
        lambda: SMTP(
            handler,
            hostname="mail-catcher.mk0r.localhost",
            authenticator=_authenticator(store),
            auth_required=True,
            # AUTH over plain TCP: aiosmtpd refuses it unless told otherwise, to keep passwords
            # off the wire in clear. Here the wire is loopback only (we bind 127.0.0.1), so
            # nothing leaves the machine, and apps' SMTP clients need no certificate to trust.
            auth_require_tls=False,
        ),
        sock=smtp_sock,
    )

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:  # our own handlers below end both servers the same way
            yield

    http = Server(uvicorn.Config(build_http_app(store), log_level="warning", access_log=False, lifespan="off"))
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    http_task = asyncio.create_task(http.serve(sockets=[http_sock]))
    while not http.started and not http_task.done():  # noqa: ASYNC110  (uvicorn exposes a flag, no event)
        await asyncio.sleep(0.01)
    smtp_port, http_port = smtp_sock.getsockname()[1], http_sock.getsockname()[1]
    ports = {"smtp_port": smtp_port, "http_port": http_port}
    _write_private(store.ports_file, json.dumps(ports).encode())
    _write_private(store.state_file, json.dumps({"pid": os.getpid(), **ports, "started_at": time.time()}).encode())
    print(f"mail catcher {os.getpid()} on {HOST}: smtp {smtp_port}, http {http_port}", flush=True)

    async def watch_folder() -> None:  # a deleted data dir (or a newer daemon) ends this one
        while not stop.is_set():
            await asyncio.sleep(1.0)
            try:
                if json.loads(store.state_file.read_text()).get("pid") != os.getpid():
                    stop.set()
            except (OSError, ValueError):
                stop.set()

    watcher = asyncio.create_task(watch_folder())
    stopper = asyncio.create_task(stop.wait())
    await asyncio.wait({http_task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    http.should_exit = True
    smtp_server.close()
    watcher.cancel()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(http_task, 5)
    with contextlib.suppress(Exception):
        await asyncio.wait_for(smtp_server.wait_closed(), 2)
    with contextlib.suppress(OSError, ValueError):
        if json.loads(store.state_file.read_text()).get("pid") == os.getpid():
            store.state_file.unlink()
    print(f"mail catcher {os.getpid()} stopped", flush=True)


def main(argv: list[str] | None = None) -> None:
    import asyncio

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] != "serve":
        print("usage: python -m mk0r_tui.providers.mail_catcher serve ROOT", file=sys.stderr)
        raise SystemExit(2)
    asyncio.run(serve(Path(args[1])))


if __name__ == "__main__":
    main()
