"""One bead's life: polecat -> witness -> refinery, with retries, each step in the ledger."""
from __future__ import annotations

import contextlib
import time
import traceback
from pathlib import Path
from typing import Any

from gastown import git, ledger, polecat, runners, witness, worktrees
from gastown.bead import Bead, State
from gastown.floor import Floor


def run_bead(floor: Floor, bead: Bead) -> bool:
    """The doit action for one bead: True when it merged."""
    slot = floor.slots.take()
    actor = f"Polecat-{slot:02d}"
    floor.stats.start(bead.id)
    merged, reason = False, None
    try:
        merged, reason = _lifecycle(floor, bead, actor)
    except Exception as exc:  # a bug or a broken repo must fail this bead, not the whole run
        reason = f"gastown error: {type(exc).__name__}: {exc}"
        _crash_note(floor, bead, traceback.format_exc())
        _safe_fail(floor, bead, reason)
    finally:
        floor.stats.finish(bead.id, merged, reason)
        floor.slots.give(slot)
    return merged


def _lifecycle(floor: Floor, bead: Bead, actor: str) -> tuple[bool, str | None]:
    base = floor.refinery.tip()
    branch = worktrees.branch_name(bead.id)
    tree = worktrees.add(floor.root, bead.id, base, branch=branch)
    floor.console.say(actor, f"START {bead.id} \"{bead.title}\" from {base[:10]}")
    feedback: str | None = None
    reason: str | None = None
    attempts = bead.roles["polecat"].max_attempts
    for attempt in range(1, attempts + 1):
        if floor.stopping.is_set():
            return False, _interrupted(floor, bead)
        if attempt > 1:
            floor.stats.retry()
            floor.console.say(actor, f"RETRY {bead.id} (attempt {attempt}/{attempts}): {reason}")
            _prepare_retry(floor, bead, tree, base)
        done, reason, feedback = _attempt(floor, bead, tree, base, attempt, feedback, actor)
        if done is not None:
            return done, reason
    reason = f"gave up after {attempts} attempt(s): {reason}"
    floor.record(bead, State.FAILED, reason, reason=reason)
    return False, reason


def _attempt(floor: Floor, bead: Bead, tree: Path, base: str, attempt: int,
             feedback: str | None, actor: str) -> tuple[bool | None, str | None, str | None]:
    """(True|False when the bead is settled else None, reason, feedback for the next try)."""
    floor.record(bead, State.RUNNING, f"{actor} attempt {attempt}", reason=None,
                 attempts=_attempts(floor, bead, {"n": attempt, "started": ledger.now(),
                                                  "polecat": actor}))
    clock = time.monotonic()
    work = polecat.work(floor, bead, tree, base, attempt, feedback, actor)
    times = {"polecat_s": _since(clock)}
    if floor.stopping.is_set():
        return False, _interrupted(floor, bead), None
    if not work.ok:
        _end_attempt(floor, bead, State.RUNNING, "failed", work.reason, f"attempt {attempt} failed",
                     times)
        return None, work.reason, work.feedback
    floor.console.say(actor, f"COMPLETE -> {bead.id} moved to witness")
    floor.record(bead, State.REVIEW, f"attempt {attempt}")
    clock = time.monotonic()
    verdict = witness.review(floor, bead, tree, base)
    times["witness_s"] = _since(clock)
    if floor.stopping.is_set():
        return False, _interrupted(floor, bead), None
    if not verdict.approved:
        floor.stats.reject(bead.id)
        floor.console.say("Witness", f"REJECT {bead.id} \"{verdict.reason}\"")
        _end_attempt(floor, bead, State.REJECTED, "rejected", verdict.reason, verdict.reason,
                     times)
        return None, verdict.reason, f"The witness rejected your work: {verdict.reason}"
    floor.console.say("Witness", f"APPROVE -> {bead.id} moves to refinery ({verdict.stat()})")
    _end_attempt(floor, bead, State.MERGING, "approved", None, f"attempt {attempt} approved", times)
    return _refine(floor, bead, tree), None, None


def _interrupted(floor: Floor, bead: Bead) -> str:
    reason = "the build was interrupted; the next build restarts this bead"
    floor.stats.interrupt(bead.id)
    floor.record(bead, State.INTERRUPTED, reason, reason=reason)
    return reason


def _since(clock: float) -> float:
    return round(time.monotonic() - clock, 3)


def _refine(floor: Floor, bead: Bead, tree: Path) -> bool:
    branch = worktrees.branch_name(bead.id)
    clock = time.monotonic()
    result = floor.refinery.merge(bead, branch)
    timings = {"refinery_s": _since(clock), "ci_s": round(result.ci_seconds, 3)}
    into = floor.plan.gasfile.project.into
    if not result.ok and floor.stopping.is_set():
        _interrupted(floor, bead)
        return False
    if not result.ok:
        floor.console.say("Refinery", f"FAIL {bead.id}: {result.reason}; {into} unchanged")
        floor.record(bead, State.FAILED, result.reason, reason=result.reason, timings=timings)
        return False
    assert result.commit is not None
    floor.console.say("Refinery", f"MERGE {branch} -> {into} ({result.commit[:10]})")
    floor.record(bead, State.MERGED, f"into {into} at {result.commit[:12]}",
                 merge_commit=result.commit, into=into, reason=None, timings=timings)
    worktrees.remove(floor.root, tree)
    git.run("branch", "-D", branch, cwd=floor.root, check=False)
    return True


def _prepare_retry(floor: Floor, bead: Bead, tree: Path, base: str) -> None:
    if not runners.get(bead.roles["polecat"].runner or "command").keeps_work:
        worktrees.reset(tree, base)


def _attempts(floor: Floor, bead: Bead, entry: dict[str, Any]) -> list[dict[str, Any]]:
    record = floor.ledger.get(bead.id) or {}
    return [*record.get("attempts", []), entry]


def _end_attempt(floor: Floor, bead: Bead, state: State, outcome: str, reason: str | None,
                 note: str | None, times: dict[str, float]) -> None:
    record = floor.ledger.get(bead.id) or {}
    attempts = [dict(a) for a in record.get("attempts", [])]
    if attempts:
        attempts[-1].update(ended=ledger.now(), outcome=outcome, reason=reason, **times)
    floor.record(bead, state, note, attempts=attempts)


def _safe_fail(floor: Floor, bead: Bead, reason: str) -> None:
    # If the ledger itself is broken, the crash log already has the details.
    with contextlib.suppress(Exception):
        floor.record(bead, State.FAILED, reason, reason=reason)


def _crash_note(floor: Floor, bead: Bead, trace: str) -> None:
    path = worktrees.state_dir(floor.root) / "logs" / f"crash-{bead.id}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(trace)
    floor.console.say("Mayor", f"ERROR {bead.id}: gastown error, traceback in {path}")
