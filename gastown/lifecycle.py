"""One bead's life: polecat -> witness -> refinery, with retries, each step in the ledger."""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gastown import costs, git, ledger, polecat, runners, witness, worktrees
from gastown.bead import Bead, State
from gastown.floor import Floor


@dataclass
class _Tally:
    """What one attempt took: seconds per step, usage per role."""

    times: dict[str, float] = field(default_factory=dict)
    usage: dict[str, dict[str, Any]] = field(default_factory=dict)


def run_bead(floor: Floor, bead: Bead) -> bool:
    """The doit action for one bead: True when it merged."""
    if floor.draining.is_set():
        floor.slots.forfeit(bead.id)
        floor.stats.hold(bead.id)
        return False
    if floor.costs.exhausted():
        floor.slots.forfeit(bead.id)
        floor.stats.hold(bead.id)
        floor.console.say("Mayor", f"BUDGET spent: {bead.id} not dispatched")
        return False
    slot: int | None = floor.slots.take(bead.id)
    actor = f"Polecat-{slot:02d}"
    floor.stats.start(bead.id)
    merged, reason = False, None
    try:
        with floor.desk.seat():  # left while its agent works (spawn.run) and it queues to merge
            approved, reason = _lifecycle(floor, bead, actor)
            if approved:
                # The slot is for agent work: the next polecat starts while this bead merges.
                floor.slots.pass_on(slot, bead.id)  # type: ignore[arg-type]
                slot = None
                merged = _refine(floor, bead, worktrees.worktree_dir(floor.root, bead.id))
    except Exception as exc:  # a bug or a broken repo must fail this bead, not the whole run
        reason = f"gastown error: {type(exc).__name__}: {exc}"
        import traceback  # only for a crash

        _crash_note(floor, bead, traceback.format_exc())
        _safe_fail(floor, bead, reason)
    finally:
        floor.slots.settle(bead.id, merged)
        floor.stats.finish(bead.id, merged, reason)
        if slot is not None:
            floor.slots.give(slot)
    return merged


UNFINISHED = frozenset({State.RUNNING.value, State.REVIEW.value, State.REJECTED.value,
                        State.MERGING.value, State.INTERRUPTED.value})


def _lifecycle(floor: Floor, bead: Bead, actor: str) -> tuple[bool, str | None]:
    """The polecat and witness steps, with retries: (True, None) once approved."""
    branch = worktrees.branch_name(bead.id)
    before = (floor.ledger.get(bead.id) or {}).get("state")
    base = floor.refinery.base()
    tree = worktrees.add(floor.root, bead.id, base, branch=branch)
    floor.console.say(actor, f"START {bead.id} \"{bead.title}\" from {base[:10]}")
    if before in UNFINISHED:
        floor.record(bead, State.RUNNING, f"restarted cleanly from {base[:12]}: the last build "
                     f"stopped while it was {before}; its worktree was discarded",
                     attempts=_close_killed(floor, bead))
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
    tally = _Tally()
    clock = time.monotonic()
    work = _work(floor, bead, tree, base, attempt, feedback, actor, tally)
    tally.times["polecat_s"] = _since(clock)
    if floor.stopping.is_set():
        return False, _interrupted(floor, bead), None
    if over := _over_budget(floor, bead, tally):
        return _give_up(floor, bead, tally, over), over, None
    if not work.ok:
        _end_attempt(floor, bead, State.RUNNING, "failed", work.reason, f"attempt {attempt} failed",
                     tally)
        return None, work.reason, work.feedback
    floor.console.say(actor, f"COMPLETE -> {bead.id} moved to witness")
    floor.record(bead, State.REVIEW, f"attempt {attempt}")
    return _review(floor, bead, tree, base, attempt, actor, tally, work.stat)


def _work(floor: Floor, bead: Bead, tree: Path, base: str, attempt: int,
          feedback: str | None, actor: str, tally: _Tally) -> polecat.PolecatResult:
    """The polecat's turn; a rate-limited model is waited out, not counted as a failure."""
    started, waited = time.monotonic(), 0
    while True:
        work = polecat.work(floor, bead, tree, base, attempt, feedback, actor)
        _spend(floor, tally, "polecat", work.usage)
        if not work.rate_limited:
            return work
        if not floor.wait_out_rate_limit(bead, actor, work.reason, waited, started,
                                         bead.roles["polecat"].timeout):
            work.feedback = work.reason
            return work
        waited += 1


def _review(floor: Floor, bead: Bead, tree: Path, base: str, attempt: int, actor: str,
            tally: _Tally, stat: tuple[int, int, int]
            ) -> tuple[bool | None, str | None, str | None]:
    clock = time.monotonic()
    verdict = witness.review(floor, bead, tree, base, attempt, stat)
    tally.times["witness_s"] = _since(clock)
    _spend(floor, tally, "witness", verdict.usage)
    if floor.stopping.is_set():
        return False, _interrupted(floor, bead), None
    if over := _over_budget(floor, bead, tally):
        return _give_up(floor, bead, tally, over), over, None
    if verdict.error:
        floor.console.say("Witness", f"ERROR {bead.id}: {verdict.reason}")
        _end_attempt(floor, bead, State.RUNNING, "error", verdict.reason, verdict.reason, tally)
        return None, verdict.reason, None
    if not verdict.approved:
        floor.stats.reject(bead.id)
        floor.console.say("Witness", f"REJECT {bead.id} \"{verdict.reason}\"")
        floor.console.say("Witness", f"RETRY -> {bead.id} returned to {actor} with the reason")
        _end_attempt(floor, bead, State.REJECTED, "rejected", verdict.reason, verdict.reason,
                     tally)
        return None, verdict.reason, f"The witness rejected your work: {verdict.reason}"
    floor.console.say("Witness", f"APPROVE -> {bead.id} moves to refinery ({verdict.stat()})")
    _end_attempt(floor, bead, State.MERGING, "approved", None, f"attempt {attempt} approved",
                 tally)
    return True, None, None


