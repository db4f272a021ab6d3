"""The headless CLI: a thin layer over the core. Data on stdout, diagnostics on stderr.

Exit codes: 0 every configured provider ok, 1 some failed, 2 bad usage or configuration,
130 interrupted. Importing this module must not import Textual (the dashboard is imported
only when `mk0r-tui` runs with no command).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from mk0r_tui import __version__
from mk0r_tui.core.errors import ConfigError, Mk0rError, UsageError

if TYPE_CHECKING:
    import asyncio  # imported where a command runs a loop: `--version`, `sessions` need none

    from mk0r_tui.core.config import Settings
    from mk0r_tui.core.credentials import Credentials
    from mk0r_tui.core.events import Event, EventSink
    from mk0r_tui.core.ledger import JournalRow
    from mk0r_tui.core.models import ProvisionReport
    from mk0r_tui.engine.runtime import Runtime
    from mk0r_tui.engine.teardown import OrphanScan, TeardownOutcome, TeardownReport

T = TypeVar("T")


_SENTENCE_END = re.compile(r"(?<!e\.g)(?<!i\.e)(?<!etc)\.(?=\s|$)")


def first_sentence(help_text: str) -> str:
    """The first sentence of a help text's first paragraph, whole: click's own short help cuts
    it at a width (`Store NAME (e.g.`, `...`); the listing wraps a long one instead."""
    import inspect  # here: only a help screen needs it (~6 ms of every command's start otherwise)

    paragraph = inspect.cleandoc(help_text).split("\n\n", 1)[0].replace("\b\n", "")
    paragraph = " ".join(paragraph.split())
    match = _SENTENCE_END.search(paragraph)
    return paragraph[: match.end()] if match else paragraph


JQ_META = "mk0r.jq"


def _remember_jq(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value is not None:
        ctx.meta[JQ_META] = value


def jq_option() -> click.Option:
    return click.Option(["--jq"], metavar="EXPR", expose_value=False, callback=_remember_jq,
                        help="Filter the --json output with a jq expression (as gh does); strings print raw.")


class Mk0rCommand(click.Command):
    """A command whose listed short help is its first sentence, never cut mid-sentence, and
    that takes `--jq EXPR` whenever it takes `--json`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if any(p.name == "as_json" for p in self.params):
            self.params.append(jq_option())

    def invoke(self, ctx: click.Context) -> Any:
        if ctx.meta.get(JQ_META) is not None and not ctx.params.get("as_json"):
            raise UsageError("--jq filters JSON: add --json")
        if ctx.meta.get(JQ_META) is not None:
            ctx.meta[JQ_META + ".program"] = compile_jq(ctx.meta[JQ_META])  # a bad expression: exit 2 before any work
        return super().invoke(ctx)

    def get_short_help_str(self, limit: int = 45) -> str:
        if self.short_help or not self.help:
            return super().get_short_help_str(limit)
        return first_sentence(self.help)


def compile_jq(expr: str) -> Any:
    """The `jq` package's compiled program, or a UsageError naming what is wrong."""
    import jq

    try:
        return jq.compile(expr)
    except ValueError as exc:
        raise UsageError(f"bad --jq expression {expr!r}: {_one_line(exc)}") from None


def _jq_lines(data: Any) -> list[str] | None:
    """With --jq: each output of the expression on `data`, a string raw and anything else as
    JSON (as gh does). None without --jq."""
    ctx = click.get_current_context(silent=True)
    program = ctx.meta.get(JQ_META + ".program") if ctx is not None else None
    if program is None:
        return None
    try:
        outputs = program.input_value(json.loads(json.dumps(data, default=str))).all()
    except ValueError as exc:
        raise UsageError(f"--jq {ctx.meta[JQ_META]!r}: {_one_line(exc)}") from None  # type: ignore[union-attr]
    return [value if isinstance(value, str) else json.dumps(value) for value in outputs]


def complete_sessions(incomplete: str) -> list[Any]:
    """Shell completion of a SESSION: the ledger's keys and slugs starting with what is typed.
    Reads the ledger if there is one; never creates anything, never fails (no completions)."""
    from click.shell_completion import CompletionItem

    try:
        from mk0r_tui.core.config import load_settings
        from mk0r_tui.core.ledger import open_ledger

        settings = load_settings()
        if not settings.ledger_url and not settings.ledger_path.is_file():
            return []  # no ledger yet: completing must not create one
        with open_ledger(settings) as ledger:  # the team ledger too (MK0R_LEDGER_URL)
            rows = ledger.list_sessions()
    except Exception:
        return []
    items: list[Any] = []
    for row in rows:
        for value, other in ((row.slug, row.key), (row.key, row.slug)):
            if value.startswith(incomplete) and (value == row.slug or row.key != row.slug):
                items.append(CompletionItem(value, help=f"{other} ({row.state})"))
    return items


