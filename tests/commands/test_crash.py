"""`kill -9` of a real `gas build` at many points, then `gas build` again: the run completes, no
bead is merged twice, no merged work is lost, and the ledger agrees with the integration branch.

Each case starts `python -m gastown build --plain` on six beads (a DAG with needs, a polecat
check, a CI command) in a process group of its own and SIGKILLs the whole group right after the
k-th move of a ref (or as soon as git's lock on a ref appears), watched by reading files in a
loop: no sleep decides when. The machinery (and the invariants) are bench/chaos.py's, which
does the same at random points.
"""
from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from bench.chaos import (
    BUILD_TIMEOUT,
    INTO,
    LEDGER,
    Build,
    KillPoint,
    Round,
    after_moves,
    check,
    crash_round,
    history,
    kill,
    leftovers,
    make_scenario,
    run_build,
    start_build,
    while_exists,
)

# A clean build records 25 ledger transitions: its creation, then running, review, merging
# and merged for each of the six beads (several at once may share a commit: a kill point is
# the move that records the k-th). These kill points span it, the first and last included.
LEDGER_KILLS = (1, 3, 5, 8, 11, 14, 17, 20, 23, 25)
# The integration branch moves once when it is created, then once per merge (6 merges).
STAGING_KILLS = (2, 4, 7)
UNFINISHED = frozenset({"running", "review", "rejected", "merging", "interrupted"})
# A watcher starved of CPU can be late for a window a few milliseconds wide (or for the last
# transition); such a round proves nothing, and is run again, this many times at most.
TRIES = 3


def _env() -> dict[str, str]:
    return dict(os.environ)  # hermetic: tests/conftest.py pins git's config and identity


def crash(tmp_path: Path, kill_at: KillPoint, *, landed: Callable[[Round], bool] | None = None,
          on_kill: Callable[[Path], None] | None = None) -> Round:
    """A crash round whose kill landed (in the window `landed` names), within TRIES rounds."""
    for n in range(1, TRIES + 1):
        result = crash_round(tmp_path / f"try-{n}", _env(), kill_at, on_kill)
        if result.killed_code == -signal.SIGKILL and (landed is None or landed(result)):
            return result
    pytest.fail(f"the kill never landed where it should in {TRIES} rounds: {result.killed}")


def assert_survived(result: Round) -> None:
    assert result.code == 0, result.output
    assert result.verdict.all() == [], result.output
    assert result.orphans == [], "processes of the killed build still run"


def assert_restarts_noted(result: Round) -> None:
    """A bead caught mid-way restarts cleanly and its history says so; a bead whose merge
    had landed says it was recovered from its trailer."""
    for bead, state in result.killed.states.items():
        notes = [entry.get("note") or "" for entry in history(result.repo, bead)]
        if bead in result.killed.unrecorded():
            assert any(n.startswith("recovered from its Gas-Bead trailer") for n in notes), notes
        elif state in UNFINISHED:
            assert any(n.startswith("restarted cleanly from ") for n in notes), (bead, notes)


@pytest.mark.parametrize("moves", LEDGER_KILLS)
def test_kill_at_a_ledger_transition_then_build_again(tmp_path: Path, moves: int) -> None:
    result = crash(tmp_path, after_moves(LEDGER, moves))
    assert result.killed.transitions >= moves
    assert_survived(result)
    assert_restarts_noted(result)


@pytest.mark.parametrize("moves", STAGING_KILLS)
def test_kill_after_the_merge_landed_before_its_record(tmp_path: Path, moves: int) -> None:
    """The refinery moved the integration branch; the `merged` record was never written."""
    result = crash(tmp_path, after_moves(INTO, moves), landed=lambda r: bool(r.killed.unrecorded()))
    recovered = len(result.killed.unrecorded())
    assert f"Recovered {recovered} merged bead(s) from {INTO}" in result.output
    assert_survived(result)
    assert_restarts_noted(result)


@pytest.mark.parametrize("ref", [LEDGER, INTO])
def test_kill_while_git_holds_a_ref_lock(tmp_path: Path, ref: str) -> None:
    """A git killed between taking a ref's lock and renaming it leaves `<ref>.lock` behind,
    and git refuses to move the ref while it is there."""
    lock = f".git/refs/heads/{ref}.lock"
    left: list[bool] = []
    result = crash(tmp_path, while_exists(lock), landed=lambda r: left[-1],
                   on_kill=lambda repo: left.append((repo / lock).exists()))
    assert_survived(result)
    assert_restarts_noted(result)


def test_a_lock_left_on_a_bead_branch(tmp_path: Path) -> None:
    """A git killed while it moved a bead's branch (its worktree being made, its work being
    committed) leaves `gas/<id>.lock`. A bead branch keeps no reflog, so git holds that lock
    too briefly for a watcher to kill inside it reliably: the lock is left as the kill
    lands, and the next build clears it and runs the bead."""
    lock = ".git/refs/heads/gas/n2.lock"

    def leave_lock(repo: Path) -> None:
        (repo / lock).parent.mkdir(parents=True, exist_ok=True)
        (repo / lock).write_text("")

    result = crash(tmp_path, after_moves(LEDGER, 8), on_kill=leave_lock)
    [removed] = [line for line in result.output.splitlines()
                 if "Removed git lock(s) a killed build left: " in line]
    assert "refs/heads/gas/n2.lock" in removed.split(": ", 1)[1].split(", ")
    assert_survived(result)
    assert_restarts_noted(result)


def test_kill_while_doit_writes_its_cache(tmp_path: Path) -> None:
    """doit rewrites .gastown/doit-cache.json in place when a build ends; a kill between the
    truncation and the write leaves it empty, and every later build must still run."""
    def torn(repo: Path) -> None:
        (repo / ".gastown" / "doit-cache.json").write_text("")

    assert_survived(crash(tmp_path, after_moves(LEDGER, 11), on_kill=torn))


def test_the_next_build_stops_what_a_killed_build_left_running(tmp_path: Path) -> None:
    env = _env()
    repo = make_scenario(tmp_path / "repo", env)
    hang = tmp_path / "hang"
    hang.mkdir()
    killed = start_build(repo, {**env, "CHAOS_HANG": str(hang)}, tmp_path / "killed.log")
    try:
        orphan = _await_pid(killed, hang / "b1")  # b1's polecat works, and never ends by itself
        kill(killed)
        code, output = run_build(repo, env, tmp_path / "rerun.log")
        assert code == 0, output
        assert orphan not in leftovers(killed.mark)
        assert check(repo, env).all() == []
    finally:
        for pid in leftovers(killed.mark):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _await_pid(build: Build, path: Path) -> int:
    while not path.exists():
        assert build.proc.poll() is None, build.output
        assert time.monotonic() - build.started < BUILD_TIMEOUT, f"{path} never appeared"
    return int(path.read_text())
