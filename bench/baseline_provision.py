"""The baseline of bench/single_session.py: the requests `mk0r-tui provision` sends for one session,
in ~40 lines of httpx and asyncio.gather, importing nothing of mk0r. Run as a whole process:
    python bench/baseline_provision.py <fake base url> <slug>
Resend's second call waits for its 2 req/s (the product's default limit); Neon's operations are
polled as often as the product polls them (every max(20 ms, 5 % of the time waited so far))."""
import asyncio
import json
import sys
import time

import httpx


async def main(base: str, slug: str) -> None:
    name, auth = f"mk0r-{slug}", lambda k: {"Authorization": f"Bearer {k}"}
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        async def neon():
            r = (await http.post("/neon/api/v2/projects", headers=auth("bench-neon-key"),
                                 json={"project": {"name": name, "pg_version": 17, "region_id": "aws-us-east-2"}})).json()
            pid, started = r["project"]["id"], time.monotonic()
            while True:
                ops = (await http.get(f"/neon/api/v2/projects/{pid}/operations", params={"limit": 100},
                                      headers=auth("bench-neon-key"))).json()["operations"]
                if all(o["status"] in ("finished", "skipped") for o in ops):
                    return r["connection_uris"][0]["connection_uri"]
                await asyncio.sleep(max(0.02, 0.05 * (time.monotonic() - started)))

        async def resend():
            t0 = time.monotonic()
            seg = (await http.post("/resend/segments", headers=auth("bench-resend-key"), json={"name": name})).raise_for_status()
            await asyncio.sleep(max(0.0, 0.5 - (time.monotonic() - t0)))  # 2 requests per second
            key = await http.post("/resend/api-keys", headers=auth("bench-resend-key"),
                                  json={"name": name, "permission": "sending_access"})
            return seg.json()["id"], key.raise_for_status().json()["token"]

        async def github():
            login = (await http.get("/github/user", headers=auth("bench-github-token"))).json()["login"]
            repo = await http.post("/github/user/repos", headers=auth("bench-github-token"),
                                   json={"name": name, "private": True, "auto_init": False})
            return login, repo.raise_for_status().json()["html_url"]

        async def posthog():
            await http.post("/posthog/flags", params={"v": "2"}, json={"api_key": "phc_bench", "distinct_id": name})
            return (await http.post("/posthog/i/v0/e/", json={"api_key": "phc_bench", "event": "x", "distinct_id": name})).status_code

        print(json.dumps([str(x) for x in await asyncio.gather(neon(), resend(), github(), posthog())]))


asyncio.run(main(sys.argv[1], sys.argv[2]))
