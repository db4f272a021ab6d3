"""One panel per provider of the selected session: status, timing, attempts, resources, error."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.content import Content
from textual.reactive import reactive
from textual.widgets import Static

from mk0r_tui.core.models import Status
from mk0r_tui.tui.state import PanelState, ResourceView
from mk0r_tui.tui.widgets.glyphs import STATUS_COLOUR, format_duration, glyph
from mk0r_tui.tui.widgets.latency_history import LatencyHistory

_RESOURCE_STATE_STYLE = {
    "live": "$success",
    "pending": "$warning",
    "deleting": "$accent",
    "gone": "$text-disabled strike",
    "failed": "$error",
}


def status_line(panel: PanelState, now: float) -> Content:
    """`⠹ running 3.2 s`, `↻ retrying 2/5 1.4 s`, `✓ ok 812 ms`, `✗ failed 30.0 s`..."""
    label = panel.status.value
    if panel.status is Status.RETRYING and panel.retry is not None:
        label = f"retrying {panel.retry[0]}/{panel.retry[1]}"
    timing = format_duration(panel.elapsed_s(now))
    text = f"{glyph(panel.status, now)} {label}" + (f" {timing}" if timing else "")
    return Content.styled(text, f"bold {STATUS_COLOUR[panel.status]}")


def _resource_line(view: ResourceView) -> Content:
    ref = view.ref
    parts: list[str | tuple[str, str]] = [
        (f"{ref.kind} ", "$text-muted"),
        (ref.name, _RESOURCE_STATE_STYLE.get(view.state, "")),
    ]
    if ref.remote_id and ref.remote_id != ref.name:
        parts += [("  id ", "$text-muted"), ref.remote_id]
    if view.state != "live":
        parts += [("  ", ""), (view.state, _RESOURCE_STATE_STYLE.get(view.state, ""))]
    if view.handoff:
        parts += [("  ", ""), (view.handoff, "bold $accent")]
    line = Content.assemble(*parts)
    if ref.url and ref.url.startswith(("http://", "https://")):
        line = line.append(Content.assemble(("  ", ""), (ref.url, f"link {ref.url} underline")))
    return line


def _handoff_link(view: ResourceView) -> Content | None:
    """The claim or invitation link the recipient opens, on its own line to copy."""
    link = view.handoff_url
    if not link or not link.startswith("https://"):
        return None
    return Content.assemble(("  link to send: ", "$text-muted"), (link, f"link {link} underline"))


def panel_title(panel: PanelState) -> str:
    return f"{panel.provider} · {panel.slot.value}" + (" · from pool" if panel.from_pool else "")


def panel_body(panel: PanelState, now: float, extra: tuple[Content, ...] = ()) -> Content:
    """Everything below the title: the latest step, attempts, resources, what the provider's
    service holds now (`extra`: e.g. the caught mail), note and the full error."""
    lines: list[Content] = []
    facts = []
    if panel.attempts:
        facts.append(f"{panel.attempts} attempt{'s' if panel.attempts != 1 else ''}")
    if panel.active and panel.message:
        facts.append(panel.message)
    if facts:
        lines.append(Content.styled(" · ".join(facts), "$text-muted"))
    for view in panel.resources:
        lines.append(_resource_line(view))
        link = _handoff_link(view)
        if link is not None:
            lines.append(link)
    lines.extend(extra)
    if panel.note and panel.status is not Status.FAILED:
        lines.append(Content.styled(panel.note, "$text-muted italic"))
    if panel.pool_note:
        failed = "failed" in panel.pool_note
        lines.append(Content.styled(panel.pool_note, "$text-warning" if failed else "$text-muted"))
    if panel.error:
        lines.append(Content.styled(panel.error, "$text-error"))
    if not lines:
        lines.append(Content.styled("waiting for the orchestrator" if panel.status is Status.WAITING else "", "$text-muted"))
    return Content("\n").join(lines)


def status_class(status: Status) -> str:
    return f"-{status.name.lower()}"


_STATUS_CLASSES = frozenset(status_class(status) for status in Status)


class ProviderPanel(Vertical):
    """Renders a `PanelState`; `tick(now)` moves the spinner and elapsed time while it runs.

    It owns no state of its own: the app assigns a new immutable snapshot on every change.
    It is built with its content, classes and title, so mounting it styles each node once.
    """

    panel: reactive[PanelState | None] = reactive(None, init=False)

    def __init__(
        self, panel: PanelState, *, now: float, history: tuple[float, ...] = (),
        name: str | None = None, id: str | None = None, classes: str | None = None, disabled: bool = False,
    ) -> None:
        classes = " ".join(filter(None, (classes, status_class(panel.status))))
        super().__init__(name=name, id=id, classes=classes, disabled=disabled)
        self._now = now
        self.set_reactive(ProviderPanel.panel, panel)
        self.border_title = panel_title(panel)
        self._status = Static(status_line(panel, now), classes="panel-status")
        self._body = Static(panel_body(panel, now), classes="panel-body")
        self._history_widget = LatencyHistory(history, classes="panel-history")
        #: lines about what the service holds now (the dashboard fills them, e.g. caught mail)
        self.extra: tuple[Content, ...] = ()
        self.extra_stamp: object = None

    def compose(self) -> ComposeResult:
        yield self._status
        yield self._body
        yield self._history_widget

    def watch_panel(self) -> None:
        self._render_panel()

    def tick(self, now: float) -> None:
        self._now = now
        if self.panel is not None and self.panel.active:
            self._status.update(status_line(self.panel, now))

    def show_extra(self, lines: tuple[Content, ...], stamp: object = None) -> None:
        self.extra_stamp = stamp
        if lines != self.extra:
            self.extra = lines
            if self.panel is not None:
                self._body.update(panel_body(self.panel, self._now, self.extra))

    def show_history(self, latencies_ms: tuple[float, ...]) -> None:
        self._history_widget.latencies_ms = latencies_ms

    def _render_panel(self) -> None:
        panel = self.panel
        if panel is None:
            return
        self.border_title = panel_title(panel)
        wanted = status_class(panel.status)
        if not self.has_class(wanted):
            self.set_classes((self.classes - _STATUS_CLASSES) | {wanted})
        self._status.update(status_line(panel, self._now))
        self._body.update(panel_body(panel, self._now, self.extra))
