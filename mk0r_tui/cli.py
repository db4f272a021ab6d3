"""The headless CLI: a thin layer over the core. Data on stdout, diagnostics on stderr.

Exit codes: 0 every configured provider ok, 1 some failed, 2 bad usage or configuration,
130 interrupted. Importing this module must not import Textual (the dashboard is imported
only when `mk0r-tui` runs with no command).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import re
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from mk0r_tui.core.errors import ConfigError, Mk0rError, UsageError

if TYPE_CHECKING:
    from mk0r_tui.core.config import Settings
    from mk0r_tui.core.credentials import Credentials
    from mk0r_tui.core.events import Event, EventSink
    from mk0r_tui.core.ledger import JournalRow
    from mk0r_tui.core.models import ProvisionReport
    from mk0r_tui.engine.orchestrator import OrphanScan, TeardownOutcome, TeardownReport
    from mk0r_tui.engine.runtime import Runtime

T = TypeVar("T")


class Mk0rGroup(click.Group):
    """Turns every Mk0rError into one clear line on stderr and its exit code: no tracebacks."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except Mk0rError as exc:
            click.echo(f"error: {_one_line(exc)}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)
        except BaseExceptionGroup as group:
            # a task group (the providers run in one) wraps what its tasks raised: a ledger
            # write failing mid-provision is still one line and its exit code, not a traceback
            known = group.subgroup(lambda e: isinstance(e, (Mk0rError, KeyboardInterrupt)))
            if known is None or group.subgroup(lambda e: not isinstance(e, (Mk0rError, KeyboardInterrupt, BaseExceptionGroup))):
                raise
            first = _leaf(known)
            if isinstance(first, KeyboardInterrupt):
                click.echo("interrupted", err=True)
                ctx.exit(130)
            click.echo(f"error: {_one_line(first)}", err=True)
            ctx.exit(first.exit_code if isinstance(first, Mk0rError) else 1)


def _leaf(group: BaseExceptionGroup) -> BaseException:
    first = group.exceptions[0]
    return _leaf(first) if isinstance(first, BaseExceptionGroup) else first


def _one_line(exc: BaseException) -> str:
    """The error as one line, without terminal control characters."""
    text = " ".join(str(exc).split())
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _runtime() -> Runtime:
    """The process's runtime, handed the default registry (engine/library.open_runtime: the
    library entry point opens the very same one)."""
    from mk0r_tui.engine.library import open_runtime

    return open_runtime()


def _warn_keyring(runtime: Runtime) -> None:
    message = runtime.credentials.keyring_message
    if message:
        click.echo(f"note: {message}", err=True)


def _emit(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=False, default=str))


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(ts, tz=dt.UTC).isoformat(timespec="seconds")


