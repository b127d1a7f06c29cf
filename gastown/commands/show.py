"""`gas show BEAD`: a bead's definition, ledger state, worktree, branch, diff and files."""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from gastown import git, worktrees
from gastown.bead import Bead, RoleSpec
from gastown.commands.common import Loaded, add_gasfile_option, load
from gastown.commands.log import Record, find_record, read_records
from gastown.ledger import Ledger
from gastown.uptodate import why

# Read-only: `git status` would otherwise refresh (write) the worktree's index.
NO_LOCKS = {"GIT_OPTIONAL_LOCKS": "0"}


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("show", help="one bead: definition, state, worktree, branch, diff, logs")
    add_gasfile_option(p)
    p.add_argument("bead", metavar="BEAD")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    loaded = load(gasfile=args.gasfile)
    record = find_record(loaded, read_records(Ledger(loaded.root, loaded.gasfile.project.ledger)),
                         args.bead)
    view = show_view(loaded, args.bead, record)
    if args.json:
        print(json.dumps(view, indent=2, default=str))
    else:
        for line in show_lines(view):
            print(line)
    return 0


def show_view(loaded: Loaded, bead_id: str, record: Record | None) -> dict[str, Any]:
    bead = loaded.plan.beads.get(bead_id)
    definition = _definition(bead, record) if bead else _orphan(bead_id, record or {})
    return {**definition, **_ledger_part(record or {}), **_files(loaded, bead_id)}


def _definition(bead: Bead, record: Record | None) -> dict[str, Any]:
    reason = why(bead, record, False)
    return {
        "id": bead.id, "title": bead.title, "backlog": bead.backlog, "in_gasfile": True,
        "tags": list(bead.tags), "needs": list(bead.needs), "run": bead.run,
        "item": bead.item, "path": bead.path,
        "roles": {name: _role(spec) for name, spec in bead.roles.items()},
        "fingerprint": bead.fingerprint, "up_to_date": reason is None, "why": reason,
    }


def _orphan(bead_id: str, record: Record) -> dict[str, Any]:
    """A bead the ledger knows but the Gasfile no longer defines."""
    return {"id": bead_id, "title": record.get("title"), "backlog": record.get("backlog"),
            "in_gasfile": False, "fingerprint": None, "up_to_date": None,
            "why": "not in the Gasfile"}


def _role(spec: RoleSpec) -> dict[str, Any]:
    if spec.name == "refinery":
        return {"strategy": spec.strategy, "ci": spec.ci}
    return {"runner": spec.runner, "model": spec.model, "checks": list(spec.checks)}


def _ledger_part(record: Record) -> dict[str, Any]:
    return {
        "state": record.get("state", "pending"), "reason": record.get("reason"),
        "merge_commit": record.get("merge_commit"), "into": record.get("into"),
        "attempts": len(record.get("attempts", [])), "updated": record.get("updated"),
        "recorded_fingerprint": record.get("fingerprint") or None,
    }


# -- what is on disk and in git -----------------------------------------------------------------

def _files(loaded: Loaded, bead_id: str) -> dict[str, Any]:
    root, state = loaded.root, worktrees.state_dir(loaded.root)
    tree = worktrees.worktree_dir(root, bead_id)
    branch = worktrees.branch_name(bead_id)
    has_branch = git.rev(f"refs/heads/{branch}", cwd=root) is not None
    prompts = state / "prompts" / bead_id
    return {
        "worktree": str(tree) if tree.is_dir() else None,
        "uncommitted": _uncommitted(tree) if tree.is_dir() else None,
        "branch": branch if has_branch else None,
        "diff": _diff(loaded, branch) if has_branch else None,
        "log": _existing(state / "logs" / f"{bead_id}.log"),
        "ci_log": _existing(state / "logs" / "refinery" / f"{bead_id}.log"),
        "prompts": _existing(prompts),
        "prompt_files": sorted(p.name for p in prompts.iterdir()) if prompts.is_dir() else [],
    }


def _existing(path: Path) -> str | None:
    return str(path) if path.exists() else None


