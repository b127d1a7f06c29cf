"""`gas build`: compile, select, run what is out of date, merge, summarise."""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from gastown import costs, git, lifecycle, objects, readahead, runners, spawn, worktrees
from gastown import ledger as ledger_mod
from gastown.bead import Bead, State
from gastown.commands.common import Loaded, add_gasfile_option, load
from gastown.console import Console, summary
from gastown.costs import CostBook
from gastown.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, GasError
from gastown.floor import Floor, Slots
from gastown.ledger import Ledger
from gastown.lock import build_lock
from gastown.mayor import Plan
from gastown.refinery import WORKTREE as REFINERY_WORKTREE
from gastown.refinery import Refinery, merged_trailers
from gastown.repo import check_branches
from gastown.uptodate import RunSet, plan_run, ready_now


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("build", help="run every bead that is not up to date")
    add_gasfile_option(p)
    p.add_argument("--only", action="append", default=[], metavar="SEL",
                   help="a tag, backlog name or bead id glob (repeatable); adds what it needs")
    p.add_argument("--force", action="append", nargs="?", const="*", default=[],
                   metavar="BEAD", help="rerun even if up to date (all, or a bead id glob)")
    p.add_argument("-j", "--jobs", type=int, metavar="N", help="concurrency cap")
    p.add_argument("-n", "--dry-run", action="store_true", help="say what would run, and why")
    p.add_argument("--json", action="store_true",
                   help="the result as JSON on stdout; the run's lines go to stderr")
    p.add_argument("--plain", action="store_true",
                   help="one line per step even on a terminal (no live view)")
    p.add_argument("--polecat-model", metavar="M", help="the polecats' model for this build")
    p.add_argument("--witness-model", metavar="M", help="the reviewer's model for this build")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    started = time.monotonic()
    console = _console(args)
    loaded = load(gasfile=args.gasfile, read_ledger=True,
                  prefetch=None if args.dry_run else git.read_settings)
    _override_models(loaded, args)
    _preflight(loaded, args)
    ledger = loaded.ledger
    only = [s for sel in args.only for s in sel.split(",") if s]
    runset = plan_run(loaded.plan, ledger.load(), only=only, force=args.force)  # checks --only
    if args.dry_run:
        return _dry_run(loaded, runset, ledger.load(), as_json=args.json)
    build = os.urandom(16).hex()
    with build_lock(worktrees.state_dir(loaded.root) / "build.lock", build) as previous:
        # We hold the lock, so the previous build is gone; what it started may not be.
        if stopped := spawn.sweep_build(previous):
            console.say("Mayor", f"Stopped {stopped} process(es) a killed build left running")
        spawn.tag_build(build)
        return _build(loaded, ledger, console, only, args, started)


def _console(args: argparse.Namespace) -> Console:
    """Plain lines for --json, --plain and no terminal; the live view (and rich, imported
    only for it) on a terminal."""
    if args.json:
        return Console(sys.stderr)
    if args.plain or not sys.stdout.isatty():
        return Console()
    from gastown.live import pick_console

    return pick_console(plain=False)


def execute(beads: Sequence[Bead], action: Callable[[Bead], bool], *, cap: int,
            dep_file: Path) -> list[str]:
    """gastown.executor.execute, imported (and doit with it) only when there is work."""
    if not beads:
        return []
    from gastown.executor import execute as run_beads

    return run_beads(beads, action, cap=cap, dep_file=dep_file)


def _preflight(loaded: Loaded, args: argparse.Namespace) -> None:
    project = loaded.gasfile.project
    check_branches(loaded.root, project.base, project.into, project.ledger,
                   file=loaded.gasfile.path.name)
    if args.jobs is not None and args.jobs < 1:
        raise GasError(f"-j {args.jobs}: the cap must be at least 1")
    roles = {role for bead in loaded.plan.beads.values() for role in bead.roles.values()
             if role.runner}
    for role in sorted(roles, key=lambda r: (r.name, r.runner or "")):
        if reason := runners.get(role.runner or "command").check(role):
            raise GasError(f"roles.{role.name}.runner {role.runner}: {reason}",
                           file=loaded.gasfile.path.name)


