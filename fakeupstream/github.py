"""GitHub REST: the user, repos of the user and of orgs, rate limit (github.json)."""

from __future__ import annotations

import base64
import re
import time
import uuid
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from .common import HOST, MOUNTS, BadRequest, Request, Response, iso, json_response

GH_DOCS = "https://docs.github.com/rest"



# -- serialisers: the JSON shapes of github.json, used by the routes below and by tests/cloudmock.py
def user_obj(login: str, kind: str = "User", *, me: str | None = None) -> dict:
    """A ``simple-user`` (owner of a repo); ``me`` is the authenticated login (a fixed id)."""
    uid = 583231 if kind == "User" and login == me else (
        10_000_000 + int.from_bytes(login.lower().encode()[:6].ljust(6, b"\0"), "big") % 89_999_999)
    prefix = "MDQ6VXNlcj" if kind == "User" else "MDEyOk9yZ2FuaXphdGlvbj"
    api = f"https://api.github.com/users/{login}"
    return {
        "login": login, "id": uid, "node_id": prefix + base64.b64encode(str(uid).encode()).decode(),
        "avatar_url": f"https://avatars.githubusercontent.com/u/{uid}?v=4", "gravatar_id": "",
        "url": api, "html_url": f"https://github.com/{login}",
        "followers_url": f"{api}/followers", "following_url": f"{api}/following{{/other_user}}",
        "gists_url": f"{api}/gists{{/gist_id}}", "starred_url": f"{api}/starred{{/owner}}{{/repo}}",
        "subscriptions_url": f"{api}/subscriptions", "organizations_url": f"{api}/orgs",
        "repos_url": f"{api}/repos", "events_url": f"{api}/events{{/privacy}}",
        "received_events_url": f"{api}/received_events", "type": kind, "user_view_type": "public",
        "site_admin": False,
    }


def repo_obj(owner: dict, name: str, rid: int, body: dict, created: datetime, org: bool) -> dict:
    """A ``full-repository`` as POST /user/repos (or /orgs/{org}/repos) answers with ``body``."""
    full = f"{owner['login']}/{name}"
    api = f"https://api.github.com/repos/{full}"
    ts = iso(created)
    private = bool(body.get("private", False)) or body.get("visibility") == "private"
    u = lambda s: f"{api}/{s}"  # noqa: E731
    repo = {
        "id": rid, "node_id": "R_kgDO" + base64.b64encode(rid.to_bytes(5, "big")).decode().rstrip("="),
        "name": name, "full_name": full, "private": private, "owner": owner,
        "html_url": f"https://github.com/{full}", "description": body.get("description") or None,
        "fork": False, "url": api,
        "archive_url": u("{archive_format}{/ref}"), "assignees_url": u("assignees{/user}"),
        "blobs_url": u("git/blobs{/sha}"), "branches_url": u("branches{/branch}"),
        "collaborators_url": u("collaborators{/collaborator}"), "comments_url": u("comments{/number}"),
        "commits_url": u("commits{/sha}"), "compare_url": u("compare/{base}...{head}"),
        "contents_url": u("contents/{+path}"), "contributors_url": u("contributors"),
        "deployments_url": u("deployments"), "downloads_url": u("downloads"),
        "events_url": u("events"), "forks_url": u("forks"), "git_commits_url": u("git/commits{/sha}"),
        "git_refs_url": u("git/refs{/sha}"), "git_tags_url": u("git/tags{/sha}"),
        "git_url": f"git://github.com/{full}.git", "issue_comment_url": u("issues/comments{/number}"),
        "issue_events_url": u("issues/events{/number}"), "issues_url": u("issues{/number}"),
        "keys_url": u("keys{/key_id}"), "labels_url": u("labels{/name}"), "languages_url": u("languages"),
        "merges_url": u("merges"), "milestones_url": u("milestones{/number}"),
        "notifications_url": u("notifications{?since,all,participating}"), "pulls_url": u("pulls{/number}"),
        "releases_url": u("releases{/id}"), "ssh_url": f"git@github.com:{full}.git",
        "stargazers_url": u("stargazers"), "statuses_url": u("statuses/{sha}"),
        "subscribers_url": u("subscribers"), "subscription_url": u("subscription"), "tags_url": u("tags"),
        "teams_url": u("teams"), "trees_url": u("git/trees{/sha}"), "clone_url": f"https://github.com/{full}.git",
        "mirror_url": None, "hooks_url": u("hooks"), "svn_url": f"https://github.com/{full}",
        "homepage": body.get("homepage") or None, "language": None, "forks_count": 0, "forks": 0,
        "stargazers_count": 0, "watchers_count": 0, "watchers": 0, "size": 0,
        "default_branch": "main", "open_issues_count": 0, "open_issues": 0,
        "is_template": bool(body.get("is_template", False)), "topics": [],
        "has_issues": body.get("has_issues", True), "has_projects": body.get("has_projects", True),
        "has_wiki": body.get("has_wiki", True), "has_pages": False,
        "has_downloads": body.get("has_downloads", True),
        "has_discussions": body.get("has_discussions", False), "archived": False, "disabled": False,
        "visibility": "private" if private else "public", "pushed_at": ts, "created_at": ts,
        "updated_at": ts, "permissions": {"admin": True, "maintain": True, "push": True, "triage": True,
                                          "pull": True},
        "allow_rebase_merge": body.get("allow_rebase_merge", True),
        "allow_squash_merge": body.get("allow_squash_merge", True),
        "allow_auto_merge": body.get("allow_auto_merge", False),
        "delete_branch_on_merge": body.get("delete_branch_on_merge", False),
        "allow_merge_commit": body.get("allow_merge_commit", True), "allow_forking": True,
        "web_commit_signoff_required": False, "license": None,
        "network_count": 0, "subscribers_count": 1,
    }
    if org:
        repo["organization"] = owner
    return repo