def _uncommitted(tree: Path) -> int | None:
    """Paths changed but not committed in the worktree (a polecat whose checks failed)."""
    proc = git.run("status", "--porcelain", cwd=tree, env=NO_LOCKS, check=False)
    return len(proc.stdout.splitlines()) if proc.returncode == 0 else None


def _diff(loaded: Loaded, branch: str) -> dict[str, Any] | None:
    """The branch's changes since it left the integration branch (or base, before it exists)."""
    project, root = loaded.gasfile.project, loaded.root
    start = project.into if git.rev(f"refs/heads/{project.into}", cwd=root) else project.base
    proc = git.run("merge-base", start, branch, cwd=root, check=False)
    if proc.returncode != 0:
        return None
    base = proc.stdout.strip()
    files, ins, dels = worktrees.numstat(git.out("diff", "--numstat", base, branch, cwd=root))
    stat = git.out("diff", "--stat=100", base, branch, cwd=root)
    return {"against": start, "base": base, "files": files, "insertions": ins,
            "deletions": dels, "stat": stat}


# -- text ---------------------------------------------------------------------------------------

def show_lines(view: dict[str, Any]) -> list[str]:
    title = f": {view['title']}" if view["title"] else ""
    lines = [f"bead         {view['id']}{title}"]
    if view["in_gasfile"]:
        lines += _definition_lines(view)
    else:
        lines.append("definition   not in the Gasfile (the ledger still has its record)")
    return lines + _state_lines(view) + _file_lines(view)


def _definition_lines(view: dict[str, Any]) -> list[str]:
    lines = [f"backlog      {view['backlog']}",
             f"tags         {_listed(view['tags'])}",
             f"needs        {_listed(view['needs'])}"]
    if view["run"] is not None:
        lines.append(f"run          {view['run']}")
    if view["path"] is not None:
        lines.append(f"path         {view['path']}")
    lines.append(f"item         {json.dumps(view['item'], sort_keys=True, default=str)}")
    lines += [f"{name:<12} {_role_text(role)}" for name, role in view["roles"].items()]
    verdict = "up to date" if view["up_to_date"] else f"would run: {view['why']}"
    return [*lines, f"fingerprint  {view['fingerprint']} ({verdict})"]


def _listed(values: list[str]) -> str:
    return ", ".join(values) if values else "-"


def _role_text(role: dict[str, Any]) -> str:
    if "strategy" in role:
        return f"strategy {role['strategy']}, ci {role['ci'] or '-'}"
    checks = "; ".join(role["checks"]) or "-"
    return f"runner {role['runner'] or '-'}, model {role['model'] or '-'}, checks: {checks}"


def _state_lines(view: dict[str, Any]) -> list[str]:
    state = view["state"] + (f": {view['reason']}" if view["reason"] else "")
    lines = [f"state        {state} ({view['attempts']} attempt(s))"]
    if view["merge_commit"]:
        lines.append(f"merged       into {view['into']} at {view['merge_commit']}")
    return lines


def _file_lines(view: dict[str, Any]) -> list[str]:
    tree = view["worktree"]
    changes = f" ({view['uncommitted']} uncommitted change(s))" if view["uncommitted"] else ""
    lines = [f"worktree     {tree}{changes}" if tree else "worktree     none",
             f"branch       {view['branch'] or _no_branch(view['state'])}"]
    if view["diff"]:
        lines += _diff_lines(view["diff"])
    for key in ("log", "ci_log"):
        if view[key]:
            lines.append(f"{key.replace('_', ' '):<12} {view[key]}")
    if view["prompts"]:
        lines.append(f"prompts      {view['prompts']}/ ({_listed(view['prompt_files'])})")
    return lines


def _no_branch(state: str) -> str:
    return "none (deleted after the merge)" if state == "merged" else "none"


def _diff_lines(diff: dict[str, Any]) -> list[str]:
    head = (f"diff         {diff['files']} file(s), +{diff['insertions']} -{diff['deletions']} "
            f"since {diff['base'][:10]} (merge-base with {diff['against']})")
    return [head, *(f"            {line}" for line in diff["stat"].splitlines())]
