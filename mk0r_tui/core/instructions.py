"""The agent's instructions file (`AGENTS.md`, with `CLAUDE.md` pointing to it).

It names the services that were provisioned for the app, the env vars that carry them and
their limits, and tells the agent to use them instead of asking for credentials. It is built
from the same report as the `.env` and never holds a secret value: only variable names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

from mk0r_tui.core.models import ProviderResult, Slot, Status


@dataclass(frozen=True, slots=True)
class ServiceDoc:
    service: str
    purpose: str
    limits: str


SERVICE_DOCS: Mapping[str, ServiceDoc] = {
    "neon": ServiceDoc("Postgres (Neon)", "the app's own database; connect with DATABASE_URL", "a dedicated Neon project; free-tier limits apply"),
    "local-postgres": ServiceDoc("Postgres (local)", "the app's own database; connect with DATABASE_URL", "a dedicated database and role; only this app's role can connect"),
    "resend": ServiceDoc("Email (Resend)", "send transactional email; add contacts to the segment", "the key can only send email (sending_access); it cannot read or manage anything"),
    "github": ServiceDoc("Git repository (GitHub)", "push the app's code to origin", "private repository; never commit .env"),
    "local-git": ServiceDoc("Git repository (local)", "push the app's code to origin", "a local bare repository; never commit .env"),
    "posthog": ServiceDoc("Analytics (PostHog)", "tag every captured event with VITE_POSTHOG_APP_ID", "a shared project: always send the app id as a property"),
}

CLAUDE_MD = "# Instructions\n\nRead and follow [AGENTS.md](AGENTS.md): it lists the services already provisioned for this app.\n"


def render_agents_md(results: Iterable[ProviderResult], env: Mapping[str, str]) -> str:
    provisioned = [r for r in results if r.status is Status.OK and r.slot is not Slot.TARGET]
    missing = [r for r in results if r.status in (Status.SKIPPED, Status.FAILED) and r.slot is not Slot.TARGET]
    lines = [
        "# Services already provisioned for this app",
        "",
        "These services exist and their credentials are in `.env` (loaded into the environment).",
        "Use them. Do not ask the user for API keys, database URLs or tokens for these services,",
        "and never print, log or commit the values: `.env` is in `.gitignore`.",
        "",
        "| service | env vars | what it is for | limits |",
        "| --- | --- | --- | --- |",
    ]
    for result in provisioned:
        doc = SERVICE_DOCS.get(result.name, ServiceDoc(result.name, result.slot.value, ""))
        names = ", ".join(f"`{k}`" for k in result.env if k in env)
        lines.append(f"| {doc.service} | {names} | {doc.purpose} | {doc.limits} |")
    if missing:
        lines += ["", "## Not available", ""]
        for result in missing:
            why = result.error if result.status is Status.FAILED else result.note or result.error or "not configured"
            lines.append(f"- {result.slot.value}: not provisioned ({result.status.value}: {why}). Do not invent credentials for it.")
    return "\n".join(lines) + "\n"
