"""The live terminal view of a build: the log scrolls above a panel of the beads at work."""
from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from rich.console import Console as RichConsole
from rich.console import ConsoleOptions, Group, RenderableType, RenderResult
from rich.live import Live
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from gastown.console import Console, RunStats

# Ledger state -> who has the bead; any other state (merged, failed, ...) means it is done.
STEPS = {"running": "polecat", "rejected": "polecat", "review": "witness",
         "merging": "refinery"}
DONE = "done"
ACTOR_STYLES = {"Polecat": "cyan", "Witness": "magenta", "Refinery": "green", "Mayor": "yellow"}
_ATTEMPT = re.compile(r"\battempt (\d+)\b")
_POLECAT = re.compile(r"(Polecat-\d+)\b")


def pick_console(*, plain: bool) -> Console:
    """The live view on a terminal; one plain line per step otherwise (CI, pipes, --plain)."""
    terminal = sys.stdout.isatty() and os.environ.get("TERM") != "dumb"
    return LiveConsole() if terminal and not plain else Console()


@dataclass
class _Bead:
    since: float  # the clock at its first transition this run
    step: str = "polecat"
    polecat: str = ""
    attempt: int = 0


@dataclass(frozen=True)
class _Row:
    polecat: str
    bead: str
    step: str
    attempt: int
    elapsed: float
    last: str


@dataclass(frozen=True)
class _Counts:
    total: int
    queued: int
    running: int
    review: int
    merging: int
    merged: int
    failed: int
    interrupted: int
    held: int

    @property
    def done(self) -> int:
        return self.merged + self.failed + self.interrupted + self.held


class LiveConsole(Console):
    """Console with a rich live panel: active beads, counters and progress, refreshed 4x/s."""

    def __init__(self, rich_console: RichConsole | None = None, *, timestamps: bool = True,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(timestamps=timestamps)
        self.rich = rich_console or RichConsole(highlight=False)
        self.clock = clock
        self.beads: dict[str, _Bead] = {}
        self.last_line: dict[str, str] = {}  # actor -> the last thing it said
        self.total = 0
        self.stats = RunStats()
        self.live: Live | None = None

    def say(self, actor: str, text: str) -> None:
        stamp = time.strftime("%H:%M:%S ") if self.timestamps else ""
        with self.lock:
            self.last_line[actor] = text
        # Printed outside self.lock: printing takes Live's lock, whose refresh takes ours.
        line = Text.assemble((stamp, "dim"), (f"[{actor}]", _actor_style(actor)), " ", text)
        self.rich.print(line, soft_wrap=True)

    def raw(self, text: str) -> None:
        self.rich.print(Text(text), soft_wrap=True)

    def start_run(self, total: int, stats: RunStats) -> None:
        with self.lock:
            self.total, self.stats = total, stats
            self.beads.clear()
        if total == 0 or self.live is not None:
            return
        self.live = Live(get_renderable=self.panel, console=self.rich, refresh_per_second=4,
                         transient=True)
        self.live.start(refresh=True)

    def transition(self, bead_id: str, state: str, note: str | None) -> None:
        note = note or ""
        with self.lock:
            bead = self.beads.setdefault(bead_id, _Bead(since=self.clock()))
            bead.step = STEPS.get(state, DONE)
            if polecat := _POLECAT.match(note):
                bead.polecat = polecat[1]
            if attempt := _ATTEMPT.search(note):
                bead.attempt = int(attempt[1])

    def end_run(self) -> None:
        live, self.live = self.live, None
        if live is not None:
            live.stop()  # transient: the panel goes, the log and then the summary stay

    def panel(self) -> RenderableType:
        """What the live view shows now (Live calls this on every refresh)."""
        with self.lock:
            rows, counts = self._rows(), self._counts()
        body = Group(_table(rows), _counters(counts), _progress(counts))
        return _Margin(Panel(body, title="gas build", title_align="left", border_style="dim"))

    def _rows(self) -> list[_Row]:
        now = self.clock()
        rows = [_Row(b.polecat, bead_id, b.step, b.attempt, now - b.since,
                     self.last_line.get(b.polecat, ""))
                for bead_id, b in self.beads.items() if b.step != DONE]
        return sorted(rows, key=lambda row: (row.polecat, row.bead))

    def _counts(self) -> _Counts:
        steps = [b.step for b in self.beads.values()]
        stats = self.stats
        with stats.lock:
            settled = (len(stats.merged), len(stats.failed), len(stats.interrupted),
                       len(stats.held))
            queued = max(0, self.total - len(stats.dispatched) - len(stats.held))
        return _Counts(self.total, queued, steps.count("polecat"), steps.count("witness"),
                       steps.count("refinery"), *settled)


class _Margin:
    """Renders a few columns short of the width. The terminal echoes Ctrl-C as `^C` after the
    panel's last line; on a full-width line that wraps, Live then moves the cursor up one line
    too few and leaves a stray border line in the log."""

    def __init__(self, renderable: RenderableType, columns: int = 3) -> None:
        self.renderable, self.columns = renderable, columns

    def __rich_console__(self, console: RichConsole, options: ConsoleOptions) -> RenderResult:
        width = max(options.max_width - self.columns, 1)
        yield from console.render(self.renderable, options.update_width(width))


def _actor_style(actor: str) -> str:
    return ACTOR_STYLES.get(actor.split("-")[0], "bold")


def _table(rows: list[_Row]) -> RenderableType:
    if not rows:
        return Text("no bead at work", style="dim")
    table = Table(box=None, expand=True, pad_edge=False, header_style="dim")
    for name in ("polecat", "bead", "step"):
        table.add_column(name, no_wrap=True)
    table.add_column("try", justify="right", no_wrap=True)
    table.add_column("elapsed", justify="right", no_wrap=True)
    table.add_column("last output", no_wrap=True, overflow="ellipsis", ratio=1)
    for row in rows:
        table.add_row(Text(row.polecat, _actor_style(row.polecat)), row.bead, row.step,
                      str(row.attempt or ""), _clock(row.elapsed), Text(row.last))
    return table


def _counters(counts: _Counts) -> Text:
    parts = [("queued", counts.queued, ""), ("running", counts.running, "cyan"),
             ("in review", counts.review, "magenta"), ("merging", counts.merging, "green"),
             ("merged", counts.merged, "bold green"), ("failed", counts.failed, "bold red")]
    if counts.interrupted:
        parts.append(("interrupted", counts.interrupted, "yellow"))
    return Text("   ").join(Text.assemble((f"{label} ", "dim"), (str(n), style if n else ""))
                            for label, n, style in parts)


def _progress(counts: _Counts) -> RenderableType:
    grid = Table.grid(expand=True, padding=(0, 1))
    grid.add_column(ratio=1)
    grid.add_column(no_wrap=True, justify="right")
    bar = ProgressBar(total=max(counts.total, 1), completed=counts.done)
    grid.add_row(bar, f"{counts.done}/{counts.total} done")
    return grid


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(max(seconds, 0)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