def _build(loaded: Loaded, ledger: Ledger, console: Console, only: list[str],
           args: argparse.Namespace, started: float) -> int:
    trailers = _trailers_soon(loaded.root, loaded.gasfile.project.into)
    floor = _open_floor(loaded, ledger, console, args)
    loaded.plan.remember()  # the next compile renders only beads whose definition changed
    _reconcile(floor, trailers())
    runset = plan_run(loaded.plan, ledger.load(), only=only, force=args.force)
    if runset.order:  # a no-op build builds no graph
        # the first beads' worktrees checked out while doit loads and starts them
        worktrees.prepare(floor.root, floor.refinery.base(),
                          min(_cap(loaded.plan, args), len(runset.order)))
        from gastown.graph.priority import priorities

        running = set(runset.order)
        floor.slots.plan(priorities(loaded.plan.beads, runset.order, ledger.load(fresh=False)),
                         {b: [n for n in loaded.plan.beads[b].needs if n in running]
                          for b in runset.order})
    _announce(floor, runset)
    console.start_run(len(runset.order), floor.stats)
    try:
        errors, interrupted = _execute(floor, runset, args)
    finally:
        console.end_run()
    if runset.order:
        readahead.remember(floor.root)  # for the next build's start
    errors += _flush_ledger(floor)
    for error in errors:
        console.say("Mayor", f"ERROR {error}")
    if not interrupted and not floor.stats.held:
        _mark_blocked(floor, runset)
    wall = time.monotonic() - started
    for line in summary(floor.stats, selected=len(runset.selected),
                        skipped=len(runset.skipped), wall=wall):
        console.raw(line)
    for line in floor.costs.lines(merged=len(floor.stats.merged)):
        console.raw(line)
    if floor.stats.held:
        why = "interrupted" if floor.draining.is_set() else \
            f"budget spent ({costs.usd(floor.costs.total())})"
        console.say("Mayor", f"{len(floor.stats.held)} Beads not dispatched: {why}")
    merged_all = len(floor.stats.merged) == len(runset.order)
    code = EXIT_INTERRUPTED if interrupted else \
        EXIT_OK if merged_all and not errors else EXIT_FAILED
    if args.json:
        print(json.dumps(_result(floor, runset, code, wall), indent=2))
    return code


def _result(floor: Floor, runset: RunSet, code: int, wall: float) -> dict[str, Any]:
    stats = floor.stats
    return {
        "exit_code": code, "selected": len(runset.selected), "up_to_date": len(runset.skipped),
        "dispatched": sorted(stats.dispatched), "merged": sorted(stats.merged),
        "failed": dict(sorted(stats.failed.items())),
        "blocked": dict(sorted(stats.blocked.items())),
        "interrupted": sorted(stats.interrupted), "not_dispatched": sorted(stats.held),
        "rejected": sorted(stats.rejected), "retries": stats.retries,
        "wall_seconds": round(wall, 3),
        "cost_usd": {"total": round(floor.costs.total(), 6),
                     **{f"{role} ({model})": round(v, 6)
                        for (role, model), v in sorted(floor.costs.spent.items())}},
    }


def _execute(floor: Floor, runset: RunSet, args: argparse.Namespace) -> tuple[list[str], bool]:
    """Run the beads. The first Ctrl-C stops dispatching and lets running beads finish; a
    second one, or SIGTERM, stops every process and records the running beads `interrupted`."""
    beads = [floor.plan.beads[b] for b in runset.order]
    spawn.reopen()
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGINT, lambda signum, frame: _drain(floor))
    try:
        errors = execute(beads, lambda bead: lifecycle.run_bead(floor, bead),
                         cap=_cap(floor.plan, args),
                         dep_file=worktrees.state_dir(floor.root) / "doit-cache.json")
        return errors, floor.draining.is_set()
    except KeyboardInterrupt:
        floor.console.say("Mayor", "INTERRUPTED: stopping every polecat, nothing more dispatched")
        floor.stopping.set()
        spawn.stop_all()
        floor.stats.wait_idle(timeout=30)
        return [], True
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        floor.refinery.close()
        with contextlib.suppress(Exception):  # said by _flush_ledger() unless this is a crash
            floor.ledger.flush()  # while the build's git readers and identity are still there
        objects.close_all()
        if runset.order:
            git.maintain(floor.root)


