"""A small, fast, stateful fake of the cloud providers' HTTP APIs.

Made for crash-safety tests and benchmarks: a separate process can kill our CLI
at any point and then ask the fake (``GET /_state``) what it holds.

The server (server.py) is ``asyncio.start_server`` with h11 doing the HTTP/1.1: h11 (python-hyper,
the protocol layer under httpx's own client, so already installed) parses request lines, headers,
Content-Length and chunked bodies, ``Expect: 100-continue`` and keep-alive, and frames responses;
the fake only moves bytes. It replaced a hand-written parser. Not ``http.server.ThreadingHTTPServer``:
a thread per connection would turn latency into sleeping threads and need locks around every
resource, while here latency is ``await asyncio.sleep`` and all state lives on one loop, so hundreds
of concurrent connections never serialise and need no locking. Cost measured when switching: about
0.4 ms more per sequential request than the hand-written parser (2 cores, loaded), nothing beside
the injected latencies of 50-800 ms. Binds 127.0.0.1 only.

Layout: common.py (config, request/response types, FakeState: resources, counters, faults,
latency, clock, state file), one module per provider (neon.py, resend.py, github.py, posthog.py:
serialisers, error shapes, ROUTES and the handlers as a mixin; e2b.py: serialisers only),
server.py (HTTP and dispatch), harness.py (:class:`FakeUpstream`), __main__.py (the CLI).
tests/cloudmock.py builds its respx answers with the same serialisers.

Mounts (response shapes follow the trimmed OpenAPI documents in ``tests/api-specs/``)::

    /neon/api/v2   GET,POST /projects   GET,DELETE /projects/{id}
                   GET /projects/{id}/operations[/{op_id}]
                   GET /projects/{id}/connection_uri   GET /users/me
    /resend        POST,GET /segments   GET,DELETE /segments/{id}
                   POST,GET /api-keys   DELETE /api-keys/{id}   GET /domains
    /github        GET /user   GET,POST /user/repos   GET,POST /orgs/{org}/repos
                   GET,DELETE /repos/{owner}/{repo}   GET /rate_limit
    /posthog       POST /i/v0/e/   (also /batch/ and /capture/)

Control plane (never delayed, never faulted, not counted)::

    GET  /_state[?full=1]   resources per provider, request counters, config, faults
    POST /_control          JSON, same keys as the start-up config (see CONFIG_KEYS)
    POST /_reset            drop all resources, counters and pending faults
    POST /_shutdown         stop serving

Command line::

    python -m fakeupstream --port 0 --state-file F --config '{"latency_ms": {"neon": 800}}'

prints ``LISTENING http://127.0.0.1:<port>`` and serves until SIGTERM/SIGINT.

From Python::

    with FakeUpstream(state_file=tmp / "fake.json", config={...}) as fake:
        httpx.get(fake.github_url + "/user", headers={"Authorization": "Bearer t"})
        fake.control(faults=[{"provider": "github", "method": "POST",
                              "path_prefix": "/user/repos", "status": 500, "times": 2}])
        fake.state()["github"]
"""

from __future__ import annotations

from .__main__ import main
from .common import CONFIG_KEYS, DEFAULT_CONFIG, MOUNTS
from .harness import FakeUpstream
from .server import FakeServer

__all__ = ["FakeServer", "FakeUpstream", "DEFAULT_CONFIG", "CONFIG_KEYS", "MOUNTS", "main"]
