"""The warm pool's finishing renames, each request checked against the providers' OpenAPI copies
(tests/api-specs via `respx_spec`): a rename the spec does not document fails here."""

from __future__ import annotations

import json

import httpx
from cloudmock import RESEND, FakeClock, keyed

from mk0r_tui.core.config import load_settings
from mk0r_tui.core.ledger import ResourceRow
from mk0r_tui.providers.resend import API_KEY, SEGMENT, ResendProvider

SEG = "78261eea-8f8b-4381-83c6-79fa7120f1cf"
KEY = "dacf4072-4119-4d88-932f-6202748ac7c8"


def _row(kind: str, remote_id: str, name: str) -> ResourceRow:
    return ResourceRow(None, None, "resend", kind, name, remote_id, None, "created")


async def test_resend_segment_and_key_renames_are_documented_requests(respx_spec):
    """Resend documents `PATCH /segments/{id}` (Update Segment, 2026-09) and `PATCH /api-keys/{id}`;
    both carry only `name`, and neither answer changes an id the `.env` holds."""
    provider = ResendProvider(settings=load_settings(resend_requests_per_second=1000),
                              credentials=keyed(RESEND_PROVISIONING_KEY="re_provisioning_key_0123456789"),
                              clock=FakeClock().clock)
    segment = respx_spec.patch(f"{RESEND}/segments/{SEG}").mock(
        return_value=httpx.Response(200, json={"object": "segment", "id": SEG}))
    key = respx_spec.patch(f"{RESEND}/api-keys/{KEY}").mock(
        return_value=httpx.Response(200, json={"object": "api_key", "id": KEY}))
    try:
        seg_change = await provider.pool_rename(_row(SEGMENT, SEG, "mk0r-pool-abc1234 Users"), "mk0r-app1 Users")
        key_change = await provider.pool_rename(_row(API_KEY, KEY, "mk0r-pool-abc1234"), "mk0r-app1")
    finally:
        await provider.aclose()
    assert segment.call_count == 1 and key.call_count == 1
    assert json.loads(segment.calls.last.request.content) == {"name": "mk0r-app1 Users"}
    assert json.loads(key.calls.last.request.content) == {"name": "mk0r-app1"}
    assert seg_change is not None and seg_change.remote_id == SEG and not seg_change.env
    assert key_change is not None and key_change.remote_id == KEY and not key_change.env