def _flush_ledger(floor: Floor) -> list[str]:
    """Every transition on the ledger branch; what could not be written, as errors."""
    try:
        floor.ledger.flush()
    except Exception as exc:  # the beads ran; the build must still end and say so
        return [f"the ledger could not record every transition: {exc}"]
    return []


def _drain(floor: Floor) -> None:
    floor.draining.set()
    signal.signal(signal.SIGINT, _raise_interrupt)
    floor.console.say("Mayor", "INTERRUPT: nothing more dispatched; running beads finish "
                               "(Ctrl-C again to stop them now)")


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _cap(plan: Plan, args: argparse.Namespace) -> int:
    return int(args.jobs or plan.gasfile.project.parallel)


def _open_floor(loaded: Loaded, ledger: Ledger, console: Console,
                args: argparse.Namespace) -> Floor:
    root, project = loaded.root, loaded.gasfile.project
    worktrees.ensure_excluded(root)
    if stale := worktrees.clear_ref_locks(root, [project.into, project.ledger]):
        console.say("Mayor", f"Removed git lock(s) a killed build left: {', '.join(stale)}")
    worktrees.prune(root)
    ledger.ensure()
    if git.rev(f"refs/heads/{project.into}", cwd=root) is None:
        base = git.out("rev-parse", f"{project.base}^{{commit}}", cwd=root)
        git.run("update-ref", f"refs/heads/{project.into}", base, "", cwd=root)
        console.say("Mayor", f"Created integration branch {project.into} at {project.base}")
    env = git.clean_env()
    refinery_role = loaded.gasfile.role("refinery")
    refinery = Refinery(root, project.into, strategy=refinery_role.strategy,
                        ci=refinery_role.ci, env=env,
                        logs=worktrees.state_dir(root) / "logs" / "refinery",
                        say=console.say, batch=loaded.gasfile.roles["refinery"]["batch"])
    return Floor(root, loaded.plan, ledger, refinery, console, env, Slots(_cap(loaded.plan, args)),
                 costs=CostBook(budget_usd=loaded.gasfile.budget.get("usd")))


def _override_models(loaded: Loaded, args: argparse.Namespace) -> None:
    """--polecat-model/--witness-model change who works, not what the work is (fingerprints
    were fixed at compile time)."""
    for role, model in (("polecat", args.polecat_model), ("witness", args.witness_model)):
        if model:
            for bead in loaded.plan.beads.values():
                bead.roles[role] = dataclasses.replace(bead.roles[role], model=model)


def _trailers_soon(root: Path, into: str) -> Callable[[], dict[str, tuple[str, str]]]:
    """merged_trailers() of `into`, read by git while the floor opens (we hold the build lock:
    nothing moves `into` meanwhile); read once it is open when `into` is not a loose ref yet
    (_open_floor makes a missing one at the base, whose trailers count)."""
    if git.read_ref(f"refs/heads/{into}", root) is None:
        return lambda: merged_trailers(root, into)
    return git.Soon(merged_trailers, root, into).get


