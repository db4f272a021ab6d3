"""``python -m fakeupstream --port 0 --state-file F --config '{...}'``: serve until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from pathlib import Path

from .common import CONFIG_KEYS, HOST
from .server import FakeServer

__all__ = ["main"]


def _parse_config(text: str | None) -> dict:
    if not text:
        return {}
    text = text.strip()
    if not text.startswith("{"):
        text = Path(text).read_text()
    data = json.loads(text)
    if not isinstance(data, dict):
        raise SystemExit("--config must be a JSON object (or a path to one)")
    return data


async def _serve(args: argparse.Namespace) -> None:
    server = FakeServer(_parse_config(args.config), args.state_file)
    port = await server.start(args.port)
    print(f"LISTENING http://{HOST}:{port}", flush=True)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, server.request_stop)
        except (NotImplementedError, RuntimeError):
            pass
    await server.wait_stopped()
    await server.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Stateful fake of the Neon/Resend/GitHub/PostHog APIs")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0 = pick a free one)")
    parser.add_argument("--state-file", help="JSON file the resources are kept in (atomic writes)")
    parser.add_argument("--config", help="JSON object (or path to a JSON file); keys: "
                                         + ", ".join(sorted(CONFIG_KEYS)))
    args = parser.parse_args(argv)
    try:
        asyncio.run(_serve(args))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