def _complete_session_param(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
    return complete_sessions(incomplete)


class Mk0rGroup(click.Group):
    """Turns every Mk0rError into one clear line on stderr and its exit code: no tracebacks.
    Its commands and subgroups are Mk0rCommand / Mk0rGroup (short help never cut)."""

    command_class = Mk0rCommand
    group_class = type  # subgroups are Mk0rGroup too

    def get_short_help_str(self, limit: int = 45) -> str:
        if self.short_help or not self.help:
            return super().get_short_help_str(limit)
        return first_sentence(self.help)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except Mk0rError as exc:
            click.echo(f"error: {_one_line(exc)}", err=True)
            _log_failure(ctx, _one_line(exc), exc.exit_code)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)
        except click.exceptions.Abort as exc:
            # Ctrl+C at a prompt: click turns it into Abort ("Aborted!", exit 1); interrupted is 130
            if isinstance(exc.__context__, KeyboardInterrupt):
                click.echo("\ninterrupted: nothing was changed", err=True)
                ctx.exit(130)
            raise
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
            _log_failure(ctx, _one_line(first), first.exit_code if isinstance(first, Mk0rError) else 1)
            ctx.exit(first.exit_code if isinstance(first, Mk0rError) else 1)


def _log_failure(ctx: click.Context, message: str, code: int) -> None:
    """The error also goes to the log file (scrubbed there), when the command got that far."""
    import logging

    if not logging.getLogger("mk0r_tui").handlers:
        return  # failed before the log was opened (logging's last resort would print it on stderr again)
    logging.getLogger("mk0r_tui.cli").error("%s failed (exit %d): %s", ctx.invoked_subcommand or "mk0r-tui", code, message)


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


#: in the data dir: the keyring note last shown, so it is said once (again only if it changes)
KEYRING_NOTE_MARKER = ".keyring-note-shown"


def _warn_keyring(runtime: Runtime) -> None:
    """The no-keyring note, once per data dir: printed the first time, and again only when what
    it says changes (`keys list` and `doctor` always show the keyring's state). Never with
    MK0R_NO_KEYRING=1: the operator chose it."""
    credentials = runtime.credentials
    message = credentials.keyring_message
    if not message or credentials.keyring_disabled:
        return
    marker = runtime.settings.data_dir / KEYRING_NOTE_MARKER
    try:
        if marker.read_text(encoding="utf-8") == message:
            return
    except (OSError, UnicodeDecodeError):
        pass
    click.echo(f"note: {message} (said once: `mk0r-tui keys list` shows it again)", err=True)
    try:
        fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(message)
    except OSError:
        pass  # an unwritable marker only means the note is said again


def _emit(data: Any) -> None:
    lines = _jq_lines(data)
    if lines is not None:
        for line in lines:
            click.echo(line)
        return
    click.echo(json.dumps(data, indent=2, sort_keys=False, default=str))


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(ts, tz=dt.UTC).isoformat(timespec="seconds")