def _reconcile(floor: Floor, trailers: dict[str, tuple[str, str]]) -> None:
    """A merge that landed but whose ledger record did not (its `trailers` on the integration
    branch) is recorded, not redone; then what a killed build left of merged beads
    (worktrees, branches) is removed."""
    into = floor.plan.gasfile.project.into
    fixes = []
    for bead_id, (fingerprint, commit) in trailers.items():
        record = floor.ledger.get(bead_id)
        bead = floor.plan.beads.get(bead_id)
        if bead is None or fingerprint != bead.fingerprint:
            continue
        if record is None or record.get("state") != State.MERGED.value or \
                record.get("fingerprint") != fingerprint:
            fixes.append(ledger_mod.transition(
                record, bead_id=bead_id, state=State.MERGED.value, into=into,
                note=f"recovered from its Gas-Bead trailer at {commit[:12]}",
                merge_commit=commit, reason=None, fingerprint=fingerprint,
                backlog=bead.backlog, title=bead.title))
    if fixes:
        floor.ledger.put_many(fixes, f"recovered {len(fixes)} merge(s) from {into}")
        floor.console.say("Mayor", f"Recovered {len(fixes)} merged bead(s) from {into}")
    _sweep(floor)


def _sweep(floor: Floor) -> None:
    """Worktrees and gas/ branches of merged beads, and the refinery's worktree: a killed
    build leaves them; nothing else would remove them (we hold the build lock)."""
    records = floor.ledger.load(fresh=False)
    merged = {b for b, r in records.items() if r.get("state") == State.MERGED.value}
    for name in worktrees.leftovers(floor.root):
        if name == REFINERY_WORKTREE or name in merged:
            worktrees.remove(floor.root, worktrees.worktree_dir(floor.root, name))
    worktrees.delete_branches(floor.root, [worktrees.branch_name(bead_id) for bead_id in
                                           worktrees.bead_branches(floor.root)
                                           if bead_id in merged])


def _announce(floor: Floor, runset: RunSet) -> None:
    plan, say = floor.plan, floor.console.say
    counts = plan.per_backlog()
    parts = " + ".join(f"{n} {name}" for name, n in counts.items())
    say("Mayor", f"Ingested {parts} = {len(plan.beads)} Beads total")
    constrained = sum(1 for b in plan.beads.values() if b.needs)
    say("Mayor", f"Dependency analysis: {constrained} Beads have sequencing constraints")
    if runset.skipped:
        say("Mayor", f"Up to date: {len(runset.skipped)} Beads already merged, skipped")
    say("Mayor", f"Independent Beads available for immediate parallel dispatch: "
                 f"{ready_now(plan, runset)}")
    if runset.order:
        say("Mayor", f"Dispatching {len(runset.order)} Beads, at most "
                     f"{floor.slots.cap} at once")


def _mark_blocked(floor: Floor, runset: RunSet) -> None:
    """Beads that never ran because a need did not merge are recorded as blocked, with why."""
    stats, plan = floor.stats, floor.plan
    records = []
    for bead_id in runset.order:
        if bead_id in stats.dispatched:
            continue
        bead = plan.beads[bead_id]
        missing = [n for n in bead.needs if n in runset.reasons and n not in stats.merged]
        reason = ("needs " + ", ".join(missing[:5]) + " (not merged)") if missing else \
            "never started: the executor stopped first (see the errors above)"
        stats.blocked[bead_id] = reason
        floor.console.say("Mayor", f"BLOCKED {bead_id}: {reason}")
        records.append(ledger_mod.transition(
            floor.ledger.get(bead_id), bead_id=bead_id, state=State.BLOCKED.value, note=reason,
            reason=reason, backlog=bead.backlog, title=bead.title, fingerprint=bead.fingerprint))
    if records:
        floor.ledger.put_many(records, f"{len(records)} bead(s) blocked")


def _dry_run(loaded: Loaded, runset: RunSet, records: dict[str, dict[str, Any]], *,
             as_json: bool) -> int:
    estimate = costs.estimate([loaded.plan.beads[b] for b in runset.order], records)
    if as_json:
        print(json.dumps({"would_run": [{"id": b, "why": runset.reasons[b]}
                                        for b in runset.order],
                          "up_to_date": sorted(runset.skipped), "estimate": estimate},
                         indent=2))
        return EXIT_OK
    for bead_id in runset.order:
        print(f"would run {bead_id:<30} {runset.reasons[bead_id]}")
    print(f"{len(runset.order)} to run, {len(runset.skipped)} up to date "
          f"(of {len(runset.selected)} selected)")
    if estimate:
        print(estimate)
    return EXIT_OK