def parse_duration(text: str) -> float:
    """'90', '90s', '15m', '1h', '2d' → seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text or "")
    if not match:
        raise UsageError(f"bad duration {text!r}: use e.g. 30s, 15m, 1h or 2d")
    return float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]


def run_interruptible(make: Callable[[asyncio.Event], Awaitable[T]], *, on_first: str, on_second: Callable[[], str]) -> T:
    """Run a coroutine; the first Ctrl+C sets the stop event (in-flight work finishes and is
    recorded), the second exits at once with `on_second()` said on stderr."""

    async def main() -> T:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        hits = {"n": 0}

        def interrupted() -> None:
            hits["n"] += 1
            if hits["n"] == 1:
                stop.set()
                click.echo(on_first, err=True)
            else:
                click.echo(on_second(), err=True)
                sys.stderr.flush()
                import os

                os._exit(130)

        try:
            loop.add_signal_handler(signal.SIGINT, interrupted)
        except (NotImplementedError, RuntimeError):
            pass
        return await make(stop)

    return asyncio.run(main())


@click.group(cls=Mk0rGroup, invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--read-only", is_flag=True, help="Dashboard only: no provisioning or teardown, no reveal or copy of a secret.")
@click.version_option(package_name="mk0r-tui")
@click.pass_context
def cli(ctx: click.Context, read_only: bool) -> None:
    """Provision a real backend for every app session, and watch it happen.

    With no command, opens the dashboard.
    """
    if ctx.invoked_subcommand is not None:
        return
    # textual-serve (`mk0r-tui web`) runs each tab on pipes with TEXTUAL_DRIVER naming its web driver
    if not (sys.stdin.isatty() and sys.stdout.isatty()) and not os.environ.get("TEXTUAL_DRIVER"):
        commands = ", ".join(sorted(cli.list_commands(ctx)))
        raise UsageError(
            f"the dashboard needs a terminal (stdin and stdout); for scripts use a command: {commands} "
            "(`mk0r-tui --help`)"
        )
    runtime = _runtime()
    # the one deliberate deferral: `mk0r-tui provision --json` must never load Textual
    from mk0r_tui.tui.app import run_dashboard

    run_dashboard(runtime, read_only=read_only)


# -- web -------------------------------------------------------------------------------


@cli.command("web")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (loopback unless --allow-remote).")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535), help="Port (0: any free one).")
@click.option("--allow-actions", is_flag=True, help="Turn the operator's actions on: provisioning, teardown, reveal and copy of secrets.")
@click.option("--allow-remote", is_flag=True, help="Allow a host that is not loopback (prints a warning).")
@click.option("--max-tabs", default=4, show_default=True, type=click.IntRange(1, 64), help="Dashboard processes (browser tabs) at once.")
def web(host: str, port: int, allow_actions: bool, allow_remote: bool, max_tabs: int) -> None:
    """Serve the dashboard in a browser, one dashboard process per tab (read-only by default).

    Prints the URL to open, with a random access token: any request without it is refused (401).
    """
    from mk0r_tui.tui.web import is_loopback, remote_warning, serve_dashboard

    if not is_loopback(host):
        if not allow_remote:
            raise UsageError(f"--host {host} is not loopback: whoever reaches the port gets the dashboard; add --allow-remote to mean it")
        click.echo(remote_warning(host, allow_actions=allow_actions), err=True)
    runtime = _runtime()  # the data dir is checked (and made private) before any tab opens
    data_dir = runtime.settings.data_dir
    runtime.close()
    try:
        serve_dashboard(
            data_dir=data_dir, host=host, port=port, allow_actions=allow_actions, max_tabs=max_tabs,
            say=lambda line: click.echo(line), warn=lambda line: click.echo(line, err=True),
        )
    except OSError as exc:
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


# -- provision ---------------------------------------------------------------------------


def _progress_sink(enabled: bool) -> EventSink:
    from mk0r_tui.core.render import describe_event

    def sink(event: Event) -> None:
        if enabled:
            click.echo(f"  {describe_event(event)}", err=True)

    return sink


@cli.command()
@click.option("--session", "session_key", metavar="KEY", help="Session key (default: a new UUID); printable characters only, e.g. --session=-key for one starting with '-'.")
@click.option("--target", type=click.Choice(["auto", "local", "e2b"]), default=None, help="Where the .env goes (default: MK0R_TARGET or auto).")
@click.option("--sandbox", "sandbox_id", metavar="ID", help="e2b target: connect to this sandbox instead of creating one.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
@click.option("--reveal", is_flag=True, help="Show secret values unmasked in the output.")
def provision(session_key: str | None, target: str | None, sandbox_id: str | None, as_json: bool, reveal: bool) -> None:
    """Provision every service for a session, in parallel, and write its .env."""
    from mk0r_tui.core.envfile import masked_env
    from mk0r_tui.core.models import Session
    from mk0r_tui.engine.library import plan_run, provision_report_json
    from mk0r_tui.engine.orchestrator import provision_services

    session = Session.parse(session_key) if session_key is not None else Session.new()
    runtime = _runtime()
    plan = plan_run(runtime, target, sandbox_id)  # once per run: what is printed is what runs
    _warn_keyring(runtime)  # after the key look-ups above: only then is a missing keyring known
    show_progress = sys.stderr.isatty() or not as_json
    if show_progress:
        click.echo(f"provisioning session {session.key} (mk0r-{session.slug}) → {plan.target.name}", err=True)

    async def run(stop: asyncio.Event) -> ProvisionReport:
        try:
            return await provision_services(runtime, session, plan, sink=_progress_sink(show_progress))
        finally:
            await runtime.aclose()

    report = run_interruptible(
        run,
        on_first="interrupt: letting in-flight creates finish and recording them (Ctrl+C again to exit now)",
        on_second=lambda: f"exiting: resources of mk0r-{session.slug} may be left; run `mk0r-tui orphans`",
    )
    if as_json:
        _emit(provision_report_json(report, reveal=reveal))
    else:
        click.echo(f"session  {report.session.key}")
        click.echo(f"slug     {report.session.slug}")
        click.echo(f"env file {report.env_file}")
        for r in report.results:
            line = f"  {r.status.value:8} {r.name:16} {r.slot.value:10}"
            if r.latency_ms is not None and r.status.value == "ok":
                line += f" {r.latency_ms:7.0f} ms"
            if r.error or r.note:
                line += f"  {r.error or r.note}"
            click.echo(line)
        shown = report.env if reveal else masked_env(report.env)
        for key, value in shown.items():
            click.echo(f"{key}={value}")
    sys.exit(0 if report.ok else 1)


# -- sessions, env ------------------------------------------------------------------------


def sessions_json(runtime: Runtime) -> list[dict[str, Any]]:
    import time

    # a session whose run's owner is gone reads `interrupted` (core/states.py), here as everywhere
    runtime.ledger.settle_owner_gone(runtime.settings.lease_stale_s)
    runs = runtime.ledger.latest_runs_all()
    now = time.time()
    return [
        {
            "session": row.key,
            "slug": row.slug,
            "created_at": _iso(row.created_at),
            "age_s": round(now - row.created_at, 1),
            "state": row.state,
            "target": row.target,
            "env_file": row.env_file,
            "providers": {name: run.status for name, run in runs.get(row.key, {}).items()},
        }
        for row in runtime.ledger.list_sessions()
    ]


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list on stdout.")
def sessions(as_json: bool) -> None:
    """List every session in the ledger, newest first."""
    runtime = _runtime()
    data = sessions_json(runtime)
    if as_json:
        _emit(data)
        return
    if not data:
        click.echo("no sessions yet: run `mk0r-tui provision`", err=True)
    for item in data:
        statuses = " ".join(f"{n}:{s}" for n, s in item["providers"].items())
        click.echo(f"{item['slug']:13} {item['state']:20} {item['created_at']}  {statuses}")


@cli.command()
@click.argument("session")
@click.option("--reveal", is_flag=True, help="Show secret values unmasked.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object on stdout.")
def env(session: str, reveal: bool, as_json: bool) -> None:
    """Print a session's env (secrets masked unless --reveal).

    SESSION is a session key or slug; one starting with '-' goes after '--':
    `mk0r-tui env -- -my-session-key`.
    """
    from pathlib import Path

    from mk0r_tui.core.envfile import masked_env, read_env_file

    runtime = _runtime()
    row = runtime.ledger.require_session(session)
    path = Path(row.env_file) if row.env_file else runtime.settings.env_file_for(row.slug)
    values = read_env_file(path)
    if not values:
        raise UsageError(f"session {row.key!r} has no env file at {path}")
    shown = values if reveal else masked_env(values)
    if as_json:
        _emit({"session": row.key, "env_file": str(path), "env": shown})
        return
    for key, value in shown.items():
        click.echo(f"{key}={value}")


# -- teardown ------------------------------------------------------------------------------


@cli.command()
@click.argument("session")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--json", "as_json", is_flag=True, help="Print each resource's outcome as JSON.")
def teardown(session: str, yes: bool, as_json: bool) -> None:
    """Delete every resource of a session (idempotent: a second run does nothing).

    SESSION is a session key or slug; one starting with '-' goes after '--':
    `mk0r-tui teardown --yes -- -my-session-key`.
    """
    from mk0r_tui.engine.library import teardown_report_json
    from mk0r_tui.engine.orchestrator import teardown_session

    runtime = _runtime()
    row = runtime.ledger.require_session(session)
    live = [r for r in runtime.ledger.resources(row.key, live_only=True) if not r.handed_off]  # never what changed hands
    if not yes:
        if not sys.stdin.isatty():
            raise UsageError("refusing to tear down without --yes: there is no terminal to confirm on")
        click.echo(f"This deletes {len(live)} resource(s) of session {row.key}:", err=True)
        for r in live:
            click.echo(f"  {r.provider:15} {r.kind:12} {r.name}  {r.remote_id or '(id unknown)'}", err=True)
        typed = click.prompt(f"Type the slug ({row.slug}) to confirm", default="", show_default=False, err=True)
        if typed.strip() != row.slug:
            click.echo("not confirmed: nothing deleted", err=True)
            sys.exit(1)
    show_progress = sys.stderr.isatty() or not as_json

    async def run(stop: asyncio.Event) -> TeardownReport:
        try:
            return await teardown_session(runtime, row.key, sink=_progress_sink(show_progress), stop=stop)
        finally:
            await runtime.aclose()

    def left() -> str:
        remaining = runtime.ledger.resources(row.key, live_only=True)
        names = ", ".join(f"{r.provider}:{r.name}" for r in remaining) or "none"
        return f"exiting now; may be left: {names}. Run `mk0r-tui orphans` to find them."

    report = run_interruptible(run, on_first="interrupt: finishing in-flight deletes (Ctrl+C again to exit now)", on_second=left)
    if as_json:
        _emit(teardown_report_json(report))
    else:
        for o in report.outcomes:
            click.echo(f"  {o.outcome:13} {o.resource.provider:15} {o.resource.kind:12} {o.resource.name}" + (f"  {o.error}" if o.error else ""))
        if not report.outcomes:
            click.echo("nothing to delete", err=True)
    sys.exit(0 if report.ok else 1)


# -- the journal ---------------------------------------------------------------------------


def journal_json(row: JournalRow) -> dict[str, Any]:
    """One `events --json` line: the envelope, then the event's own fields (never a secret)."""
    at = dt.datetime.fromtimestamp(row.at, tz=dt.UTC).isoformat(timespec="milliseconds")
    envelope = {"id": row.id, "at": at, "session": row.session, "slug": row.slug, "provider": row.provider, "kind": row.kind}
    return {**envelope, **{k: v for k, v in row.fields.items() if k not in envelope}}


