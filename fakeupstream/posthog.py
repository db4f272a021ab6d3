"""PostHog capture: POST /i/v0/e/ (and /batch/, /capture/). No OpenAPI document exists;
the contract is posthog.com/docs/api/capture."""

from __future__ import annotations

import gzip
import json
import uuid
from typing import Any

from .common import Request, Response, json_response


# -- the answers every route shares (the server calls these by provider)
def capture_body(req: Request) -> Any:
    body = req.body
    if req.headers.get("content-encoding", "").lower() == "gzip" or body[:2] == b"\x1f\x8b":
        body = gzip.decompress(body)
    return json.loads(body) if body else {}


def token_of(req: Request) -> str | None:
    """A bearer token, else the capture body's ``api_key`` (or ``token``)."""
    token = req.token()
    if token is None:
        try:
            body = capture_body(req)
            token = body.get("api_key") or body.get("token") if isinstance(body, dict) else None
        except ValueError:
            token = None
    return token


def error(status: int, message: str, name: str | None = None) -> Response:
    return json_response(status, {"type": "server_error" if status >= 500 else "validation_error",
                                  "code": name or "error", "detail": message, "attr": None})


def unauthorized(token: str | None) -> Response:
    return json_response(401, {"type": "authentication_error", "code": "invalid_api_key",
                               "detail": "Project API key invalid. You can find your project API key "
                                         "in your PostHog project settings.", "attr": None})




#: (method, path pattern, handler method name); ``{name}`` matches one path segment
ROUTES = [
    ("POST", "/i/v0/e/", "posthog_capture"),
    ("POST", "/i/v0/e", "posthog_capture"),
    ("POST", "/batch/", "posthog_capture"),
    ("POST", "/capture/", "posthog_capture"),
    ("POST", "/flags", "posthog_flags"),  # key check: 401 for an unknown key (see _auth_error)
]


class PostHogApi:
    """Route handlers; mixed into the server."""

    # ================================================================= PostHog
    def posthog_flags(self, req: Request) -> Response:
        return json_response(200, {"flags": {}, "errorsWhileComputingFlags": False, "requestId": str(uuid.uuid4())})

    def posthog_capture(self, req: Request) -> Response:
        try:
            body = capture_body(req)
        except (ValueError, OSError):
            return json_response(400, {"type": "validation_error", "code": "invalid_payload",
                               "detail": "Malformed request data", "attr": None})
        if not isinstance(body, dict):
            return json_response(400, {"type": "validation_error", "code": "invalid_payload",
                               "detail": "Malformed request data", "attr": None})
        events = body.get("batch") if isinstance(body.get("batch"), list) else [body]
        store = self.db["posthog"]
        for ev in events:
            if not isinstance(ev, dict) or not ev.get("event"):
                return json_response(400, {"type": "validation_error", "code": "invalid_payload",
                                   "detail": "Invalid payload: event name is required", "attr": "event"})
        for ev in events:
            props = ev.get("properties") if isinstance(ev.get("properties"), dict) else {}
            store["count"] += 1
            store["events"].append({"event": ev["event"],
                                    "distinct_id": ev.get("distinct_id", props.get("distinct_id")),
                                    "properties": props, "timestamp": ev.get("timestamp")})
        max_events = int(self.config.get("posthog_max_events") or 0)
        if len(store["events"]) > max_events:
            del store["events"][: len(store["events"]) - max_events]
        self.persist()
        return json_response(200, {"status": "Ok"})