def _spend(floor: Floor, tally: _Tally, role: str, usage: dict[str, Any] | None) -> None:
    if usage:
        tally.usage[role] = costs.combine(tally.usage.get(role), usage)
        floor.costs.add(role, usage)


def _over_budget(floor: Floor, bead: Bead, tally: _Tally) -> str | None:
    limit = floor.plan.gasfile.budget.get("per_bead_usd")
    if limit is None:
        return None
    record = floor.ledger.get(bead.id) or {}
    spent = sum(c.get("usd", 0.0) for c in record.get("cost", {}).values())
    spent += sum(u.get("usd", 0.0) for u in tally.usage.values())
    if spent <= limit:
        return None
    return f"over the per-bead budget: {costs.usd(spent)} > {costs.usd(limit)}"


def _give_up(floor: Floor, bead: Bead, tally: _Tally, reason: str) -> bool:
    floor.console.say("Mayor", f"BUDGET {bead.id}: {reason}")
    _end_attempt(floor, bead, State.FAILED, "over budget", reason, reason, tally,
                 extra={"reason": reason})
    return False


def _interrupted(floor: Floor, bead: Bead) -> str:
    reason = "the build was interrupted; the next build restarts this bead"
    floor.stats.interrupt(bead.id)
    floor.record(bead, State.INTERRUPTED, reason, reason=reason)
    return reason


def _since(clock: float) -> float:
    return round(time.monotonic() - clock, 3)


def _refine(floor: Floor, bead: Bead, tree: Path) -> bool:
    branch = worktrees.branch_name(bead.id)
    # Pooled as it goes to merge (the merge needs only its branch): the wave of beads merging
    # at the end of a build does not wait for it. A failed merge gets it back (_restore).
    worktrees.remove(floor.root, tree, keep=floor.slots.cap)
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
        _restore(floor, bead, branch)
        return False
    assert result.commit is not None
    floor.console.say("Refinery", f"MERGE {branch} -> {into} ({result.commit[:10]})")
    floor.record(bead, State.MERGED, f"into {into} at {result.commit[:12]}",
                 merge_commit=result.commit, into=into, reason=None, timings=timings)
    return True


def _restore(floor: Floor, bead: Bead, branch: str) -> None:
    """The failed merge's worktree back for the user; the bead's reason stays the merge's."""
    try:
        worktrees.restore(floor.root, bead.id, branch)
    except (git.GitError, OSError) as exc:
        floor.console.say("Refinery", f"{bead.id}: its worktree could not be made again "
                                      f"({exc}); its work is on branch {branch}")


def _prepare_retry(floor: Floor, bead: Bead, tree: Path, base: str) -> None:
    if not runners.get(bead.roles["polecat"].runner or "command").keeps_work:
        worktrees.reset(tree, base)


def _close_killed(floor: Floor, bead: Bead) -> list[dict[str, Any]]:
    """The attempt a stopped build left open is marked as such."""
    attempts = [dict(a) for a in (floor.ledger.get(bead.id) or {}).get("attempts", [])]
    if attempts and not attempts[-1].get("ended"):
        attempts[-1].update(ended=None, outcome="killed",
                            reason="the build stopped before this attempt ended")
    return attempts


def _attempts(floor: Floor, bead: Bead, entry: dict[str, Any]) -> list[dict[str, Any]]:
    record = floor.ledger.get(bead.id) or {}
    return [*record.get("attempts", []), entry]


def _end_attempt(floor: Floor, bead: Bead, state: State, outcome: str, reason: str | None,
                 note: str | None, tally: _Tally, extra: dict[str, Any] | None = None) -> None:
    record = floor.ledger.get(bead.id) or {}
    attempts = [dict(a) for a in record.get("attempts", [])]
    if attempts:
        attempts[-1].update(ended=ledger.now(), outcome=outcome, reason=reason, **tally.times)
        if tally.usage:
            attempts[-1]["usage"] = tally.usage
    cost = dict(record.get("cost") or {})
    for role, usage in tally.usage.items():
        cost[role] = costs.combine(cost.get(role), usage)
    floor.record(bead, state, note, attempts=attempts, cost=cost, **(extra or {}))


def _safe_fail(floor: Floor, bead: Bead, reason: str) -> None:
    # If the ledger itself is broken, the crash log already has the details.
    with contextlib.suppress(Exception):
        floor.record(bead, State.FAILED, reason, reason=reason)


def _crash_note(floor: Floor, bead: Bead, trace: str) -> None:
    path = worktrees.state_dir(floor.root) / "logs" / f"crash-{bead.id}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(trace)
    floor.console.say("Mayor", f"ERROR {bead.id}: gastown error, traceback in {path}")