def _journal_line(row: JournalRow) -> str:
    from mk0r_tui.core.render import describe_event

    at = dt.datetime.fromtimestamp(row.at, tz=dt.UTC).isoformat(timespec="milliseconds")
    try:
        text = describe_event(row.event())
    except (KeyError, TypeError, ValueError):  # written by a newer mk0r-tui
        text = f"{row.provider}: {row.kind}"
    return f"{row.id:>8} {at} {row.slug:12} {text}"


@cli.command()
@click.option("--session", "session", metavar="S", help="Only this session (key or slug).")
@click.option("--since", "since", type=click.IntRange(min=0), default=0, show_default=True, metavar="ID",
              help="Only events after this journal id (resume a reader: pass the last id it saw).")
@click.option("--follow", "-f", is_flag=True, help="Keep printing events any process appends, until Ctrl+C.")
@click.option("--json", "as_json", is_flag=True, help="Newline-delimited JSON: one object per event.")
def events(session: str | None, since: int, follow: bool, as_json: bool) -> None:
    """The journal: every event of every run, whoever ran it (CLI, dashboard, library).

    With --json, one object per line: id, at (ISO 8601 UTC), session, slug, provider, kind,
    then the event's fields. --follow streams until Ctrl+C (exit 130).
    """
    from mk0r_tui.engine.journal import follow as follow_journal
    from mk0r_tui.engine.journal import open_source

    runtime = _runtime()
    try:
        source = open_source(runtime.ledger)  # its own connection (SQLite file or Postgres LISTEN)
    finally:
        runtime.close()

    def show(rows: list[JournalRow]) -> None:
        for row in rows:
            click.echo(json.dumps(journal_json(row), default=str) if as_json else _journal_line(row))

    try:
        if not follow:
            cursor = since
            while rows := source.since(cursor, session=session, limit=5000):
                show(rows)
                cursor = rows[-1].id
            return
        for rows in follow_journal(source, since, session=session):
            show(rows)
    finally:
        source.close()