def parse_duration(text: str) -> float:
    """'90', '90s', '15m', '1h', '2d', '2w' → seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text or "")
    if not match:
        raise UsageError(f"bad duration {text!r}: use e.g. 30s, 15m, 1h, 2d or 2w")
    return float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}[match.group(2)]


def run_interruptible(
    make: Callable[[asyncio.Event], Awaitable[T]], *, on_first: str, on_second: Callable[[], str]
) -> tuple[T, bool]:
    """Run a coroutine; the first Ctrl+C sets the stop event (in-flight work finishes and is
    recorded), the second exits at once with `on_second()` said on stderr. Returns the result and
    whether it was interrupted: the caller prints what was done, then exits 130."""
    import asyncio

    hits = {"n": 0}

    async def main() -> T:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def interrupted() -> None:
            hits["n"] += 1
            if hits["n"] == 1:
                stop.set()
                click.echo(on_first, err=True)
            else:
                click.echo(on_second(), err=True)
                sys.stderr.flush()
                os._exit(130)

        try:
            loop.add_signal_handler(signal.SIGINT, interrupted)
        except (NotImplementedError, RuntimeError):
            pass
        return await make(stop)

    result = asyncio.run(main())
    return result, hits["n"] > 0


def _exit_code(ok: bool, interrupted: bool) -> int:
    """0 ok, 1 something failed, 130 interrupted (whatever was finished meanwhile)."""
    return 130 if interrupted else (0 if ok else 1)


@click.group(cls=Mk0rGroup, invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--read-only", is_flag=True, help="Dashboard only: no provisioning or teardown, no reveal or copy of a secret.")
@click.option("--verbose", "-v", is_flag=True, help="Log DEBUG lines too (HTTP calls, progress) and show the log's lines on stderr.")
@click.version_option(__version__, "-V", "--version", package_name="mk0r-tui")  # no metadata look-up (15-20 ms) per --version
@click.pass_context
def cli(ctx: click.Context, read_only: bool, verbose: bool) -> None:
    """Provision a real backend for every app session, and watch it happen.

    With no command, opens the dashboard. Every command writes the log file
    (<data dir>/mk0r-tui.log: each run's events and errors, secrets masked).
    """
    if verbose:
        from mk0r_tui.core.logs import set_verbose

        set_verbose(True)
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


@cli.command("completion")
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the shell completion script for bash, zsh or fish.

    It completes commands, options, and the ledger's session keys and slugs. Load it from your
    shell's start-up file: bash `eval "$(mk0r-tui completion bash)"` in ~/.bashrc, zsh
    `eval "$(mk0r-tui completion zsh)"` in ~/.zshrc, fish `mk0r-tui completion fish >
    ~/.config/fish/completions/mk0r-tui.fish`.
    """
    from click.shell_completion import get_completion_class

    completer = get_completion_class(shell)
    assert completer is not None  # the Choice above lists only shells click supports
    click.echo(completer(cli, {}, "mk0r-tui", "_MK0R_TUI_COMPLETE").source())


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
@click.option("--session", "session_key", metavar="KEY", shell_complete=_complete_session_param, help="Session key (default: a new UUID); printable characters only, e.g. --session=-key for one starting with '-'.")
@click.option("--target", type=click.Choice(["auto", "local", "e2b"]), default=None, help="Where the .env goes (default: MK0R_TARGET or auto).")
@click.option("--sandbox", "sandbox_id", metavar="ID", help="e2b target: connect to this sandbox instead of creating one.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
@click.option("--reveal", is_flag=True, help="Show secret values unmasked in the output.")
def provision(session_key: str | None, target: str | None, sandbox_id: str | None, as_json: bool, reveal: bool) -> None:
    """Provision every service for a session, in parallel, and write its .env."""
    import gc

    # What the start-up makes (modules, classes, the settings, the ledger) lives until the process
    # exits: no collection runs while it is made, and none walks it afterwards (`gc.freeze`
    # before the run); the run's own garbage is collected as ever. The collections during the
    # imports (~57 per run, pauses of 1-2 ms) were 7% of a pool-served provision's instructions
    # (cachegrind: 669M -> 621M; bench/pool.py part 2). Only when the command is the process.
    whole_process = WHOLE_PROCESS["on"]
    if whole_process:
        gc.disable()
    from mk0r_tui.core.envfile import masked_env
    from mk0r_tui.core.models import Session
    from mk0r_tui.engine.library import plan_run, provision_report_json

    session = Session.parse(session_key) if session_key is not None else Session.new()
    runtime = _runtime()
    plan = plan_run(runtime, target, sandbox_id)  # once per run: what is printed is what runs
    from mk0r_tui.engine.orchestrator import provision_services  # while a cloud plan's TLS context builds
    _warn_keyring(runtime)  # after the key look-ups above: only then is a missing keyring known
    show_progress = sys.stderr.isatty() or not as_json
    if show_progress:
        click.echo(f"provisioning session {session.key} (mk0r-{session.slug}) → {plan.target.name}", err=True)

    if whole_process:
        gc.freeze()
        gc.enable()

    async def run(stop: asyncio.Event) -> ProvisionReport:
        try:
            return await provision_services(runtime, session, plan, sink=_progress_sink(show_progress))
        finally:
            await runtime.aclose()

    try:
        report, interrupted = run_interruptible(
            run,
            on_first="interrupt: letting in-flight creates finish and recording them (Ctrl+C again to exit now)",
            on_second=lambda: f"exiting: resources of mk0r-{session.slug} may be left; run `mk0r-tui orphans`",
        )
    except BaseException:
        runtime.close()  # e.g. a busy session: closed all the same (see below)
        raise
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
    # closed here, not by the collector at exit: the start-up's objects (the runtime among them)
    # were frozen out of its reach above, and the ledger's close is its WAL checkpoint
    runtime.close()
    sys.exit(_exit_code(report.ok, interrupted))


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


def human_age(seconds: float) -> str:
    """`45s`, `12m`, `3h`, `5d`, `2w`: the largest unit, whole."""
    for unit, size in (("w", 7 * 86400), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{max(int(seconds), 0)}s"


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list on stdout.")
@click.option("--prune", "prune_deleted", is_flag=True,
              help="First forget every torn-down (deleted) session: its ledger rows and journal.")
def sessions(as_json: bool, prune_deleted: bool) -> None:
    """List every session in the ledger, newest first.

    Columns: slug, state, target, age, and each provider's last status. --prune first removes
    the rows of sessions whose teardown finished (`mk0r-tui prune` does it by age).
    """
    import time

    runtime = _runtime()
    if prune_deleted:
        gone = runtime.ledger.prune_deleted_sessions(time.time() + 1)
        click.echo(f"pruned {len(gone)} deleted session(s)", err=True)
    data = sessions_json(runtime)
    if as_json:
        _emit(data)
        return
    if not data:
        click.echo("no sessions yet: run `mk0r-tui provision`", err=True)
        return
    rows = [
        (item["slug"], item["state"], item["target"] or "-", human_age(item["age_s"]),
         " ".join(f"{n}:{s}" for n, s in item["providers"].items()) or "-")
        for item in data
    ]
    header = ("SLUG", "STATE", "TARGET", "AGE", "PROVIDERS")
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(4)]
    for row in (header, *rows):
        click.echo("  ".join(cell.ljust(widths[i]) if i < 3 else cell.rjust(widths[i]) if i == 3 else cell
                             for i, cell in enumerate(row)).rstrip())


@cli.command()
@click.argument("session", shell_complete=_complete_session_param)
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
@click.argument("sessions", nargs=-1, required=True, metavar="SESSION...", shell_complete=_complete_session_param)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--json", "as_json", is_flag=True,
              help="Print each resource's outcome as JSON (one object; a list of them for several sessions).")
def teardown(sessions: tuple[str, ...], yes: bool, as_json: bool) -> None:
    """Delete every resource of one or more sessions (idempotent: a second run does nothing).

    Each SESSION is a session key or slug; one starting with '-' goes after '--':
    `mk0r-tui teardown --yes -- -my-session-key`. Several sessions are torn down concurrently,
    each under its own lease. Exit 0 when everything is gone, 1 when something failed, 130 when
    interrupted.
    """
    from mk0r_tui.core.ledger import SessionRow
    from mk0r_tui.engine.library import teardown_report_json
    from mk0r_tui.engine.teardown import teardown_session

    runtime = _runtime()
    rows: list[SessionRow] = []
    for name in sessions:  # every one is checked before anything is deleted
        row = runtime.ledger.require_session(name)
        if row.key not in {r.key for r in rows}:
            rows.append(row)
    live = {row.key: [r for r in runtime.ledger.resources(row.key, live_only=True) if not r.handed_off] for row in rows}
    if not yes:
        if not sys.stdin.isatty():
            raise UsageError("refusing to tear down without --yes: there is no terminal to confirm on")
        for row in rows:
            click.echo(f"This deletes {len(live[row.key])} resource(s) of session {row.key}:", err=True)
            for r in live[row.key]:
                click.echo(f"  {r.provider:15} {r.kind:12} {r.name}  {r.remote_id or '(id unknown)'}", err=True)
        if len(rows) == 1:
            expected, what = rows[0].slug, f"the slug ({rows[0].slug})"
        else:
            expected, what = str(len(rows)), f"the number of sessions ({len(rows)})"
        typed = click.prompt(f"Type {what} to confirm", default="", show_default=False, err=True)
        if typed.strip() != expected:
            click.echo("not confirmed: nothing deleted", err=True)
            sys.exit(1)
    show_progress = sys.stderr.isatty() or not as_json

    import asyncio

    async def run(stop: asyncio.Event) -> list[TeardownReport | BaseException]:
        try:
            # all settled: one session failing to start (busy, say) never cuts another's deletes short
            return list(await asyncio.gather(*(
                teardown_session(runtime, row.key, sink=_progress_sink(show_progress), stop=stop) for row in rows
            ), return_exceptions=True))
        finally:
            await runtime.aclose()

    def left() -> str:
        remaining = [r for row in rows for r in runtime.ledger.resources(row.key, live_only=True)]
        names = ", ".join(f"{r.provider}:{r.name}" for r in remaining) or "none"
        return f"exiting now; may be left: {names}. Run `mk0r-tui orphans` to find them."

    settled, interrupted = run_interruptible(run, on_first="interrupt: finishing in-flight deletes (Ctrl+C again to exit now)", on_second=left)
    errors = [(row, r) for row, r in zip(rows, settled, strict=True) if isinstance(r, BaseException)]
    for _row, error in errors:
        if not isinstance(error, (Mk0rError, BaseExceptionGroup)):
            raise error
    if len(rows) == 1 and errors:
        raise errors[0][1]  # one session: its error is the command's (Mk0rGroup says it)
    reports = [r for r in settled if not isinstance(r, BaseException)]
    if as_json:
        shapes = [teardown_report_json(report) for report in reports]
        _emit(shapes[0] if len(sessions) == 1 else shapes)
    else:
        for report in reports:
            if len(rows) > 1:
                click.echo(f"session {report.session}")
            for o in report.outcomes:
                click.echo(f"  {o.outcome:13} {o.resource.provider:15} {o.resource.kind:12} {o.resource.name}" + (f"  {o.error}" if o.error else ""))
            if not report.outcomes:
                click.echo(f"nothing to delete{f' for {report.session}' if len(rows) > 1 else ''}", err=True)
    for row, error in errors:
        leaf = _leaf(error) if isinstance(error, BaseExceptionGroup) else error
        click.echo(f"error: session {row.key}: {_one_line(leaf)}", err=True)
    worst = max((e.exit_code if isinstance(e, Mk0rError) else 1 for _r, e in errors), default=0)
    code = _exit_code(all(report.ok for report in reports), interrupted)
    sys.exit(code if code == 130 else max(code, worst))


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
@click.option("--session", "session", metavar="S", shell_complete=_complete_session_param, help="Only this session (key or slug).")
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
            if not as_json:
                click.echo(_journal_line(row))
                continue
            lines = _jq_lines(journal_json(row))  # NDJSON: the expression runs on each object
            for line in lines if lines is not None else [json.dumps(journal_json(row), default=str)]:
                click.echo(line)

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
@click.option("--older-than", "older_than", default="30d", show_default=True, metavar="AGE",
              help="What was deleted longer ago than this (30s, 15m, 1h, 2d, 2w; 0 = all).")
def prune(older_than: str) -> None:
    """Forget torn-down sessions and old journal rows (a live session is never touched).

    Removes the ledger rows (session, resources, runs, journal) of sessions whose teardown
    finished longer ago than --older-than, and the journal rows older than that of any deleted
    session.
    """
    import time

    threshold = parse_duration(older_than)
    runtime = _runtime()
    try:
        cutoff = time.time() - threshold + (1 if threshold == 0 else 0)
        forgotten = runtime.ledger.prune_deleted_sessions(cutoff)
        removed = runtime.ledger.prune_journal(cutoff)
    finally:
        runtime.close()
    click.echo(f"pruned {removed} journal row(s) of deleted sessions and {len(forgotten)} deleted session(s), "
               f"older than {older_than}", err=True)


# -- orphans -----------------------------------------------------------------------------


@cli.command()
@click.option("--older-than", "older_than", default=None, metavar="AGE",
              help="Only resources older than this (30s, 15m, 1h, 2d, 2w). Default: 1h for what no ledger row records "
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
    from mk0r_tui.engine.teardown import delete_orphans, find_orphans

    if yes and not delete:
        raise UsageError("--yes confirms a delete, and there is none: add --delete to delete what is found, or drop --yes")
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

    import asyncio

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

    deleted, interrupted = run_interruptible(run, on_first="interrupt: finishing in-flight deletes", on_second=lambda: "exiting now; run `mk0r-tui orphans` again")
    if as_json:
        _emit([d.to_json() for d in deleted])
    else:
        for d in deleted:
            click.echo(f"  {d.outcome:13} {d.resource.provider:15} {d.resource.kind:12} {d.resource.name}" + (f"  {d.error}" if d.error else ""))
    for d in deleted:
        if d.outcome == "skipped":  # re-checked just before its delete: its session is live again, or adopted
            click.echo(f"{d.resource.provider} {d.resource.kind} {d.resource.name}: {d.error}", err=True)
    ok = all(d.outcome in ("deleted", "already_gone", "skipped") for d in deleted) and not result.warnings
    sys.exit(_exit_code(ok, interrupted))


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


@local_postgres.command("start")
def local_postgres_start() -> None:
    """Start the embedded server (initialised on first use) and check that it answers."""
    import psycopg

    from mk0r_tui.providers.embedded_pg import EmbeddedPostgres

    runtime = _runtime()
    if runtime.settings.local_postgres_url:
        raise UsageError("MK0R_LOCAL_POSTGRES_URL is set: the local profile uses that server, not the embedded one")
    server = EmbeddedPostgres(runtime.settings.postgres_dir)
    was = server.running_port()
    admin = server.ensure_running()
    try:
        with psycopg.connect(admin.dsn(), autocommit=True) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"the embedded server on 127.0.0.1:{admin.port} does not answer: {first}") from None
    click.echo(f"{'already running' if was else 'started'} on 127.0.0.1:{admin.port}")


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
    known = (*KEY_NAMES, "MK0R_SERVICE_TOKEN")  # the service's bearer token (issue 13) is kept there too
    if upper not in known:
        raise UsageError(f"unknown key {name!r}; known keys: {', '.join(known)}")
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
@click.option("--stdin", "from_stdin", is_flag=True,
              help="Read the value from standard input instead of a hidden prompt (the default without a terminal).")
def keys_set(name: str, from_stdin: bool) -> None:
    """Store NAME (e.g. NEON_PROVISIONING_KEY) in the OS keyring."""
    import os

    from mk0r_tui.core.envfile import mask_value

    key = _known_key(name)
    _, credentials = _settings_and_credentials()
    _keyring_call(credentials.check_keyring)  # before asking for a secret that could not be stored
    if from_stdin or not sys.stdin.isatty():
        # no terminal: a hidden prompt would warn (GetPassWarning) and echo; read the line as --stdin does
        value = sys.stdin.readline().strip()
    else:
        value = click.prompt(key, hide_input=True, err=True, default="", show_default=False).strip()
    if not value:
        raise UsageError(f"no value given for {key}: nothing stored")
    _keyring_call(lambda: credentials.set(key, value))
    click.echo(f"stored {key} in the OS keyring ({mask_value(key, value)}, {len(value)} chars)", err=True)
    if os.environ.get(key):
        click.echo(f"note: {key} is also set in the environment, which overrides the keyring", err=True)


@keys.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list on stdout.")
def keys_list(as_json: bool) -> None:
    """Every provisioning key: masked value, length and where it comes from (env or keyring)."""
    from mk0r_tui.core.envfile import mask_value

    _, credentials = _settings_and_credentials()
    found = credentials.all()
    message = credentials.keyring_message
    if message and not credentials.keyring_disabled:
        click.echo(f"note: {message}", err=True)
    rows = [
        {"name": c.name, "present": c.present, "source": c.source, "value": mask_value(c.name, c.value) if c.value else None,
         "length": len(c.value) if c.value else None}  # a truncated paste shows here; the value never does
        for c in found
    ]
    if as_json:
        _emit(rows)
        return
    for row in rows:
        shown = f"{row['value']} ({row['length']} chars)" if row["value"] else "(not set)"
        click.echo(f"{row['name']:28} {row['source'] or '-':8} {shown}")


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
    """Check every provider's key and the local profile a provision would use.

    For each key: present, where from, does it authenticate, what it would use. For the local
    profile: the data dir is writable, `git` runs, the Postgres server answers (the embedded one
    is started if it is stopped, as a provision would). Exit 0 when nothing is failing (a missing
    key is not a failure: its slot is skipped or local), 1 when a key is present but does not
    work or lacks a scope, or a part of the local profile is broken.
    """
    from mk0r_tui.engine.doctor import run_doctor
    from mk0r_tui.providers import DEFAULT_REGISTRY

    settings, credentials = _settings_and_credentials()
    import asyncio

    report = asyncio.run(run_doctor(settings, credentials, DEFAULT_REGISTRY, local=True))
    if as_json:
        _emit(report.to_json())
    else:
        if report.keyring_message and not credentials.keyring_disabled:
            click.echo(f"note: {report.keyring_message}", err=True)
        for check in report.checks:
            source = f"({check.key_source})" if check.key_source else ""
            click.echo(f"{check.status:9} {check.provider:13} {check.key_name} {source}".rstrip())
            click.echo(f"          {check.detail}")
            for problem in check.problems:
                click.echo(f"          problem: {problem}")
            if check.settings:
                click.echo("          " + "  ".join(f"{k}={v}" for k, v in check.settings.items()))
        for part in report.local:
            click.echo(f"{part.status:9} {part.part:13} local profile")
            click.echo(f"          {part.detail}")
    sys.exit(0 if report.ok else 1)


# -- the local mail catcher ------------------------------------------------------------------


@cli.command()
@click.argument("session", shell_complete=_complete_session_param)
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
@click.argument("session", shell_complete=_complete_session_param)
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
    import asyncio

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


# -- the warm pool (issue 14; engine/pool.py) ------------------------------------------------


@cli.group("pool")
def pool_group() -> None:
    """The warm pool: resources made ahead of time, claimed by a provision in milliseconds."""


def _pool_sink(enabled: bool) -> EventSink:
    from mk0r_tui.core.events import ProviderProgressed

    def sink(event: Any) -> None:
        if enabled and isinstance(event, ProviderProgressed):
            click.echo(f"{event.provider}: {event.message}", err=True)

    return sink


def _pool_sizes(runtime: Runtime, size: int | None, only: tuple[str, ...]) -> dict[str, int]:
    from mk0r_tui.engine import pool

    names = pool.poolable(runtime)
    unknown = [n for n in only if n not in names]
    if unknown:
        raise UsageError(f"cannot pool {', '.join(unknown)}: poolable now are {', '.join(names) or 'none'}")
    chosen = list(only) or names
    sizes = {n: size if size is not None else runtime.settings.pool_target(n) for n in chosen}
    sizes = {n: s for n, s in sizes.items() if s > 0}
    if not sizes:
        raise UsageError("the pool is off: set MK0R_POOL_SIZE (or MK0R_POOL_SIZE_<PROVIDER>) or give --size N")
    return sizes


@pool_group.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def pool_status(as_json: bool) -> None:
    """Level of each provider's pool against its target, and claims still being finished."""
    from mk0r_tui.engine import pool_upkeep

    runtime = _runtime()
    data = pool_upkeep.status(runtime)
    if as_json:
        _emit(data)
        return
    if not data["providers"]:
        click.echo("no pool: MK0R_POOL_SIZE is 0 and no item is left", err=True)
    for name, p in data["providers"].items():
        age = "-" if p["oldest_age_s"] is None else f"{p['oldest_age_s']:.0f}s"
        extra = "".join(f"  {k} {p[k]}" for k in ("abandoned", "failed") if p[k])
        click.echo(f"  {name:15} ready {p['ready']}/{p['target']}  filling {p['filling']}  claimed {p['claimed_total']}"
                   f"  oldest {age}{extra}")
    for c in data["unfinished_claims"]:
        click.echo(f"  renames of {c['item']} ({c['provider']}) for session {c['session']}: {c['finish']}"
                   + (f" after {c['attempts']} attempt(s): {c['error']}" if c["error"] else ""))
    if data["claim_ms"]["n"]:
        click.echo(f"  claim latency p50 {data['claim_ms']['p50']:.1f} ms, p95 {data['claim_ms']['p95']:.1f} ms "
                   f"({data['claim_ms']['n']} claims)")


@pool_group.command("fill")
@click.option("--size", type=click.IntRange(0, 1000), default=None, help="Ready items per provider (default: MK0R_POOL_SIZE).")
@click.option("--provider", "only", multiple=True, metavar="NAME", help="Only this provider (repeatable).")
@click.option("--wait", is_flag=True, help="Fill in the foreground until every pool is at its level.")
def pool_fill(size: int | None, only: tuple[str, ...], wait: bool) -> None:
    """Top the pools up; without --wait in a detached process (see `pool status`)."""

    import subprocess

    from mk0r_tui.engine import pool_upkeep

    runtime = _runtime()
    sizes = _pool_sizes(runtime, size, only)
    if not wait:
        args = [sys.executable, "-m", "mk0r_tui", "pool", "fill", "--wait"]
        args += ["--size", str(size)] if size is not None else []
        for name in only:
            args += ["--provider", name]
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True, env=dict(os.environ))
        click.echo(f"filling {', '.join(f'{n} to {s}' for n, s in sizes.items())} in process {proc.pid}; "
                   "see `mk0r-tui pool status`", err=True)
        return

    async def run(stop: asyncio.Event) -> dict[str, int]:
        try:
            return await pool_upkeep.fill(runtime, sizes, sink=_pool_sink(True))
        finally:
            await runtime.aclose()

    made, interrupted = run_interruptible(
        run, on_first="interrupt: letting in-flight creates finish (Ctrl+C again to exit now)",
        on_second=lambda: "exiting: an unfinished item is left; `mk0r-tui pool drain` deletes it",
    )
    click.echo("made " + ", ".join(f"{n} {c}" for n, c in made.items()), err=True)
    if interrupted:
        sys.exit(130)


