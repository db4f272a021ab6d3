"""Resend: segments, sending-only API keys, domains (resend.json)."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from .common import BadRequest, Request, Response, json_response, rand_alnum, resend_ts

# -- the answers every route shares (the server calls these by provider)

def error_body(status: int, message: str, name: str | None = None) -> dict:
    """Resend's error shape (resend.com/docs/api-reference/errors)."""
    default = {400: "validation_error", 404: "not_found", 422: "validation_error",
               429: "rate_limit_exceeded", 500: "application_error"}.get(status, "internal_server_error")
    return {"statusCode": status, "name": name or default, "message": message}


def list_body(items: list[dict], has_more: bool = False) -> dict:
    return {"object": "list", "has_more": has_more, "data": items}


def error(status: int, message: str, name: str | None = None) -> Response:
    return json_response(status, error_body(status, message, name))


def unauthorized(token: str | None) -> Response:
    if token is None:
        return error(401, "Missing API key in the authorization header. Include the following header in "
                          "the request: Authorization: Bearer YOUR_API_KEY", "missing_api_key")
    return error(401, "API key is invalid", "invalid_api_key")




#: (method, path pattern, handler method name); ``{name}`` matches one path segment
ROUTES = [
    ("POST", "/segments", "resend_create_segment"),
    ("GET", "/segments", "resend_list_segments"),
    ("GET", "/segments/{id}", "resend_get_segment"),
    ("PATCH", "/segments/{id}", "resend_update_segment"),
    ("DELETE", "/segments/{id}", "resend_delete_segment"),
    ("POST", "/api-keys", "resend_create_api_key"),
    ("GET", "/api-keys", "resend_list_api_keys"),
    ("PATCH", "/api-keys/{api_key_id}", "resend_update_api_key"),
    ("DELETE", "/api-keys/{api_key_id}", "resend_delete_api_key"),
    ("GET", "/domains", "resend_list_domains"),
]


