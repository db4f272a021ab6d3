"""A process that exits while the shared TLS context is still being built (an error right after
the plan: a busy session, a refused key) exits cleanly: the builder thread is waited for, never
killed inside OpenSSL by the exit's clean-up (that was a SIGSEGV in about 1 exit in 6)."""

from __future__ import annotations

import subprocess
import sys


def test_exiting_during_the_tls_prefetch_never_crashes():
    procs = [
        subprocess.Popen(
            [sys.executable, "-c",
             "import time\nfrom mk0r_tui.core.tls import prefetch_ssl_context\n"
             f"prefetch_ssl_context()\ntime.sleep({i % 10} / 1000)\n"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        for i in range(20)
    ]
    codes = [(p.wait(timeout=60), p.stderr.read() if p.stderr else b"") for p in procs]
    assert [c for c, _ in codes] == [0] * len(procs), codes