@pool_group.command("keep")
@click.option("--interval", default="5s", show_default=True, help="How often to look when nothing wakes it.")
def pool_keep(interval: str) -> None:
    """Keep every pool at its level until Ctrl+C: refill behind claims, recycle stale items,
    finish (and repair) the renames of claims."""
    import asyncio
    import contextlib

    from mk0r_tui.engine import pool, pool_upkeep

    runtime = _runtime()
    if not any(runtime.settings.pool_target(n) > 0 for n in pool.poolable(runtime)):
        raise UsageError("the pool is off: set MK0R_POOL_SIZE (or MK0R_POOL_SIZE_<PROVIDER>)")
    keeper = pool_upkeep.PoolKeeper(runtime, sink=_pool_sink(True), interval_s=parse_duration(interval))

    async def run(stop: asyncio.Event) -> None:
        task = asyncio.create_task(keeper.run())
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGTERM, stop.set)
        try:
            await stop.wait()
        finally:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
            await runtime.aclose()

    click.echo("keeping the pool (Ctrl+C to stop)", err=True)
    run_interruptible(run, on_first="stopping the keeper", on_second=lambda: "exiting now")  # Ctrl+C is how it ends: exit 0


@pool_group.command("drain")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--provider", "only", multiple=True, metavar="NAME", help="Only this provider's pool (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print what was deleted as JSON.")
def pool_drain(yes: bool, only: tuple[str, ...], as_json: bool) -> None:
    """Delete every unclaimed item (ready, failed, or left by a fill that died)."""
    import asyncio

    from mk0r_tui.engine import pool_upkeep

    runtime = _runtime()
    found = pool_upkeep.drainable(runtime, providers=list(only) or None)
    if not found:
        if as_json:
            _emit({"drained": [], "left": []})
        else:
            click.echo("nothing to drain", err=True)
        return
    if not yes:
        if not sys.stdin.isatty():
            raise UsageError("refusing to drain the pool without --yes: there is no terminal to confirm on")
        if not click.confirm(f"Delete {len(found)} pooled item(s) and their resources?", default=False, err=True):
            click.echo("not confirmed: nothing deleted", err=True)
            sys.exit(1)

    async def run() -> list[str]:
        try:
            return await pool_upkeep.drain(runtime, providers=list(only) or None)
        finally:
            await runtime.aclose()

    drained = asyncio.run(run())
    left = [i.id for i in found if i.id not in drained]
    if as_json:
        _emit({"drained": drained, "left": left})
    else:
        click.echo(f"drained {len(drained)} item(s)" + (f"; {len(left)} left (see `mk0r-tui pool status`)" if left else ""), err=True)
    sys.exit(0 if not left else 1)


