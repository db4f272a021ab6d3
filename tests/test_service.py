"""The provisioning service end to end: `mk0r-tui serve` as a real process on 127.0.0.1, the real
providers talking to the fake upstream, the job queue on the embedded Postgres, httpx as the
generator would call it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import time

import httpx
import pytest
from crashkit import KEYS, cli_env, run_cli, upstream_resources
from ledgerkit import POSTGRES_PASS, pg_database
from prometheus_client.parser import text_string_to_metric_families
from servicekit import TOKEN, ServeProcess, async_client, client, queue_database
from waiting import wait_until_sync

from fakeupstream import FakeUpstream

pytestmark = pytest.mark.slow

FAKE_CONFIG = {"latency_ms": {"neon": 40, "resend": 10, "github": 20, "posthog": 5}, "neon_operation_ms": 0}
REPORT_KEYS = ["session", "slug", "env_file", "target", "ok", "providers", "env"]


@pytest.fixture(scope="module")
def fake():
    with FakeUpstream(config=FAKE_CONFIG) as upstream:
        yield upstream


@pytest.fixture(scope="module")
def service(fake, shared_postgres_dir, pg_admin, tmp_path_factory):
    """One `serve` for the module. In the Postgres pass (MK0R_TEST_LEDGER=postgres) its ledger is
    a database of the module's own on the embedded Postgres, as a team's would be."""
    home = tmp_path_factory.mktemp("svc-home")
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(queue_database(shared_postgres_dir))
        extra = {"MK0R_LEDGER_URL": stack.enter_context(pg_database(pg_admin, prefix="svcledger"))} if POSTGRES_PASS else {}
        env = cli_env(fake, home, MK0R_QUEUE_URL=url, MK0R_SERVICE_TOKEN=TOKEN, MK0R_POSTGRES_DIR=str(shared_postgres_dir),
                      MK0R_TARGET="local", **extra)
        with ServeProcess(env, "--log-format", "json") as srv:
            srv.env = env
            yield srv


def key(name: str) -> str:
    return f"{name}-{time.monotonic_ns() % 10**9:09d}"


def names_upstream(fake: FakeUpstream, slug: str) -> list[str]:
    return sorted(f"{r.provider}:{r.kind}:{r.name}" for r in upstream_resources(fake.state()) if slug in r.name)


def test_post_provisions_and_answers_the_provision_json(service, fake):
    session = key("post-json")
    with client(service.url) as c:
        r = c.post("/v1/sessions", json={"session": session})
        assert r.status_code == 201, r.text
        body = r.json()
        assert list(body) == REPORT_KEYS  # the same shape as `provision --json`
        assert body["session"] == session and body["ok"] is True
        assert {p["name"] for p in body["providers"]} >= {"neon", "resend", "github", "posthog"}
        revealed = c.get(f"/v1/sessions/{session}/env", params={"reveal": "true"}).json()["env"]
        masked = c.get(f"/v1/sessions/{session}/env").json()["env"]
    assert set(body["env"]) == set(revealed)
    secret = revealed["DATABASE_URL"]
    assert secret not in json.dumps(body) and secret not in json.dumps(masked)  # masked unless reveal
    assert body["env"] == masked
    # what a CLI user of the same data dir sees is the same session
    listed = json.loads(run_cli(service.env, "sessions", "--json").stdout)
    assert any(s["session"] == session and s["state"] == "ready" for s in listed)
    with client(service.url) as c:
        served = c.get("/v1/sessions").json()
    mine = next(s for s in served if s["session"] == session)
    theirs = next(s for s in listed if s["session"] == session)
    assert list(mine) == list(theirs) and {k: v for k, v in mine.items() if k != "age_s"} == {k: v for k, v in theirs.items() if k != "age_s"}


def test_reveal_true_answers_the_values(service):
    session = key("reveal")
    with client(service.url) as c:
        r = c.post("/v1/sessions", json={"session": session, "reveal": True})
        assert r.status_code == 201, r.text
        revealed = c.get(f"/v1/sessions/{session}/env", params={"reveal": "true"}).json()["env"]
    assert r.json()["env"] == revealed


def test_the_same_session_twice_creates_nothing_new(service, fake):
    session = key("twice")

    async def post_many() -> list[httpx.Response]:
        async with async_client(service.url) as c:
            return await asyncio.gather(*(c.post("/v1/sessions", json={"session": session}) for _ in range(4)))

    first = asyncio.run(post_many())
    assert [r.status_code for r in first] == [201] * 4, [r.text for r in first]
    slug = first[0].json()["slug"]
    created = names_upstream(fake, slug)
    assert len(created) == len(set(created)) == 4  # neon project, resend segment + key, github repo: once each
    with client(service.url) as c:
        again = c.post("/v1/sessions", json={"session": session})
    assert again.status_code == 201 and again.json()["ok"] is True
    assert names_upstream(fake, slug) == created
    resources = {json.dumps(p["resources"], sort_keys=True) for p in again.json()["providers"]}
    assert resources == {json.dumps(p["resources"], sort_keys=True) for p in first[0].json()["providers"]}


def test_wait_false_answers_202_with_a_location_that_reaches_ready(service):
    session = key("nowait")
    with client(service.url) as c:
        r = c.post("/v1/sessions", params={"wait": "false"}, json={"session": session})
        assert r.status_code == 202, r.text
        assert r.headers["location"] == f"/v1/sessions/{session}"
        assert r.json()["job"] > 0 and r.json()["kind"] == "provision"
        state = wait_until_sync(lambda: (got := c.get(r.headers["location"])).status_code == 200
                                and got.json()["state"] == "ready" and got.json()["job"]["state"] == "succeeded" and got.json(),
                                what="the session ready and its job done")
    assert state["job"]["kind"] == "provision" and state["job"]["state"] == "succeeded"


def test_a_new_session_key_is_made_when_none_is_given(service):
    with client(service.url) as c:
        r = c.post("/v1/sessions")
    assert r.status_code == 201, r.text
    assert len(r.json()["session"]) == 36  # a UUID


def test_delete_answers_the_teardown_report_and_leaves_nothing(service, fake):
    session = key("delete")
    with client(service.url) as c:
        slug = c.post("/v1/sessions", json={"session": session}).json()["slug"]
        assert names_upstream(fake, slug)
        r = c.delete(f"/v1/sessions/{session}")
        assert r.status_code == 200, r.text
        assert list(r.json()) == ["session", "ok", "resources"] and r.json()["ok"] is True
        assert {x["outcome"] for x in r.json()["resources"]} == {"deleted"}
        assert c.get(f"/v1/sessions/{session}").json()["state"] == "deleted"
        assert c.delete(f"/v1/sessions/{session}").json()["resources"] == []  # idempotent
    assert names_upstream(fake, slug) == []


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong-token"}, {"Authorization": f"Basic {TOKEN}"},
                                     {"Authorization": TOKEN}, {"Authorization": f"Bearer {TOKEN}x"}])
@pytest.mark.parametrize("route", [("GET", "/v1/sessions"), ("POST", "/v1/sessions"), ("GET", "/v1/events"), ("GET", "/metrics"),
                                   ("GET", "/openapi.json"), ("DELETE", "/v1/sessions/some-session-key"), ("GET", "/nowhere")])
def test_no_or_a_wrong_token_is_401_with_no_detail(service, headers, route):
    with httpx.Client(base_url=service.url, trust_env=False, timeout=30) as c:
        r = c.request(route[0], route[1], headers=headers, json={"session": "unauthorized-0001"} if route[0] == "POST" else None)
    assert r.status_code == 401
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json() == {"type": "about:blank", "title": "Unauthorized", "status": 401}
    assert r.headers["www-authenticate"].startswith("Bearer")


def test_healthz_needs_no_token(service):
    with httpx.Client(base_url=service.url, trust_env=False) as c:
        assert c.get("/healthz").json() == {"status": "ok"}


def test_bad_key_is_422_unknown_is_404_as_problem_details(service):
    with client(service.url) as c:
        bad = c.post("/v1/sessions", json={"session": "short"})
        assert bad.status_code == 422 and bad.headers["content-type"] == "application/problem+json"
        assert bad.json()["detail"] == "session key 'short' is too short: it needs at least 8 characters"
        assert c.get("/v1/sessions/bad%20key%20here").status_code == 422
        wrong_target = c.post("/v1/sessions", json={"session": key("target"), "target": "mars"})
        assert wrong_target.status_code == 422 and "target" in wrong_target.json()["detail"]
        extra = c.post("/v1/sessions", json={"session": key("extra"), "colour": "red"})
        assert extra.status_code == 422 and "colour" in extra.json()["detail"]
        sandbox = c.post("/v1/sessions", json={"session": key("sandbox"), "sandbox": "sbx-1"})
        assert sandbox.status_code == 422 and "--sandbox only applies to the e2b target" in sandbox.json()["detail"]
        for method, path in (("GET", "/v1/sessions/never-seen-0001"), ("GET", "/v1/sessions/never-seen-0001/env"),
                             ("DELETE", "/v1/sessions/never-seen-0001")):
            r = c.request(method, path)
            assert r.status_code == 404, (method, path, r.text)
            assert r.headers["content-type"] == "application/problem+json"
            assert r.json()["detail"] == "no session 'never-seen-0001' in the ledger (see `mk0r-tui sessions`)"


def test_events_stream_the_journal_in_order_and_resume(service):
    session = key("sse")
    with client(service.url) as c:
        c.post("/v1/sessions", json={"session": session}).raise_for_status()
        events = read_sse(c, "/v1/events", {"since": 0, "session": session}, until="SessionProvisioned")
        ids = [e["id"] for e in events]
        assert ids == sorted(ids) and len(set(ids)) == len(ids)
        assert events[0]["event"] == "RunStarted" and events[-1]["event"] == "SessionProvisioned"
        assert all(e["data"]["session"] == session and e["data"]["id"] == e["id"] for e in events)
        assert {"ProviderStarted", "ProviderSucceeded"} <= {e["event"] for e in events}
        # a reader that saw up to an id asks for what follows it (Last-Event-ID, as EventSource does)
        middle = ids[len(ids) // 2]
        rest = read_sse(c, "/v1/events", {"session": session}, until="SessionProvisioned", headers={"Last-Event-ID": str(middle)})
        assert [e["id"] for e in rest] == [i for i in ids if i > middle]
        # live: a run started after the stream opened arrives on it
        later = key("sse-live")

        def provision_later() -> None:
            with client(service.url) as other:
                other.post("/v1/sessions", json={"session": later}).raise_for_status()

        import threading

        threading.Timer(0.3, provision_later).start()
        live = read_sse(c, "/v1/events", {"since": ids[-1], "session": later}, until="SessionProvisioned")
        assert live[0]["event"] == "RunStarted" and live[-1]["event"] == "SessionProvisioned"


def read_sse(c: httpx.Client, path: str, params: dict, *, until: str, headers: dict | None = None) -> list[dict]:
    events: list[dict] = []
    current: dict = {}
    with c.stream("GET", path, params=params, headers=headers, timeout=60) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("id: "):
                current["id"] = int(line[4:])
            elif line.startswith("event: "):
                current["event"] = line[7:]
            elif line.startswith("data: "):
                current["data"] = json.loads(line[6:])
            elif line == "" and current:
                events.append(current)
                if current["event"] == until:
                    return events
                current = {}
    raise AssertionError(f"the stream ended before {until}: {events}")


def test_metrics_parse_and_carry_no_session_ids(service):
    session = key("metrics")
    with client(service.url) as c:
        slug = c.post("/v1/sessions", json={"session": session}).json()["slug"]
        text = c.get("/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    provisions = {(s.labels["provider"], s.labels["outcome"]): s.value for s in families["mk0r_provisions"].samples
                  if s.name == "mk0r_provisions_total"}
    assert provisions[("neon", "ok")] >= 1 and provisions[("github", "ok")] >= 1
    buckets = [s for s in families["mk0r_provider_duration_seconds"].samples if s.name.endswith("_bucket")]
    assert buckets and families["mk0r_provider_duration_seconds"].type == "histogram"
    assert {s.labels["state"] for s in families["mk0r_jobs"].samples} == {"queued", "running", "succeeded", "failed"}
    assert {"mk0r_provider_retries", "mk0r_rate_limit_waits", "mk0r_teardowns"} <= set(families)
    succeeded = next(s.value for s in families["mk0r_jobs"].samples if s.labels["state"] == "succeeded")
    assert succeeded >= 1
    labels = {v for f in families.values() for s in f.samples for v in s.labels.values()}
    assert not any(session in v or slug in v for v in labels)


def test_openapi_document_lists_the_routes(service):
    with client(service.url) as c:
        doc = c.get("/openapi.json").json()
    assert {"/v1/sessions", "/v1/sessions/{key}", "/v1/sessions/{key}/env", "/v1/events", "/healthz", "/metrics"} <= set(doc["paths"])
    assert {"get", "post"} <= set(doc["paths"]["/v1/sessions"]) and "delete" in doc["paths"]["/v1/sessions/{key}"]
    assert "202" in doc["paths"]["/v1/sessions"]["post"]["responses"]


def test_json_logs_carry_request_id_slug_provider_and_no_secret(service):
    session = key("logs")
    with client(service.url) as c:
        r = c.post("/v1/sessions", json={"session": session, "reveal": True}, headers={"X-Request-ID": "req-logs-0001"})
        assert r.status_code == 201 and r.headers["x-request-id"] == "req-logs-0001"
        slug = r.json()["slug"]
        secrets = [v for k, v in r.json()["env"].items() if any(w in k for w in ("URL", "KEY", "TOKEN", "PASSWORD"))]
    wait_until_sync(lambda: any('"req-logs-0001"' in line and "POST" in line for line in service.lines), what="the access line")
    lines = [json.loads(line) for line in list(service.lines) if line.startswith("{")]
    assert lines and all({"ts", "level", "logger", "message"} <= set(x) for x in lines)
    ours = [x for x in lines if x.get("request_id") == "req-logs-0001"]
    assert any(x.get("slug") == slug and x.get("provider") == "neon" for x in ours)
    assert all(secret not in service.log for secret in secrets if len(secret) > 8)
    assert all(v not in service.log for v in KEYS.values())


def test_refuses_a_non_loopback_host_without_a_token(fake, tmp_path):
    env = cli_env(fake, tmp_path / "home")
    proc = subprocess.run([*__import__("crashkit").cli_command("serve", "--host", "0.0.0.0", "--port", "0")], env=env,
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("error: refusing to serve on 0.0.0.0 without a token: set MK0R_SERVICE_TOKEN "
                                   "(or `mk0r-tui keys set MK0R_SERVICE_TOKEN`)")


def test_keys_set_accepts_the_service_token(tmp_path, fake, memory_keyring):
    # in-process: the keyring backend is this process's memory
    from click.testing import CliRunner

    from mk0r_tui.cli import cli

    result = CliRunner().invoke(cli, ["keys", "set", "MK0R_SERVICE_TOKEN", "--stdin"], input="tok-from-keyring-0001\n")
    assert result.exit_code == 0, result.output
    assert memory_keyring.get_password("mk0r-tui", "MK0R_SERVICE_TOKEN") == "tok-from-keyring-0001"


def test_a_worker_killed_mid_job_has_its_job_resumed_by_another_without_duplicates(fake, shared_postgres_dir, tmp_path):
    """SIGKILL the worker while GitHub's create is in flight (the fake finishes it anyway): another
    worker gets the stalled job back (procrastinate's heartbeats) and resumes from the ledger,
    adopting the pending create: every resource exists once."""
    fake.control(latency_ms={"github": 1500})
    try:
        with queue_database(shared_postgres_dir) as url:
            extra = {"MK0R_LEDGER_URL": os.environ["MK0R_LEDGER_URL"]} if os.environ.get("MK0R_LEDGER_URL") else {}
            env = cli_env(fake, tmp_path / "home", MK0R_QUEUE_URL=url, MK0R_SERVICE_TOKEN=TOKEN, MK0R_TARGET="local",
                          MK0R_POSTGRES_DIR=str(shared_postgres_dir), MK0R_WORKER_HEARTBEAT_S="0.3", MK0R_WORKER_STALLED_S="3",
                          **extra)
            with ServeProcess(env, "--no-workers") as api, client(api.url) as c:
                session = key("killed")
                accepted = c.post("/v1/sessions", params={"wait": "false"}, json={"session": session})
                assert accepted.status_code == 202
                slug = accepted.json()["slug"]
                # no worker yet: the Location already answers, with the job queued
                queued = c.get(accepted.headers["location"])
                assert queued.status_code == 200 and queued.json()["state"] == "queued", queued.text
                assert queued.json()["job"]["state"] == "queued"
                first = ServeProcess(env, command="worker").start()
                # mid-job: GitHub's create sent (its pending row is in the ledger), its answer not back yet
                wait_until_sync(lambda: fake.state()["requests"]["github"]["in_flight"] >= 1, what="GitHub's create in flight")
                assert c.get(f"/v1/sessions/{session}").json()["job"]["state"] == "running"
                first.kill()
                second = ServeProcess(env, command="worker").start()
                try:
                    ready = wait_until_sync(lambda: (s := c.get(f"/v1/sessions/{session}").json())["state"] == "ready"
                                            and s["job"]["state"] == "succeeded" and s,
                                            timeout=60, what="the session ready after the takeover")
                finally:
                    second.stop()
                assert ready["job"]["attempts"] >= 2 and ready["job"]["state"] == "succeeded"
                created = names_upstream(fake, slug)
                assert len(created) == len(set(created)) == 4, created
                assert "was stalled" in second.log  # the new worker swept it back into the queue
                # and nothing is left once it is torn down (served by a worker again)
                again = ServeProcess(env, command="worker").start()
                try:
                    assert c.delete(f"/v1/sessions/{session}").json()["ok"] is True
                finally:
                    assert again.stop() == 0  # SIGTERM: a graceful stop
                assert api.stop() == 0 and "stopping: letting running jobs finish" in api.log
            assert names_upstream(fake, slug) == []
            orphans = json.loads(run_cli(env, "orphans", "--json").stdout)
            assert [o for o in orphans if slug in o["name"]] == []
    finally:
        fake.control(latency_ms=FAKE_CONFIG["latency_ms"])


def test_metrics_count_a_rate_limited_retry(service, fake):
    with client(service.url) as c:
        def value(name: str, provider: str) -> float:
            families = {f.name: f for f in text_string_to_metric_families(c.get("/metrics").text)}
            return sum(s.value for s in families[name].samples if s.labels.get("provider") == provider and s.name == name + "_total")

        before = (value("mk0r_provider_retries", "resend"), value("mk0r_rate_limit_waits", "resend"))
        fake.add_fault(provider="resend", method="POST", path_prefix="/segments", status=429, times=1, headers={"retry-after": "0"})
        assert c.post("/v1/sessions", json={"session": key("ratelimited")}).json()["ok"] is True
        after = (value("mk0r_provider_retries", "resend"), value("mk0r_rate_limit_waits", "resend"))
    assert after[0] == before[0] + 1 and after[1] == before[1] + 1