def profile_obj(login: str, *, public_repos: int = 0, private_repos: int = 0) -> dict:
    """The ``private-user`` of GET /user for the authenticated ``login``."""
    u = user_obj(login, me=login)
    u["user_view_type"] = "private"
    u.update({"name": "Mona Lisa Octocat", "company": None, "blog": "", "location": None,
              "email": None, "hireable": None, "bio": None, "twitter_username": None,
              "public_repos": public_repos, "public_gists": 0, "followers": 0, "following": 0,
              "created_at": "2011-01-25T18:44:36Z", "updated_at": "2024-01-01T00:00:00Z",
              "private_gists": 0, "total_private_repos": private_repos, "owned_private_repos": private_repos,
              "disk_usage": 0, "collaborators": 0, "two_factor_authentication": True,
              "plan": {"name": "free", "space": 976562499, "private_repos": 10000, "collaborators": 0}})
    return u


# -- the answers every route shares (the server calls these by provider)

def error_body(message: str, status: int | None = None, documentation_url: str = GH_DOCS) -> dict:
    body = {"message": message, "documentation_url": documentation_url}
    if status is not None:
        body["status"] = str(status)
    return body


def error(status: int, message: str, name: str | None = None) -> Response:
    return json_response(status, error_body(message, status))


def unauthorized(token: str | None) -> Response:
    return error(401, "Requires authentication" if token is None else "Bad credentials")


def not_found(req: Request | None = None, documentation_url: str = GH_DOCS) -> Response:
    return json_response(404, error_body("Not Found", 404, documentation_url))


def decorate(server: Any, resp: Response) -> Response:
    """Every answer carries GitHub's request id, media type, rate-limit and scope headers."""
    used = server.counters["github"]["total"]
    reset = int(time.time()) // 3600 * 3600 + 3600
    extra = [("X-GitHub-Request-Id", uuid.uuid4().hex[:20].upper()),
             ("X-GitHub-Media-Type", "github.v3; format=json"),
             ("X-RateLimit-Limit", "5000"), ("X-RateLimit-Remaining", str(max(0, 5000 - used))),
             ("X-RateLimit-Reset", str(reset)), ("X-RateLimit-Used", str(used)),
             ("X-RateLimit-Resource", "core")]
    if resp.status != 401:
        extra.append(("X-OAuth-Scopes", server.config["github_scopes"]))
    have = {k.lower() for k, _ in resp.headers}
    resp.headers.extend((k, v) for k, v in extra if k.lower() not in have)
    return resp


#: (method, path pattern, handler method name); ``{name}`` matches one path segment
ROUTES = [
    ("GET", "/user", "gh_user"),
    ("GET", "/user/repos", "gh_list_user_repos"),
    ("POST", "/user/repos", "gh_create_user_repo"),
    ("GET", "/orgs/{org}/repos", "gh_list_org_repos"),
    ("POST", "/orgs/{org}/repos", "gh_create_org_repo"),
    ("GET", "/repos/{owner}/{repo}", "gh_get_repo"),
    ("PATCH", "/repos/{owner}/{repo}", "gh_update_repo"),
    ("DELETE", "/repos/{owner}/{repo}", "gh_delete_repo"),
    ("GET", "/rate_limit", "gh_rate_limit"),
]