@pool_group.command("finish", hidden=True)
@click.option("--session", "session_key", metavar="KEY", default=None, help="Only this session's claims.")
@click.option("--json", "as_json", is_flag=True, help="Print each item's outcome as JSON.")
def pool_finish(session_key: str | None, as_json: bool) -> None:
    """The renames of claimed items (what `provision` starts after a claim; a keeper repeats it)."""
    import asyncio

    from mk0r_tui.engine import pool_upkeep

    runtime = _runtime()
    key = runtime.ledger.require_session(session_key).key if session_key else None

    async def run() -> list[pool_upkeep.FinishOutcome]:
        try:
            return await pool_upkeep.finish_claims(runtime, key)
        finally:
            await runtime.aclose()

    outcomes = asyncio.run(run())
    if as_json:
        _emit([o.to_json() for o in outcomes])
    sys.exit(0 if all(o.error is None for o in outcomes) else 1)


#: the command is this whole process (`main`: the console script, `python -m mk0r_tui`), not a call
#: from another program (click's test runner): `provision` may then tune the process's collector
WHOLE_PROCESS = {"on": False}


def main() -> None:
    WHOLE_PROCESS["on"] = True
    cli(prog_name="mk0r-tui")


__all__ = ["cli", "main", "ConfigError"]


# -- the provisioning service (issue 13): serve and worker ---------------------------------


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (not loopback: needs MK0R_SERVICE_TOKEN).")
@click.option("--port", default=8787, show_default=True, type=click.IntRange(0, 65535), help="Port (0: any free one).")
@click.option("--no-workers", is_flag=True, help="Serve the API only; jobs run in `mk0r-tui worker` processes.")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="Logs on stderr: text lines, or one JSON object per line (request id, session slug, provider).")
def serve(host: str, port: int, no_workers: bool, log_format: str) -> None:
    """Serve the provisioning API (for a generator's backend), running its jobs in this process.

    Every route but /healthz needs `Authorization: Bearer $MK0R_SERVICE_TOKEN` (or the keyring's
    MK0R_SERVICE_TOKEN); on loopback without one, a token is made up and printed. Several
    instances on one queue share the work (README: The provisioning service).
    """
    import asyncio

    from mk0r_tui.service.server import serve as run_serve

    asyncio.run(run_serve(host, port, workers=not no_workers, log_format=log_format,
                          say=lambda line: click.echo(line, err=True)))


@cli.command()
@click.option("--concurrency", type=click.IntRange(1, 1000), default=None, help="Jobs at once (default: MK0R_WORKER_CONCURRENCY).")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="Logs on stderr: text lines, or one JSON object per line.")
def worker(concurrency: int | None, log_format: str) -> None:
    """Run the service's provision and teardown jobs (no API), until Ctrl+C or SIGTERM."""
    import asyncio

    from mk0r_tui.service.server import work

    asyncio.run(work(log_format=log_format, concurrency=concurrency, say=lambda line: click.echo(line, err=True)))


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