@cli.command()
@click.option("--older-than", "older_than", default="30d", show_default=True, help="Journal rows older than this (30s, 15m, 1h, 2d).")
def prune(older_than: str) -> None:
    """Delete old journal rows of deleted sessions (a live session's rows are never touched)."""
    import time

    threshold = parse_duration(older_than)
    runtime = _runtime()
    try:
        removed = runtime.ledger.prune_journal(time.time() - threshold)
    finally:
        runtime.close()
    click.echo(f"pruned {removed} journal row(s) of deleted sessions older than {older_than}", err=True)


# -- orphans -----------------------------------------------------------------------------


@cli.command()
@click.option("--older-than", "older_than", default=None, metavar="AGE",
              help="Only resources older than this (30s, 15m, 1h, 2d). Default: 1h for what no ledger row records "
                   "(longer than any run), none for this ledger's rows (their lease says a run is dead).")
@click.option("--include-foreign", is_flag=True,
              help="Also delete resources that are not in this ledger (another ledger's mark, or no mark).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list on stdout.")
@click.option("--provider", "only", multiple=True, metavar="NAME", help="Scan only this provider (repeatable).")
@click.option("--delete", "delete", is_flag=True, help="Delete what was found (needs --yes without a terminal).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def orphans(older_than: str | None, as_json: bool, only: tuple[str, ...], delete: bool, yes: bool, include_foreign: bool) -> None:
    """Find resources named mk0r-* that no live session owns, and pending rows left by a crash.
    Those not in this ledger are listed apart and deleted only with --include-foreign."""
    from mk0r_tui.engine.orchestrator import delete_orphans, find_orphans

    threshold = None if older_than is None else parse_duration(older_than)
    runtime = _runtime()
    available = runtime.scannable()
    _warn_keyring(runtime)  # after the key look-ups above: only then is a missing keyring known
    unknown = [name for name in only if name not in available]
    if unknown:
        raise UsageError(f"unknown provider {', '.join(unknown)}: choose from {', '.join(available)} (cloud ones need their key)")

    async def scan() -> OrphanScan:
        try:
            return await find_orphans(runtime, older_than_s=threshold, providers=list(only) or None)
        finally:
            # the scan's loop ends here: its HTTP clients (and their sockets) must not outlive it
            # into the delete's loop, nor be left open for the interpreter's shutdown to reap
            await runtime.aclose()

    result = asyncio.run(scan())
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
    if not delete:
        if as_json:
            _emit([o.to_json() for o in result.orphans])
        else:
            if not result.orphans:
                click.echo(f"no orphans (scanned: {', '.join(result.scanned)})", err=True)
            for title, group in (("", result.ours), ("not in this ledger (deleted only with --include-foreign):", result.foreign)):
                if group and title:
                    click.echo(title)
                for o in group:
                    age = "?" if o.age_s is None else f"{o.age_s:.0f}s"
                    click.echo(f"{o.provider:15} {o.kind:12} {o.name:22} {o.remote_id or '-':30} {age:>8}  {o.reason}")
        sys.exit(1 if result.warnings else 0)
    chosen = result.orphans if include_foreign else result.ours
    if result.foreign and not include_foreign:
        click.echo(f"{len(result.foreign)} resource(s) not in this ledger are left alone (--include-foreign deletes them)", err=True)
    if chosen and not yes:
        if not sys.stdin.isatty():
            raise UsageError("refusing to delete orphans without --yes: there is no terminal to confirm on")
        for o in chosen:
            click.echo(f"  {o.provider:15} {o.kind:12} {o.name}" + ("  (not in this ledger)" if o.foreign else ""), err=True)
        if not click.confirm(f"Delete these {len(chosen)} resource(s)?", default=False, err=True):
            click.echo("nothing deleted", err=True)
            sys.exit(1)

    async def run(stop: asyncio.Event) -> list[TeardownOutcome]:
        try:
            return await delete_orphans(runtime, chosen, sink=_progress_sink(sys.stderr.isatty()), stop=stop,
                                        include_foreign=include_foreign)
        finally:
            await runtime.aclose()

    deleted = run_interruptible(run, on_first="interrupt: finishing in-flight deletes", on_second=lambda: "exiting now; run `mk0r-tui orphans` again")
    if as_json:
        _emit([d.to_json() for d in deleted])
    else:
        for d in deleted:
            click.echo(f"  {d.outcome:13} {d.resource.provider:15} {d.resource.kind:12} {d.resource.name}" + (f"  {d.error}" if d.error else ""))
    for d in deleted:
        if d.outcome == "skipped":  # re-checked just before its delete: its session is live again, or adopted
            click.echo(f"{d.resource.provider} {d.resource.kind} {d.resource.name}: {d.error}", err=True)
    sys.exit(0 if all(d.outcome in ("deleted", "already_gone", "skipped") for d in deleted) and not result.warnings else 1)


# -- the embedded server --------------------------------------------------------------------


@cli.group("local-postgres")
def local_postgres() -> None:
    """The embedded Postgres server of the local profile."""


@local_postgres.command("status")
def local_postgres_status() -> None:
    """Say whether the embedded server runs, and on which port."""
    from mk0r_tui.providers.embedded_pg import EmbeddedPostgres

    runtime = _runtime()
    port = EmbeddedPostgres(runtime.settings.postgres_dir).running_port()
    click.echo(f"running on 127.0.0.1:{port}" if port else "not running")


@local_postgres.command("stop")
def local_postgres_stop() -> None:
    """Stop the embedded server (it starts again on demand)."""
    from mk0r_tui.providers.embedded_pg import EmbeddedPostgres

    runtime = _runtime()
    stopped = EmbeddedPostgres(runtime.settings.postgres_dir).stop()
    click.echo("stopped" if stopped else "was not running")


# -- keys and doctor ------------------------------------------------------------------------


def _settings_and_credentials() -> tuple[Settings, Credentials]:
    from mk0r_tui.core.config import load_settings
    from mk0r_tui.core.credentials import Credentials

    settings = load_settings()
    return settings, Credentials(use_keyring=not settings.no_keyring)


def _known_key(name: str) -> str:
    from mk0r_tui.core.credentials import KEY_NAMES

    upper = name.strip().upper()
    if upper not in KEY_NAMES:
        raise UsageError(f"unknown key {name!r}; known keys: {', '.join(KEY_NAMES)}")
    return upper


def _keyring_call(action: Callable[[], T]) -> T:
    """Run a keyring write; no usable keyring is one clear line and exit 2, never a traceback."""
    from mk0r_tui.core.credentials import KeyringUnavailable

    try:
        return action()
    except KeyringUnavailable as exc:
        raise ConfigError(str(exc)) from None


@cli.group()
def keys() -> None:
    """Provisioning keys in the OS keyring (environment variables override them)."""


@keys.command("set")
@click.argument("name")
@click.option("--stdin", "from_stdin", is_flag=True, help="Read the value from standard input instead of a hidden prompt.")
def keys_set(name: str, from_stdin: bool) -> None:
    """Store NAME (e.g. NEON_PROVISIONING_KEY) in the OS keyring."""
    import os

    from mk0r_tui.core.envfile import mask_value

    key = _known_key(name)
    _, credentials = _settings_and_credentials()
    if from_stdin:
        value = sys.stdin.readline().strip()
    else:
        value = click.prompt(key, hide_input=True, err=True, default="", show_default=False).strip()
    if not value:
        raise UsageError(f"no value given for {key}: nothing stored")
    _keyring_call(lambda: credentials.set(key, value))
    click.echo(f"stored {key} in the OS keyring ({mask_value(key, value)})", err=True)
    if os.environ.get(key):
        click.echo(f"note: {key} is also set in the environment, which overrides the keyring", err=True)


@keys.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list on stdout.")
def keys_list(as_json: bool) -> None:
    """Every provisioning key: masked value and where it comes from (env or keyring)."""
    from mk0r_tui.core.envfile import mask_value

    _, credentials = _settings_and_credentials()
    found = credentials.all()
    message = credentials.keyring_message
    if message:
        click.echo(f"note: {message}", err=True)
    rows = [
        {"name": c.name, "present": c.present, "source": c.source, "value": mask_value(c.name, c.value) if c.value else None}
        for c in found
    ]
    if as_json:
        _emit(rows)
        return
    for row in rows:
        click.echo(f"{row['name']:28} {row['source'] or '-':8} {row['value'] or '(not set)'}")


@keys.command("delete")
@click.argument("name")
def keys_delete(name: str) -> None:
    """Remove NAME from the OS keyring (an environment variable of that name is untouched)."""
    key = _known_key(name)
    _, credentials = _settings_and_credentials()
    removed = _keyring_call(lambda: credentials.delete(key))
    click.echo(f"deleted {key} from the OS keyring" if removed else f"{key} was not in the OS keyring", err=True)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def doctor(as_json: bool) -> None:
    """Check every provider's key: present, where from, does it authenticate, what it would use.

    Exit 0 when nothing is failing (a missing key is not a failure: its slot is skipped or
    local), 1 when some key is present but does not work or lacks a scope.
    """
    from mk0r_tui.engine.doctor import run_doctor
    from mk0r_tui.providers import DEFAULT_REGISTRY

    settings, credentials = _settings_and_credentials()
    report = asyncio.run(run_doctor(settings, credentials, DEFAULT_REGISTRY))
    if as_json:
        _emit(report.to_json())
    else:
        if report.keyring_message:
            click.echo(f"note: {report.keyring_message}", err=True)
        for check in report.checks:
            source = f"({check.key_source})" if check.key_source else ""
            click.echo(f"{check.status:9} {check.provider:13} {check.key_name} {source}".rstrip())
            click.echo(f"          {check.detail}")
            for problem in check.problems:
                click.echo(f"          problem: {problem}")
            if check.settings:
                click.echo("          " + "  ".join(f"{k}={v}" for k, v in check.settings.items()))
    sys.exit(0 if report.ok else 1)


# -- the local mail catcher ------------------------------------------------------------------


@cli.command()
@click.argument("session")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list on stdout, newest first.")
def mail(session: str, as_json: bool) -> None:
    """List the mails a session's app sent to the local mail catcher, newest first.

    Nothing is ever sent anywhere: the local profile's email slot catches every mail on disk.
    """
    from mk0r_tui.providers.mail_catcher import MailStore

    runtime = _runtime()
    row = runtime.ledger.require_session(session)
    store = MailStore(runtime.settings.mail_dir)
    mails = store.list_mail(f"mk0r-{row.slug}")
    if not mails and not runtime.ledger.resources(row.key, provider="local-mail"):
        click.echo(f"session {row.key} has no local mailbox: its email slot is not local-mail", err=True)
    elif not mails and not as_json:
        click.echo(f"no mail caught for session {row.key} (mailbox {store.box_dir(f'mk0r-{row.slug}')})", err=True)
    if as_json:
        _emit([m.to_json() for m in mails])
        return
    for m in mails:
        click.echo(f"{m.at}  {m.via:4}  {', '.join(m.to):30}  {m.subject}  [{m.id}]")


@cli.group("local-mail")
def local_mail() -> None:
    """The local mail catcher of the local profile (SMTP + a Resend-compatible API)."""


@local_mail.command("status")
def local_mail_status() -> None:
    """Say whether the mail catcher runs, and on which ports."""
    from mk0r_tui.providers.mail_catcher import MailCatcher

    runtime = _runtime()
    endpoints = MailCatcher(runtime.settings.mail_dir).running()
    if endpoints is None:
        click.echo("not running")
    else:
        click.echo(f"running (pid {endpoints.pid}): smtp 127.0.0.1:{endpoints.smtp_port}, api {endpoints.base_url}")


@local_mail.command("stop")
def local_mail_stop() -> None:
    """Stop the mail catcher (it starts again on demand; caught mail stays on disk)."""
    from mk0r_tui.providers.mail_catcher import MailCatcher

    runtime = _runtime()
    stopped = MailCatcher(runtime.settings.mail_dir).stop()
    click.echo("stopped" if stopped else "was not running")


# -- hand-off ------------------------------------------------------------------------------


@cli.command()
@click.argument("session")
@click.option("--github-user", metavar="LOGIN", help="Transfer the repo to this GitHub user (they must accept it).")
@click.option("--github-org", metavar="ORG", help="Transfer the repo to this GitHub organisation.")
@click.option("--invite", metavar="LOGIN", help="Invite this GitHub user as an admin collaborator instead (the repo stays ours).")
@click.option("--neon-claim", is_flag=True, help="Create a Neon transfer request and print its claim link.")
@click.option("--neon-org", metavar="ORG_ID", help="Move the Neon project to this organization (org to org).")
@click.option("--revoke-email", is_flag=True, help="Delete the app's Resend sending key (Resend has no transfer).")
@click.option("--status", "status", is_flag=True, help="Follow pending transfers and claims and show each resource's hand-off.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def handoff(session: str, github_user: str | None, github_org: str | None, invite: str | None, neon_claim: bool,
            neon_org: str | None, revoke_email: bool, status: bool, yes: bool, as_json: bool) -> None:
    """Give a session's repo and database to the app's creator (see README: Hand-off).

    SESSION is a session key or slug. Without a terminal it needs --yes.
    """
    from mk0r_tui.engine.handoff import HandoffReport, HandoffRequest, follow_handoff, plan_handoff, run_handoff

    runtime = _runtime()
    row = runtime.ledger.require_session(session)

    def show(report: HandoffReport) -> None:
        if as_json:
            _emit(report.to_json())
            return
        for item in report.items:
            owner = f" → {item.new_owner}" if item.new_owner else ""
            click.echo(f"  {item.outcome:13} {item.provider:12} {item.kind:10} {item.name}{owner}")
            if item.claim_url:
                click.echo(f"                claim link: {item.claim_url}" + (f" (expires {item.expires})" if item.expires else ""))
            if item.error:
                click.echo(f"                {item.error}")
            elif item.note:
                click.echo(f"                {item.note}")
        click.echo(f"session {row.slug}: {report.state}", err=True)

    async def close_after(work: Awaitable[T]) -> T:
        try:
            return await work
        finally:
            await runtime.aclose()

    if status:
        report = asyncio.run(close_after(follow_handoff(runtime, row.key)))
        if not report.items and not as_json:
            click.echo(f"no hand-off recorded for session {row.key}", err=True)
        show(report)
        sys.exit(0 if report.ok else 1)
    request = HandoffRequest(github_user=github_user, github_org=github_org, invite=invite, neon_claim=neon_claim,
                             neon_org=neon_org, revoke_email=revoke_email)
    steps = plan_handoff(runtime, row.key, request)
    if not yes:
        if not sys.stdin.isatty():
            raise UsageError("refusing to hand off without --yes: there is no terminal to confirm on")
        click.echo(f"Hand-off of session {row.key}:", err=True)
        for step in steps:
            click.echo(f"  {'changes hands' if step.changes_hands else step.action:13} {step.what}", err=True)
        typed = click.prompt(f"Type the slug ({row.slug}) to confirm", default="", show_default=False, err=True)
        if typed.strip() != row.slug:
            click.echo("not confirmed: nothing changed hands", err=True)
            sys.exit(1)
    report = asyncio.run(close_after(run_handoff(runtime, row.key, request, steps)))
    show(report)
    sys.exit(0 if report.ok else 1)


def main() -> None:
    cli(prog_name="mk0r-tui")


__all__ = ["cli", "main", "ConfigError"]


# -- team mode (issue 12): the ledger's own commands ----------------------------------------------


@cli.group("ledger")
def ledger_group() -> None:
    """The ledger itself: where it is, its schema, team mode (MK0R_LEDGER_URL)."""


def _ledger_target(location: str | None, *, migrate: bool | None = None) -> Any:
    """A ledger named on the command line (a postgresql:// URL or a SQLite file), else the configured one."""
    from pathlib import Path

    from mk0r_tui.core.config import load_settings
    from mk0r_tui.core.ledger import Ledger, is_postgres_url, open_ledger

    if location is None:
        return open_ledger(load_settings(), migrate=migrate)
    if not is_postgres_url(location) and "://" in location:
        raise UsageError(f"{location.split('://', 1)[0]}:// is not a ledger: give a postgresql:// URL or a SQLite file path")
    return Ledger(location if is_postgres_url(location) else Path(location).expanduser(), migrate=migrate)


@ledger_group.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def ledger_status(as_json: bool) -> None:
    """Which ledger this process uses (the URL's password masked), its schema version, its size."""
    from mk0r_tui.core.config import load_settings
    from mk0r_tui.core.ledger import SCHEMA_VERSION
    from mk0r_tui.core.ledger.copy import counts

    settings = load_settings()
    with _ledger_target(None) as ledger:
        data = {
            "backend": ledger.backend,
            "ledger": ledger.where,
            "schema_version": ledger.schema_version,
            "code_schema_version": SCHEMA_VERSION,
            "ledger_id": ledger.ledger_id,
            "rows": counts(ledger),
            "journal_max_id": ledger.journal_max_id(),
            "live_leases": len(ledger.live_leases(settings.lease_stale_s)),
        }
    if as_json:
        _emit(data)
        return
    click.echo(f"backend   {data['backend']}\nledger    {data['ledger']}\nschema    {data['schema_version']} (this mk0r-tui: {SCHEMA_VERSION})")
    click.echo(f"rows      {', '.join(f'{n} {t}' for t, n in data['rows'].items())}\nruns now  {data['live_leases']}")


@ledger_group.command("migrate")
@click.option("--ledger", "location", metavar="URL|PATH", help="This ledger instead of the configured one.")
def ledger_migrate(location: str | None) -> None:
    """Migrate the ledger's schema forward to this mk0r-tui's version (explicit on Postgres:
    every process sharing it must then run this version or newer)."""
    from mk0r_tui.core.ledger import SCHEMA_VERSION

    with _ledger_target(location, migrate=True) as ledger:
        before, where = ledger.opened_version, ledger.where
    if before == SCHEMA_VERSION:
        click.echo(f"ledger {where}: schema {SCHEMA_VERSION}, up to date (nothing to do)")
    else:
        click.echo(f"ledger {where}: migrated schema {before} → {SCHEMA_VERSION}")


@ledger_group.command("copy")
@click.option("--from", "source", required=True, metavar="URL|PATH", help="The ledger to read (a postgresql:// URL or a SQLite file).")
@click.option("--to", "destination", required=True, metavar="URL|PATH", help="The ledger to write (created when missing; must be empty).")
@click.option("--replace", is_flag=True, help="Delete the destination's rows first (it is not empty).")
@click.option("--json", "as_json", is_flag=True, help="Print the row counts as JSON.")
def ledger_copy(source: str, destination: str, replace: bool, as_json: bool) -> None:
    """Copy every row (sessions, resources, runs, journal, leases, the ledger's id) from one
    ledger to another, SQLite ↔ Postgres, in one transaction; the counts are checked."""
    from pathlib import Path

    from mk0r_tui.core.config import load_settings
    from mk0r_tui.core.ledger.copy import copy_ledger

    if source != destination and "://" not in source and not Path(source).expanduser().exists():
        raise UsageError(f"no ledger at {source}")
    with _ledger_target(source) as src, _ledger_target(destination) as dst:
        report = copy_ledger(src, dst, replace=replace, stale_s=load_settings().lease_stale_s)
    if as_json:
        _emit({"source": report.source, "destination": report.destination, "rows": report.rows})
    else:
        click.echo(report.describe())


@ledger_group.command("serve-local")
@click.option("--listen", metavar="ADDR", help="Also listen on this address (default: 127.0.0.1 only); the role then needs its generated password (scram).")
@click.option("--port", type=click.IntRange(1, 65535), help="Port (default: the one it had, else a free one).")
@click.option("--dir", "folder", type=click.Path(file_okay=False), help="The server's folder (default: <postgres dir>/team-ledger).")
@click.option("--stop", is_flag=True, help="Stop the team ledger server.")
def ledger_serve_local(listen: str | None, port: int | None, folder: str | None, stop: bool) -> None:
    """Run the embedded Postgres as a team ledger and print the MK0R_LEDGER_URL to give every
    process and machine (it keeps running; --stop ends it)."""
    from pathlib import Path

    from mk0r_tui.core.config import load_settings
    from mk0r_tui.engine.team import serve_local, stop_local

    settings = load_settings()
    root = Path(folder).expanduser().absolute() if folder else settings.postgres_dir / "team-ledger"
    if stop:
        click.echo("stopped" if stop_local(root) else "was not running", err=True)
        return
    server = serve_local(root, listen=listen, port=port)
    click.echo(f"team ledger on {server.listen} port {server.port} ({server.masked})", err=True)
    click.echo("give every process and machine this (it holds the password: share it like one):", err=True)
    click.echo(f"MK0R_LEDGER_URL={server.url}")