class GitHubApi:
    """Route handlers; mixed into the server."""

    # ================================================================= GitHub
    def _gh_create(self, req: Request, owner_login: str, org: bool) -> Response:
        body = self._body(req)
        doc = GH_DOCS + ("/repos/repos#create-an-organization-repository" if org
                         else "/repos/repos#create-a-repository-for-the-authenticated-user")
        raw = body.get("name")
        if not isinstance(raw, str) or not raw.strip():
            return json_response(422, {"message": "Repository creation failed.", "documentation_url": doc,
                               "status": "422", "errors": [{"resource": "Repository", "code": "missing_field",
                                                            "field": "name"}]})
        name = re.sub(r"[^A-Za-z0-9._-]", "-", raw.strip())
        if name in (".", "..") or len(name) > 100:
            return json_response(422, {"message": "Repository creation failed.", "documentation_url": doc,
                               "status": "422", "errors": [{"resource": "Repository", "code": "custom",
                                                            "field": "name", "message": "name is invalid"}]})
        key = f"{owner_login}/{name}".lower()
        if key in self.db["github"]["repos"]:
            return json_response(422, {"message": "Repository creation failed.", "documentation_url": doc,
                               "status": "422",
                               "errors": [{"resource": "Repository", "code": "custom", "field": "name",
                                           "message": "name already exists on this account"}]})
        owner = user_obj(owner_login, "Organization" if org else "User", me=self.config["github_login"])
        seq = self._next_seq()
        repo = repo_obj(owner, name, 900_000_000 + seq, body, self._created_now(), org)
        self.db["github"]["repos"][key] = {"seq": seq, "repo": repo}
        self.persist()
        return json_response(201, repo, [("Location", repo["url"])])

    def _gh_page(self, req: Request, repos: list[dict], default_sort: str) -> Response:
        q = req.query
        try:
            per_page = min(100, max(1, int(q.get("per_page", 30))))
            page = max(1, int(q.get("page", 1)))
        except ValueError:
            return self._error("github", 400, "Invalid pagination parameter")
        sort = q.get("sort", default_sort)
        direction = q.get("direction") or ("asc" if sort == "full_name" else "desc")
        if sort == "full_name":
            repos.sort(key=lambda r: r["repo"]["full_name"].lower(), reverse=direction == "desc")
        else:
            repos.sort(key=lambda r: r["seq"], reverse=direction == "desc")
        pages = max(1, -(-len(repos) // per_page))
        data = [r["repo"] for r in repos[(page - 1) * per_page: page * per_page]]
        headers = []
        if pages > 1:
            base = f"http://{req.headers.get('host', f'{HOST}:{self.port}')}{MOUNTS['github']}{req.rel}"

            def link(n: int, rel: str) -> str:
                return f'<{base}?{urlencode({**q, "per_page": per_page, "page": n})}>; rel="{rel}"'
            links = []
            if page > 1:
                links.append(link(min(page - 1, pages), "prev"))
            if page < pages:
                links += [link(page + 1, "next"), link(pages, "last")]
            if page > 1:
                links.append(link(1, "first"))
            headers.append(("Link", ", ".join(links)))
        return json_response(200, data, headers)

    def gh_user(self, req: Request) -> Response:
        login = self.config["github_login"]
        mine = [r for r in self.db["github"]["repos"].values() if r["repo"]["owner"]["login"] == login]
        private = sum(1 for r in mine if r["repo"]["private"])
        return json_response(200, profile_obj(login, public_repos=len(mine) - private, private_repos=private))

    def gh_create_user_repo(self, req: Request) -> Response:
        return self._gh_create(req, self.config["github_login"], org=False)

    def _gh_check_org(self, org: str) -> None:
        orgs = self.config.get("github_orgs")
        if orgs is not None and org.lower() not in {o.lower() for o in orgs}:
            raise BadRequest(json_response(404, {"message": "Not Found", "documentation_url": GH_DOCS,
                                          "status": "404"}))

    def gh_create_org_repo(self, req: Request, org: str) -> Response:
        self._gh_check_org(org)
        return self._gh_create(req, org, org=True)

    def gh_list_user_repos(self, req: Request) -> Response:
        repos = list(self.db["github"]["repos"].values())
        vis = req.query.get("visibility", "all")
        if vis in ("public", "private"):
            repos = [r for r in repos if r["repo"]["visibility"] == vis]
        affiliation = req.query.get("affiliation")
        if affiliation and "organization_member" not in affiliation and "owner" in affiliation:
            repos = [r for r in repos if r["repo"]["owner"]["login"] == self.config["github_login"]]
        return self._gh_page(req, repos, "full_name")

    def gh_list_org_repos(self, req: Request, org: str) -> Response:
        self._gh_check_org(org)
        repos = [r for r in self.db["github"]["repos"].values()
                 if r["repo"]["owner"]["login"].lower() == org.lower()]
        return self._gh_page(req, repos, "created")

    def _gh_moved(self, key: str, status: int) -> Response | None:
        """A renamed repository's old name: GitHub answers 301 to a GET and 307 to other methods,
        with the new location by id (docs: "Repository redirects")."""
        rid = self.db["github"].get("redirects", {}).get(key)
        if rid is None or not any(r["repo"]["id"] == rid for r in self.db["github"]["repos"].values()):
            return None
        url = f"https://api.github.com/repositories/{rid}"
        return json_response(status, {"message": "Moved Permanently", "url": url,
                                      "documentation_url": GH_DOCS + "/overview/troubleshooting"}, [("Location", url)])

    def gh_update_repo(self, req: Request, owner: str, repo: str) -> Response:
        """PATCH /repos/{owner}/{repo}: here only a rename (`name`) and the description."""
        key = f"{owner}/{repo}".lower()
        rec = self.db["github"]["repos"].get(key)
        if rec is None:
            return self._gh_moved(key, 307) or not_found(req)
        body = self._body(req)
        new = body.get("name")
        data = rec["repo"]
        if isinstance(body.get("description"), str):
            data["description"] = body["description"]
        if isinstance(new, str) and new and new != data["name"]:
            new_key = f"{data['owner']['login']}/{new}".lower()
            if new_key in self.db["github"]["repos"]:
                return json_response(422, {"message": "Repository creation failed.", "status": "422",
                                           "documentation_url": GH_DOCS + "/repos/repos#update-a-repository",
                                           "errors": [{"resource": "Repository", "code": "custom", "field": "name",
                                                       "message": "name already exists on this account"}]})
            renamed = repo_obj(data["owner"], new, data["id"], {**data, "visibility": data["visibility"]},
                               datetime.fromisoformat(data["created_at"].replace("Z", "+00:00")), "organization" in data)
            renamed["description"] = data.get("description")
            del self.db["github"]["repos"][key]
            self.db["github"]["repos"][new_key] = {**rec, "repo": renamed}
            self.db["github"].setdefault("redirects", {})[key] = data["id"]
            data = renamed
        self.persist()
        return json_response(200, data)

    def gh_get_repo(self, req: Request, owner: str, repo: str) -> Response:
        rec = self.db["github"]["repos"].get(f"{owner}/{repo}".lower())
        if rec is None:
            moved = self._gh_moved(f"{owner}/{repo}".lower(), 301)
            if moved is not None:
                return moved
            return json_response(404, {"message": "Not Found",
                               "documentation_url": GH_DOCS + "/repos/repos#get-a-repository", "status": "404"})
        return json_response(200, rec["repo"])

    def gh_delete_repo(self, req: Request, owner: str, repo: str) -> Response:
        key = f"{owner}/{repo}".lower()
        doc = GH_DOCS + "/repos/repos#delete-a-repository"
        if key not in self.db["github"]["repos"]:
            return self._gh_moved(key, 307) or json_response(404, {"message": "Not Found", "documentation_url": doc, "status": "404"})
        scopes = {s.strip() for s in str(self.config["github_scopes"]).split(",")}
        if "delete_repo" not in scopes:
            return json_response(403, {"message": "Must have admin rights to Repository.", "documentation_url": doc,
                               "status": "403"})
        rec = self.db["github"]["repos"].pop(key)
        self.db["tombstones"][key] = rec["seq"]
        self.persist()
        return Response(204, b"", content_type=None)

    def gh_rate_limit(self, req: Request) -> Response:
        used = self.counters["github"]["total"]
        reset = int(time.time()) // 3600 * 3600 + 3600
        core = {"limit": 5000, "used": used, "remaining": max(0, 5000 - used), "reset": reset}
        search = {"limit": 30, "used": 0, "remaining": 30, "reset": int(time.time()) + 60}
        graphql = {"limit": 5000, "used": 0, "remaining": 5000, "reset": reset}
        return json_response(200, {"resources": {"core": core, "search": search, "graphql": graphql}, "rate": core})