class ResendApi:
    """Route handlers; mixed into the server."""

    # ================================================================= Resend
    def _resend_page(self, req: Request, items: list[dict], view: Callable[[dict], dict]) -> Response:
        """Newest first; ``limit`` (1-100), ``after``/``before`` = an item id, as the spec says."""
        q = req.query
        if "after" in q and "before" in q:
            raise BadRequest(self._error("resend", 422, "You can only use one of `after` or `before`."))
        limit_raw = q.get("limit", self.config.get("resend_default_limit"))
        limit = None
        if limit_raw is not None:
            try:
                limit = int(limit_raw)
            except ValueError:
                limit = 0
            if not 1 <= limit <= 100:
                raise BadRequest(self._error("resend", 422, "The `limit` must be between 1 and 100."))
        items = sorted(items, key=lambda r: r["seq"], reverse=True)
        has_more = False
        for key in ("after", "before"):
            if key in q:
                seq = self._resend_cursor_seq(q[key])
                if key == "after":
                    items = [r for r in items if r["seq"] < seq]
                    if limit is not None:
                        has_more = len(items) > limit
                        items = items[:limit]
                else:
                    items = [r for r in items if r["seq"] > seq]
                    if limit is not None:
                        has_more = len(items) > limit
                        items = items[-limit:]
                break
        else:
            if limit is not None:
                has_more = len(items) > limit
                items = items[:limit]
        return json_response(200, {"object": "list", "has_more": has_more, "data": [view(r) for r in items]})

    def _resend_cursor_seq(self, cursor: str) -> int:
        for coll in (self.db["resend"]["segments"], self.db["resend"]["api_keys"]):
            if cursor in coll:
                return coll[cursor]["seq"]
        if cursor in self.db["tombstones"]:
            return self.db["tombstones"][cursor]
        raise BadRequest(self._error("resend", 422, f"The cursor {cursor!r} is invalid."))

    def resend_create_segment(self, req: Request) -> Response:
        body = self._body(req)
        name = body.get("name")
        if not isinstance(name, str) or not name:
            raise BadRequest(self._error("resend", 422, "Missing `name` field.", "missing_required_field"))
        created = self._created_now()
        sid = str(uuid.uuid4())
        rec = {"seq": self._next_seq(), "id": sid, "name": name, "created_at": resend_ts(created)}
        if isinstance(body.get("filter"), dict):
            rec["filter"] = body["filter"]
        if isinstance(body.get("audience_id"), str):
            rec["audience_id"] = body["audience_id"]
        self.db["resend"]["segments"][sid] = rec
        self.persist()
        return json_response(201, {"object": "segment", "id": sid, "name": name})

    @staticmethod
    def _segment_view(rec: dict) -> dict:
        return {k: v for k, v in rec.items() if k in ("id", "name", "audience_id", "created_at")}

    def resend_list_segments(self, req: Request) -> Response:
        return self._resend_page(req, list(self.db["resend"]["segments"].values()), self._segment_view)

    def resend_get_segment(self, req: Request, id: str) -> Response:
        rec = self.db["resend"]["segments"].get(id)
        if rec is None:
            raise BadRequest(self._error("resend", 404, "Segment not found"))
        return json_response(200, {"object": "segment", **{k: v for k, v in rec.items() if k != "seq"}})

    def _resend_rename(self, req: Request, coll: str, item_id: str, what: str, obj: str) -> Response:
        rec = self.db["resend"][coll].get(item_id)
        if rec is None:
            raise BadRequest(self._error("resend", 404, f"{what} not found"))
        name = self._body(req).get("name")
        if not isinstance(name, str) or not name:
            raise BadRequest(self._error("resend", 422, "Missing `name` field.", "missing_required_field"))
        rec["name"] = name
        self.persist()
        return json_response(200, {"object": obj, "id": item_id})

    def resend_update_segment(self, req: Request, id: str) -> Response:
        """PATCH /segments/{id}: rename (Resend's Update Segment, 2026-09)."""
        return self._resend_rename(req, "segments", id, "Segment", "segment")

    def resend_update_api_key(self, req: Request, api_key_id: str) -> Response:
        """PATCH /api-keys/{id}: rename (the token does not change)."""
        return self._resend_rename(req, "api_keys", api_key_id, "API key", "api_key")

    def resend_delete_segment(self, req: Request, id: str) -> Response:
        rec = self.db["resend"]["segments"].pop(id, None)
        if rec is None:
            raise BadRequest(self._error("resend", 404, "Segment not found"))
        self.db["tombstones"][id] = rec["seq"]
        self.persist()
        return json_response(200, {"object": "segment", "id": id, "deleted": True})

    def resend_create_api_key(self, req: Request) -> Response:
        body = self._body(req)
        name = body.get("name")
        if not isinstance(name, str) or not name:
            raise BadRequest(self._error("resend", 422, "Missing `name` field.", "missing_required_field"))
        if len(name) > 50:
            raise BadRequest(self._error("resend", 422, "The `name` must be at most 50 characters."))
        permission = body.get("permission", "full_access")
        if permission not in ("full_access", "sending_access"):
            raise BadRequest(self._error("resend", 422, "Invalid `permission`: must be `full_access` "
                                                         "or `sending_access`."))
        created = self._created_now()
        kid = str(uuid.uuid4())
        token = f"re_{rand_alnum(8)}_{rand_alnum(24)}"
        rec = {"seq": self._next_seq(), "id": kid, "name": name, "token": token, "permission": permission,
               "domain_id": body.get("domain_id"), "created_at": resend_ts(created), "last_used_at": None}
        self.db["resend"]["api_keys"][kid] = rec
        self.persist()
        return json_response(201, {"id": kid, "token": token})

    def resend_list_api_keys(self, req: Request) -> Response:
        view = lambda r: {k: r[k] for k in ("id", "name", "created_at", "last_used_at")}  # noqa: E731
        return self._resend_page(req, list(self.db["resend"]["api_keys"].values()), view)

    def resend_delete_api_key(self, req: Request, api_key_id: str) -> Response:
        rec = self.db["resend"]["api_keys"].pop(api_key_id, None)
        if rec is None:
            raise BadRequest(self._error("resend", 404, "API key not found"))
        self.db["tombstones"][api_key_id] = rec["seq"]
        self.persist()
        return json_response(200, {"object": "api_key", "id": api_key_id, "deleted": True})

    def resend_list_domains(self, req: Request) -> Response:
        """The configured ``resend_domains``, all verified (read-only; no cursors needed)."""
        data = [{"id": str(uuid.uuid5(uuid.NAMESPACE_DNS, name)), "name": name, "status": "verified",
                 "created_at": "2024-01-01 00:00:00.000+00", "region": "us-east-1",
                 "open_tracking": False, "click_tracking": False,
                 "capabilities": {"sending": "enabled", "receiving": "disabled"}}
                for name in self.config.get("resend_domains") or []]
        limit = req.query.get("limit")
        has_more = False
        if limit is not None and limit.isdigit() and 1 <= int(limit) <= 100:
            has_more, data = len(data) > int(limit), data[: int(limit)]
        return json_response(200, {"object": "list", "has_more": has_more, "data": data})
