"""Start-up of the CLI paths that do no provisioning: `mk0r-tui --version` and `mk0r-tui sessions
--json` (a ledger of 20 sessions), each a whole process, beside `python -c pass` (the interpreter
alone) and a minimal click app (`click.group` with a version option and a command that prints a
JSON list: what any click CLI pays), alternated A B C D A B C D, with the load average.

Goals: `--version` <= 1.3 x the minimal click app; `sessions --json` <= the minimal click app + 150 ms
(it opens the settings and the ledger: its floor is above a bare click app's, so the figure that
can fail is the time it adds, not a ratio).
"""

from __future__ import annotations

import argparse
import sys

import _common as c

MINIMAL_CLICK = """
import json, click
@click.group()
@click.version_option("0.1.0", prog_name="minimal")
def cli():
    pass
@cli.command()
@click.option("--json", "as_json", is_flag=True)
def sessions(as_json):
    click.echo(json.dumps([]))
cli()
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    info = c.print_header("start-up: --version and sessions --json as whole processes", "startup.py")
    mk0r = [str(c.ROOT / ".venv" / "bin" / "mk0r-tui")] if (c.ROOT / ".venv" / "bin" / "mk0r-tui").exists() \
        else [sys.executable, "-m", "mk0r_tui"]
    with c.scratch_dir("mk0r-bench-startup-") as home:
        from mk0r_tui.core.config import Settings
        from mk0r_tui.core.ledger import Ledger

        settings = Settings(home=home, no_keyring=True)
        settings.ensure_data_dir()
        with Ledger(settings.ledger_path) as ledger:
            c.fill_ledger(ledger, 20)
        env = c.clean_env(MK0R_HOME=str(home), MK0R_NO_KEYRING="1")
        commands = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "minimal click --version": [sys.executable, "-c", MINIMAL_CLICK, "--version"],
            "minimal click sessions --json": [sys.executable, "-c", MINIMAL_CLICK, "sessions", "--json"],
            "mk0r-tui --version": [*mk0r, "--version"],
            "mk0r-tui sessions --json": [*mk0r, "sessions", "--json"],
        }
        walls: dict[str, list[float]] = {name: [] for name in commands}
        cpus: dict[str, list[float]] = {name: [] for name in commands}
        load_before = c.load_now()
        for turn in range(args.runs + 1):  # turn 0 warms the page cache: not counted
            for name, argv in commands.items():
                wall, _out, _err = c.timed_process(argv, env=env, cwd=c.ROOT)
                if turn:
                    walls[name].append(wall)
                    cpus[name].append(c.LAST_CPU_MS[0])
        load_after = c.load_now()
    print(f"{load_before} before, {load_after} after")
    print()
    rows = []
    for name in commands:
        s, cpu = c.summary(walls[name]), c.summary(cpus[name])
        rows.append([name, s["median"], s["min"], s["max"], cpu["median"]])
    print(c.table(["process", "median ms", "min ms", "max ms", "CPU ms (median)"], rows))
    med = {name: c.summary(w)["median"] for name, w in walls.items()}
    goals = [
        c.Goal("mk0r-tui --version / minimal click --version (medians)", med["mk0r-tui --version"] / med["minimal click --version"], 1.3),
        c.Goal("mk0r-tui sessions --json - minimal click sessions --json (medians)",
               med["mk0r-tui sessions --json"] - med["minimal click sessions --json"], 150, " ms"),
    ]
    print()
    print("the machine may be shared: figures move with the load printed above")
    return c.finish("startup", info, goals, {"wall_ms": {n: c.summary(w) for n, w in walls.items()},
                                               "cpu_ms": {n: c.summary(w) for n, w in cpus.items()},
                                               "load_before": load_before, "load_after": load_after})


if __name__ == "__main__":
    raise SystemExit(main())
