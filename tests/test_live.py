"""The live view: what its panel shows as a build goes, and that the log still scrolls above."""
from __future__ import annotations

import io
import re
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console as RichConsole

from gastown.console import Console, RunStats
from gastown.live import LiveConsole, pick_console
from tests.conftest import TWO_BEADS, make_repo

WIDTH = 100


class Clock:
    """A hand-moved monotonic clock, so elapsed times are exact without sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def out() -> io.StringIO:
    return io.StringIO()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def live(out: io.StringIO, clock: Clock) -> Iterator[LiveConsole]:
    rich = RichConsole(file=out, force_terminal=True, color_system=None, width=WIDTH)
    console = LiveConsole(rich_console=rich, clock=clock)
    yield console
    console.end_run()


def shown(console: LiveConsole, width: int = WIDTH) -> str:
    """The panel as text, the way a terminal `width` columns wide shows it."""
    screen = RichConsole(record=True, width=width, file=io.StringIO())
    screen.print(console.panel())
    return screen.export_text()


def row(text: str, bead: str) -> str:
    [line] = [line for line in text.splitlines() if f" {bead} " in line]
    return line


def start(console: LiveConsole, stats: RunStats, bead: str, polecat: str) -> None:
    """What run_bead and the first attempt do for a bead, in order."""
    stats.start(bead)
    console.say(polecat, f'START {bead} "title of {bead}" from 2c81ac27dc')
    console.transition(bead, "running", f"{polecat} attempt 1")


def settle(console: LiveConsole, stats: RunStats, bead: str, merged: bool) -> None:
    console.transition(bead, "merged" if merged else "failed",
                       "into staging at 1bf9f067731d" if merged else "gave up after 2 attempt(s)")
    stats.finish(bead, merged, None if merged else "check failed")


def test_active_beads_show_polecat_step_attempt_elapsed_and_last_line(
        live: LiveConsole, clock: Clock) -> None:
    stats = RunStats()
    live.start_run(3, stats)
    start(live, stats, "sec-1", "Polecat-01")
    start(live, stats, "sec-2", "Polecat-02")
    clock.now += 5
    live.say("Polecat-01", "RUN python3 -m unittest -q -> pass")
    live.transition("sec-2", "running", "attempt 1 failed")
    live.say("Polecat-02", "RETRY sec-2 (attempt 2/2): check failed (exit 1)")
    live.transition("sec-2", "running", "Polecat-02 attempt 2")
    clock.now += 70
    live.say("Polecat-02", "COMPLETE -> sec-2 moved to witness")
    live.transition("sec-2", "review", "attempt 2")

    text = shown(live)
    assert re.search(r"Polecat-01 +sec-1 +polecat +1 +1:15 +RUN python3 -m unittest -q -> pass",
                     row(text, "sec-1")), text
    assert re.search(r"Polecat-02 +sec-2 +witness +2 +1:15 +COMPLETE -> sec-2 moved to witness",
                     row(text, "sec-2")), text

    live.transition("sec-2", "merging", "attempt 2 approved")
    assert "refinery" in row(shown(live), "sec-2")


def test_settled_beads_leave_the_table_and_are_counted(live: LiveConsole) -> None:
    stats = RunStats()
    live.start_run(5, stats)
    for n in (1, 2, 3):
        start(live, stats, f"b{n}", f"Polecat-0{n}")
    settle(live, stats, "b1", merged=True)
    settle(live, stats, "b2", merged=False)
    start(live, stats, "b4", "Polecat-01")
    live.transition("b3", "review", "attempt 1")

    text = shown(live)
    assert " b1 " not in text and " b2 " not in text
    assert [line.split()[2] for line in text.splitlines() if "Polecat-0" in line] == ["b4", "b3"]
    assert re.search(r"queued 1 +running 1 +in review 1 +merging 0 +merged 1 +failed 1", text), text
    assert "2/5 done" in text

    settle(live, stats, "b3", merged=True)
    settle(live, stats, "b4", merged=True)
    text = shown(live)
    assert "no bead at work" in text
    assert re.search(r"queued 1 +running 0 +in review 0 +merging 0 +merged 3 +failed 1", text)
    assert "4/5 done" in text


def test_last_line_is_trimmed_to_the_width(live: LiveConsole) -> None:
    stats = RunStats()
    live.start_run(1, stats)
    start(live, stats, "sec-1", "Polecat-01")
    live.say("Polecat-01", "TEXT " + "very long agent output " * 20)
    text = shown(live, width=60)
    # 3 columns short of the width, so an echoed ^C does not wrap under the panel
    assert max(len(line) for line in text.splitlines()) == 57, text
    assert row(text, "sec-1").rstrip(" │").endswith("…")


def test_said_lines_scroll_above_with_timestamps_and_summary_follows(
        live: LiveConsole, out: io.StringIO) -> None:
    stats = RunStats()
    live.say("Mayor", "Dispatching 1 Beads, at most 1 at once")
    live.start_run(1, stats)
    start(live, stats, "sec-1", "Polecat-01")
    live.say("Witness", "APPROVE -> sec-1 moves to refinery (+1 -1 in 1 file(s))")
    settle(live, stats, "sec-1", merged=True)
    live.end_run()
    live.raw("[Gas Town] Session complete")

    text = out.getvalue()
    stamp = r"\d\d:\d\d:\d\d "
    for line in (r"\[Mayor\] Dispatching 1 Beads", r'\[Polecat-01\] START sec-1 "title of sec-1"',
                 r"\[Witness\] APPROVE -> sec-1 moves to refinery"):
        assert re.search(stamp + line, text), text
    assert "\x1b[?25h" in text  # the cursor is shown again
    assert text.rstrip().endswith("[Gas Town] Session complete")  # the panel did not stay


def test_end_run_restores_the_terminal_after_an_interrupt(live: LiveConsole,
                                                          out: io.StringIO) -> None:
    stdout = sys.stdout
    with pytest.raises(KeyboardInterrupt):
        live.start_run(2, RunStats())
        try:
            assert sys.stdout is not stdout  # stray prints go above the panel meanwhile
            raise KeyboardInterrupt
        finally:
            live.end_run()
    assert sys.stdout is stdout
    assert live.live is None and not live.rich._live_stack
    assert "\x1b[?25h" in out.getvalue()  # the cursor is shown again
    live.end_run()  # a second end_run is harmless


def test_nothing_to_run_starts_no_live_view(live: LiveConsole, out: io.StringIO) -> None:
    live.start_run(0, RunStats())
    assert live.live is None
    live.end_run()
    assert out.getvalue() == ""


def test_many_threads_at_once(live: LiveConsole, out: io.StringIO) -> None:
    stats = RunStats()
    live.start_run(40, stats)

    def bead(n: int) -> None:
        polecat = f"Polecat-{n % 8 + 1:02d}"
        start(live, stats, f"t{n}", polecat)
        for step in ("review", "merging"):
            live.say(polecat, f"{step} t{n}")
            live.transition(f"t{n}", step, "attempt 1")
            shown(live)
        settle(live, stats, f"t{n}", merged=True)

    threads = [threading.Thread(target=bead, args=(n,)) for n in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    live.end_run()
    assert "40/40 done" in shown(live)
    assert all(f"START t{n} " in out.getvalue() for n in range(40))


@pytest.mark.parametrize(("tty", "plain", "term", "live"), [
    (True, False, "xterm-256color", True),
    (True, True, "xterm-256color", False),
    (True, False, "dumb", False),
    (False, False, "xterm-256color", False),
])
def test_live_view_only_on_a_real_terminal(monkeypatch: pytest.MonkeyPatch, tty: bool,
                                           plain: bool, term: str, live: bool) -> None:
    stream = io.StringIO()
    monkeypatch.setattr(stream, "isatty", lambda: tty)
    monkeypatch.setattr(sys, "stdout", stream)
    monkeypatch.setenv("TERM", term)
    console = pick_console(plain=plain)
    assert isinstance(console, LiveConsole) is live
    assert isinstance(console, Console)


def test_build_without_a_terminal_prints_plain_lines(tmp_path: Path, gas) -> None:
    repo = make_repo(tmp_path / "repo", {"Gasfile.yaml": TWO_BEADS})
    result = gas(repo, "build")
    assert result.code == 0, result
    assert "\x1b[" not in result.out  # no escape sequences, no panel
    assert re.search(r"^\d\d:\d\d:\d\d \[Polecat-01\] START a1 ", result.out, re.M), result
    assert re.search(r"^\d\d:\d\d:\d\d \[Refinery\] MERGE gas/a2 -> staging", result.out, re.M)
    assert "[Gas Town] Session complete" in result.out
