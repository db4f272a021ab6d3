"""Tests for the fakeupstream package (at the repository root), the stateful fake of the providers' HTTP APIs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import pytest

from fakeupstream import FakeUpstream

try:  # written by another engineer; used when present
    from apispec import SpecRegistry, validate_request, validate_response
except ImportError:  # pragma: no cover - depends on the tree
    SpecRegistry = None

AUTH = {"Authorization": "Bearer test-token"}


@pytest.fixture
def fake() -> Iterator[FakeUpstream]:
    with FakeUpstream(config={"neon_operation_ms": 300}) as f:
        yield f


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(headers=AUTH, trust_env=False, timeout=5) as c:
        yield c


@pytest.fixture
def checked(fake: FakeUpstream) -> Iterator[httpx.Client]:
    """A client whose every request and response is checked against the OpenAPI specs."""
    hooks = {}
    if SpecRegistry is not None:
        registry = SpecRegistry({fake.neon_url: "neon", fake.resend_url: "resend",
                                 fake.github_url: "github", fake.posthog_url: "posthog"})

        def check(response: httpx.Response) -> None:
            response.read()
            validate_request(response.request, registry)
            validate_response(response.request, response, registry)
        hooks = {"response": [check]}
    with httpx.Client(headers=AUTH, trust_env=False, timeout=5, event_hooks=hooks) as c:
        yield c


# ---------------------------------------------------------------- round trips (spec-checked)
def test_neon_round_trip(fake: FakeUpstream, checked: httpx.Client) -> None:
    assert checked.get(fake.neon_url + "/users/me").json()["email"]  # also loads the spec
    r = checked.post(fake.neon_url + "/projects",
                     json={"project": {"name": "app-1", "region_id": "aws-us-east-2", "pg_version": 17}})
    assert r.status_code == 201
    body = r.json()
    pid = body["project"]["id"]
    params = body["connection_uris"][0]["connection_parameters"]
    assert set(params) == {"database", "password", "role", "host", "pooler_host"}
    assert body["connection_uris"][0]["connection_uri"].startswith(f"postgresql://{params['role']}:")
    assert {op["status"] for op in body["operations"]} == {"running"}

    op_id = body["operations"][0]["id"]
    op_url = f"{fake.neon_url}/projects/{pid}/operations/{op_id}"
    statuses = [checked.get(op_url).json()["operation"]["status"]]
    while statuses[-1] == "running" and len(statuses) < 100:
        time.sleep(0.02)
        statuses.append(checked.get(op_url).json()["operation"]["status"])
    assert statuses[0] == "running" and statuses[-1] == "finished"

    listed = checked.get(fake.neon_url + "/projects", params={"search": "app-"}).json()
    assert [p["id"] for p in listed["projects"]] == [pid]
    assert checked.get(f"{fake.neon_url}/projects/{pid}").json()["project"]["name"] == "app-1"
    uri = checked.get(f"{fake.neon_url}/projects/{pid}/connection_uri",
                      params={"database_name": params["database"], "role_name": params["role"],
                              "pooled": "true"}).json()["uri"]
    assert "-pooler." in uri and params["password"] in uri
    assert fake.state()["neon"] == [{"id": pid, "name": "app-1", "org_id": None,
                                     "region_id": "aws-us-east-2",
                                     "created_at": body["project"]["created_at"]}]

    r = checked.delete(f"{fake.neon_url}/projects/{pid}")
    assert r.status_code == 200 and r.json()["project"]["id"] == pid
    assert checked.delete(f"{fake.neon_url}/projects/{pid}").status_code == 404
    assert checked.get(f"{fake.neon_url}/projects/{pid}").status_code == 404
    assert fake.state()["neon"] == []


def test_resend_round_trip(fake: FakeUpstream, checked: httpx.Client) -> None:
    r = checked.post(fake.resend_url + "/segments", json={"name": "app-1 users"})
    assert r.status_code == 201
    seg = r.json()["id"]
    r = checked.post(fake.resend_url + "/api-keys", json={"name": "app-1", "permission": "sending_access"})
    assert r.status_code == 201
    key = r.json()
    assert key["token"].startswith("re_")

    assert [s["id"] for s in checked.get(fake.resend_url + "/segments").json()["data"]] == [seg]
    keys = checked.get(fake.resend_url + "/api-keys").json()
    assert keys["object"] == "list" and [k["id"] for k in keys["data"]] == [key["id"]]
    assert checked.get(fake.resend_url + "/domains").json()["data"][0]["status"] == "verified"
    state = fake.state()["resend"]
    assert [s["id"] for s in state["segments"]] == [seg]
    assert state["api_keys"][0]["token"] == key["token"]

    assert checked.delete(f"{fake.resend_url}/segments/{seg}").json() == {
        "object": "segment", "id": seg, "deleted": True}
    assert checked.delete(f"{fake.resend_url}/api-keys/{key['id']}").json()["deleted"] is True
    assert fake.state()["resend"] == {"segments": [], "api_keys": []}


def test_github_round_trip(fake: FakeUpstream, checked: httpx.Client) -> None:
    me = checked.get(fake.github_url + "/user")
    assert me.headers["x-oauth-scopes"] == "repo, delete_repo"
    login = me.json()["login"]
    r = checked.post(fake.github_url + "/user/repos", json={"name": "app-1", "private": True})
    assert r.status_code == 201
    repo = r.json()
    assert repo["full_name"] == f"{login}/app-1" and repo["private"] is True
    assert repo["clone_url"].endswith("/app-1.git") and repo["owner"]["login"] == login
    dup = checked.post(fake.github_url + "/user/repos", json={"name": "app-1"})
    assert dup.status_code == 422
    assert dup.json()["errors"] == [{"resource": "Repository", "code": "custom", "field": "name",
                                     "message": "name already exists on this account"}]
    r = checked.post(fake.github_url + "/orgs/acme/repos", json={"name": "app-2"})
    assert r.status_code == 201 and r.json()["owner"]["type"] == "Organization"

    assert checked.get(f"{fake.github_url}/repos/{login}/app-1").json()["id"] == repo["id"]
    assert {x["full_name"] for x in checked.get(fake.github_url + "/user/repos").json()} == {
        f"{login}/app-1", "acme/app-2"}
    assert checked.get(fake.github_url + "/rate_limit").json()["resources"]["core"]["limit"] == 5000
    assert [x["full_name"] for x in fake.state()["github"]] == [f"{login}/app-1", "acme/app-2"]

    assert checked.delete(f"{fake.github_url}/repos/{login}/app-1").status_code == 204
    assert checked.delete(f"{fake.github_url}/repos/{login}/app-1").status_code == 404
    assert checked.get(f"{fake.github_url}/repos/{login}/app-1").status_code == 404
    assert [x["full_name"] for x in fake.state()["github"]] == ["acme/app-2"]


def test_posthog_capture(fake: FakeUpstream, checked: httpx.Client) -> None:
    r = checked.post(fake.posthog_url + "/i/v0/e/",
                     json={"api_key": "phc_test", "event": "session_started", "distinct_id": "u1",
                           "properties": {"app": "a"}})
    assert (r.status_code, r.json()) == (200, {"status": "Ok"})
    events = fake.state()["posthog"]
    assert events["count"] == 1 and events["events"][0]["event"] == "session_started"


def test_auth_shapes(fake: FakeUpstream) -> None:
    with httpx.Client(trust_env=False, headers={"Authorization": "Bearer bad-token"}) as c:
        assert c.get(fake.neon_url + "/projects").json()["message"]
        assert c.get(fake.resend_url + "/domains").json()["name"] == "invalid_api_key"
        r = c.get(fake.github_url + "/user")
        assert (r.status_code, r.json()["message"]) == (401, "Bad credentials")
        assert c.get(fake.neon_url + "/users/me", headers={"Authorization": ""}).status_code == 401
    with httpx.Client(trust_env=False, headers={"Authorization": "token gho_x"}) as c:
        assert c.get(fake.github_url + "/user").status_code == 200
        assert c.get(fake.neon_url + "/users/me").status_code == 401  # Neon wants Bearer
    fake.control(tokens={"github": ["only-this"]})
    with httpx.Client(trust_env=False) as c:
        assert c.get(fake.github_url + "/user", headers={"Authorization": "Bearer other"}).status_code == 401
        assert c.get(fake.github_url + "/user", headers={"Authorization": "Bearer only-this"}).status_code == 200
    assert fake.state()["requests"]["github"]["unauthorized"] == 2


# ---------------------------------------------------------------- pagination
def test_neon_cursor_pagination(fake: FakeUpstream, checked: httpx.Client) -> None:
    ids = [checked.post(fake.neon_url + "/projects", json={"project": {"name": f"p{i}"}}).json()["project"]["id"]
           for i in range(7)]
    checked.post(fake.neon_url + "/projects", json={"project": {"name": "org", "org_id": "org-acme-1"}})
    pages, cursor = [], None
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        body = checked.get(fake.neon_url + "/projects", params=params).json()
        if not body["projects"]:
            break
        pages.append([p["id"] for p in body["projects"]])
        cursor = body["pagination"]["cursor"]
    assert [len(p) for p in pages] == [3, 3, 1]
    assert sum(pages, []) == ids
    orgs = checked.get(fake.neon_url + "/projects", params={"org_id": "org-acme-1"}).json()
    assert [p["name"] for p in orgs["projects"]] == ["org"]


def test_github_link_pagination(fake: FakeUpstream, checked: httpx.Client) -> None:
    for i in range(7):
        assert checked.post(fake.github_url + "/user/repos", json={"name": f"r{i}"}).status_code == 201
    url, pages, rels = fake.github_url + "/user/repos?per_page=3", [], []
    while url:
        r = checked.get(url)
        pages.append([x["name"] for x in r.json()])
        rels.append(sorted(r.links))
        url = r.links.get("next", {}).get("url")
    assert pages == [["r0", "r1", "r2"], ["r3", "r4", "r5"], ["r6"]]
    assert rels == [["last", "next"], ["first", "last", "next", "prev"], ["first", "prev"]]


def test_resend_has_more(fake: FakeUpstream, checked: httpx.Client) -> None:
    made = [checked.post(fake.resend_url + "/segments", json={"name": f"s{i}"}).json()["id"] for i in range(5)]
    seen, after = [], None
    while True:
        body = checked.get(fake.resend_url + "/segments",
                           params={"limit": 2, **({"after": after} if after else {})}).json()
        seen += [s["id"] for s in body["data"]]
        if not body["has_more"]:
            break
        after = body["data"][-1]["id"]
    assert seen == made[::-1]  # newest first


# ---------------------------------------------------------------- faults
def test_500_fault_applied_exactly_times(fake: FakeUpstream, client: httpx.Client) -> None:
    fake.control(faults=[{"provider": "github", "method": "POST", "path_prefix": "/user/repos",
                          "status": 500, "times": 2}])
    url = fake.github_url + "/user/repos"
    assert client.get(fake.github_url + "/user").status_code == 200  # other routes untouched
    codes = [client.post(url, json={"name": "x"}).status_code for _ in range(3)]
    assert codes == [500, 500, 201]
    assert client.post(url, json={"name": "x"}).status_code == 422  # fault used up; name now exists
    state = fake.state()
    assert [r["full_name"] for r in state["github"]] == ["octocat/x"]
    assert state["faults"] == []
    assert state["requests"]["github"]["faults_injected"] == 2
    assert state["requests"]["github"]["by_status"] == {"200": 1, "500": 2, "201": 1, "422": 1}


def test_429_with_headers_and_malformed(fake: FakeUpstream, client: httpx.Client) -> None:
    fake.control(faults=[{"provider": "resend", "path_prefix": "/segments", "status": 429,
                          "headers": {"retry-after": "1"}},
                         {"provider": "neon", "method": "POST", "malformed": True}])
    r = client.post(fake.resend_url + "/segments", json={"name": "s"})
    assert (r.status_code, r.headers["retry-after"], r.json()["name"]) == (429, "1", "rate_limit_exceeded")
    r = client.post(fake.neon_url + "/projects", json={"project": {}})
    assert r.status_code == 200
    with pytest.raises(ValueError):
        r.json()
    assert len(fake.state()["neon"]) == 1  # the create happened anyway


def test_drop_after_commit(fake: FakeUpstream, client: httpx.Client) -> None:
    fake.control(faults=[{"provider": "github", "method": "POST", "path_prefix": "/user/repos",
                          "drop_after_commit": True}])
    with pytest.raises(httpx.TransportError):
        client.post(fake.github_url + "/user/repos", json={"name": "orphan"})
    assert [r["full_name"] for r in fake.state()["github"]] == ["octocat/orphan"]
    assert client.get(fake.github_url + "/repos/octocat/orphan").status_code == 200
    assert fake.state()["requests"]["github"]["dropped"] == 1


# ---------------------------------------------------------------- latency and concurrency
def test_latency_is_concurrent(fake: FakeUpstream) -> None:
    fake.control(latency_ms={"github": 200})

    async def burst() -> list[int]:
        limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
        async with httpx.AsyncClient(headers=AUTH, trust_env=False, limits=limits, timeout=5) as c:
            rs = await asyncio.gather(*(c.get(fake.github_url + "/user") for _ in range(50)))
            return [r.status_code for r in rs]

    t0 = time.perf_counter()
    codes = asyncio.run(burst())
    elapsed = time.perf_counter() - t0
    assert codes == [200] * 50
    assert elapsed >= 0.2  # the latency was applied; how little more it costs: bench/helpers_speed.py
    counters = fake.state()["requests"]["github"]
    assert counters["max_in_flight"] == 50 and counters["in_flight"] == 0


# ---------------------------------------------------------------- persistence
def test_state_file_survives_restart(tmp_path, client: httpx.Client) -> None:
    state_file = tmp_path / "fake-state.json"
    first = FakeUpstream(state_file=state_file, use_subprocess=True).start()  # the CLI entry point
    try:
        pid = client.post(first.neon_url + "/projects", json={"project": {"name": "keep"}}).json()["project"]["id"]
        client.post(first.github_url + "/user/repos", json={"name": "keep"})
        seg = client.post(first.resend_url + "/segments", json={"name": "keep"}).json()["id"]
    finally:
        first.kill()  # SIGKILL: no clean shutdown
    with FakeUpstream(state_file=state_file) as second:
        state = second.state()
        assert [p["id"] for p in state["neon"]] == [pid]
        assert [r["full_name"] for r in state["github"]] == ["octocat/keep"]
        assert [s["id"] for s in state["resend"]["segments"]] == [seg]
        assert client.get(f"{second.neon_url}/projects/{pid}").status_code == 200
        second.reset()
        assert second.state()["neon"] == []
    with FakeUpstream(state_file=state_file) as third:
        assert third.state()["github"] == []


def test_spec_validation_is_active(fake: FakeUpstream, client: httpx.Client) -> None:
    """The spec-checked round trips above are not vacuous: a broken body is caught."""
    if SpecRegistry is None:
        pytest.skip("tests/apispec.py is not available")
    registry = SpecRegistry({fake.neon_url: "neon"})
    r = client.post(fake.neon_url + "/projects", json={"project": {"name": "x"}})
    validate_response(r.request, r, registry)
    body = r.json()
    del body["project"]["owner_id"]
    with pytest.raises(AssertionError, match="owner_id"):
        validate_response(r.request, httpx.Response(201, json=body, request=r.request), registry)


# ---------------------------------------------------------------- the shared serialisers
def _shared_answers() -> list[tuple[str, str, int, object]]:
    import cloudmock as cm

    return [
        ("POST", f"{cm.NEON}/projects", 201, cm.neon_created("proj-1", "mk0r-abc")),
        ("GET", f"{cm.NEON}/projects", 200, cm.neon_list([cm.neon_list_item("proj-1", "mk0r-abc")], cursor="c1")),
        ("GET", f"{cm.NEON}/projects/proj-1", 200, {"project": cm.neon_project("proj-1", "mk0r-abc")}),
        ("GET", f"{cm.NEON}/projects/proj-1/operations/{cm.OP_ID}", 200,
         {"operation": cm.neon_operation(cm.OP_ID, "proj-1", status="finished")}),
        ("GET", f"{cm.NEON}/projects/proj-9", 404, cm.neon_error("project not found")),
        ("POST", f"{cm.GITHUB}/user/repos", 201, cm.github_repo("octo", "mk0r-abc")),
        ("GET", f"{cm.GITHUB}/user/repos", 200, [cm.github_repo_item("octo", "mk0r-abc")]),
        ("GET", f"{cm.GITHUB}/user", 200, cm.github_user("octo")),
        ("GET", f"{cm.GITHUB}/repos/octo/gone", 404, cm.github_error("Not Found")),
        ("GET", f"{cm.RESEND}/segments", 200, cm.resend_list([{"id": "s1", "name": "n", "created_at": "x"}])),
        ("POST", f"{cm.E2B}/sandboxes", 201, cm.e2b_sandbox("sbx1", envd_access_token="tok")),
        ("GET", f"{cm.E2B}/v2/sandboxes", 200, [cm.e2b_listed("sbx1", {"mk0r": "1"})]),
        ("DELETE", f"{cm.E2B}/sandboxes/sbx9", 404, cm.e2b_error(404, "sandbox not found")),
    ]


@pytest.mark.parametrize("index", range(13))
def test_cloudmock_answers_are_the_fakes_shapes_and_match_the_specs(index: int) -> None:
    """cloudmock's respx answers come from fakeupstream's serialisers; each fits its spec."""
    if SpecRegistry is None:
        pytest.skip("tests/apispec.py is not available")
    method, url, status, body = _shared_answers()[index]
    request = httpx.Request(method, url, headers={"Authorization": "Bearer t", "X-API-Key": "e2b_t"})
    validate_response(request, httpx.Response(status, json=body, request=request))


def test_the_fake_and_cloudmock_share_one_serialiser() -> None:
    import cloudmock as cm

    from fakeupstream import github as fake_github
    from fakeupstream import neon as fake_neon

    cm.neon_project("p", "n")["settings"]["allowed_ips"]["ips"].append("1.2.3.4")
    assert cm.neon_project("p", "n")["settings"]["allowed_ips"]["ips"] == []  # no state shared between answers
    assert cm.neon_project("p", "n")["owner_id"] == fake_neon.project_obj("p", "n", "aws-us-east-2", 17,
                                                                           cm.CREATED)["owner_id"]
    assert set(cm.github_repo("o", "r")) == set(fake_github.repo_obj(
        fake_github.user_obj("o"), "r", 1, {}, cm.CREATED, org=False))


# ---------------------------------------------------------------- HTTP/1.1 on the wire
def _raw(fake: FakeUpstream, data: bytes) -> bytes:
    import socket

    with socket.create_connection(("127.0.0.1", fake.port), timeout=5) as sock:
        sock.sendall(data)
        out = b""
        while chunk := sock.recv(65536):
            out += chunk
    return out


def test_http_framing_chunked_body_keep_alive_and_bad_requests(fake: FakeUpstream) -> None:
    body = b'{"name":"chunky"}'
    reply = _raw(fake, b"POST /github/user/repos HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t\r\n"
                       b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                       + f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 201 ") and b'"full_name":"octocat/chunky"' in reply
    two = _raw(fake, b"GET /github/user HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t\r\n\r\n"
                     b"GET /github/rate_limit HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t\r\nConnection: close\r\n\r\n")
    assert two.count(b"HTTP/1.1 200 OK") == 2  # both answered on one connection
    assert _raw(fake, b"not http at all\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    assert fake.state()["requests"]["github"]["by_route"] == {"POST /user/repos": 1, "GET /user": 1,
                                                              "GET /rate_limit": 1}


def test_expect_100_continue(fake: FakeUpstream) -> None:
    import socket

    with socket.create_connection(("127.0.0.1", fake.port), timeout=5) as sock:
        sock.sendall(b"POST /resend/segments HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t\r\n"
                     b"Expect: 100-continue\r\nContent-Length: 12\r\nConnection: close\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 100 ")
        sock.sendall(b'{"name":"s"}')
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 201 ")
