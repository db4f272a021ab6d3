"""One TLS context for every HTTP client of the process, built once, in a thread.

httpx builds a verifying context per client by default, loading the CA bundle each time: 30-60 ms
apiece here (issue 17: 130-170 ms per CLI run with four providers), for a context that is the same
for all of them. Loading the bundle releases the GIL, so `prefetch_ssl_context()` called early
(the CLI's `provision`, `open_runtime`, a cloud provider's construction) builds it while the
process imports and opens its ledger; the first client then finds it ready (`shared_ssl_context`).

Same trust as httpx's default (`verify=True`, `trust_env=True`): `SSL_CERT_FILE`, else
`SSL_CERT_DIR`, else certifi's bundle. Imports nothing of httpx, so it can start before httpx loads.
"""

from __future__ import annotations

import os
import ssl
import threading

_lock = threading.Lock()
_thread: threading.Thread | None = None
_context: list[ssl.SSLContext] = []
_error: list[BaseException] = []


def build_ssl_context() -> ssl.SSLContext:
    """A verifying client context, as httpx's `create_ssl_context()` makes it."""
    if os.environ.get("SSL_CERT_FILE"):
        return ssl.create_default_context(cafile=os.environ["SSL_CERT_FILE"])
    if os.environ.get("SSL_CERT_DIR"):
        return ssl.create_default_context(capath=os.environ["SSL_CERT_DIR"])
    import certifi

    return ssl.create_default_context(cafile=certifi.where())


def _build() -> None:
    try:
        _context.append(build_ssl_context())
    except BaseException as exc:  # reported by the first client that needs it
        _error.append(exc)


def prefetch_ssl_context() -> None:
    """Start building the shared context in a thread, once per process."""
    global _thread
    with _lock:
        if _thread is None and not _context:
            # not a daemon: a process that exits while it loads the CA bundle (an error right after
            # the plan, e.g. a busy session) waits for it; a daemon thread inside OpenSSL then met
            # the exit's OpenSSL clean-up and the process died of SIGSEGV (1 exit in 6 here)
            _thread = threading.Thread(target=_build, name="mk0r-tls-context", daemon=False)
            _thread.start()


def shared_ssl_context() -> ssl.SSLContext:
    """The process's one TLS context (waits for the prefetch, or builds it now)."""
    global _thread
    prefetch_ssl_context()
    thread = _thread
    if thread is not None:
        thread.join()
    if not _context:
        error = _error.pop() if _error else RuntimeError("no TLS context was built")
        with _lock:
            _thread = None  # the next client tries again
        raise error
    return _context[0]


__all__ = ["build_ssl_context", "prefetch_ssl_context", "shared_ssl_context"]
