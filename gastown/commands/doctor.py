"""`gas doctor`: is this machine and repository ready for `gas build`? One line per check.

Read-only, and takes no lock: it can run beside a build. Anything wrong, including not being
in a git repository at all, is a failed check (exit 1), never bad input.
"""
from __future__ import annotations

import argparse
import fcntl
import json
import os
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

from gastown import git, runners, worktrees
from gastown.bead import RoleSpec
from gastown.commands.common import add_gasfile_option
from gastown.errors import EXIT_FAILED, EXIT_OK, GasError
from gastown.gasfile import Gasfile, Project, find_gasfile, load_gasfile
from gastown.ledger import SCHEMA, Ledger, LedgerError
from gastown.mayor import Plan, compile_plan
from gastown.repo import MIN_GIT

OK, WARN, FAIL, INFO = "ok", "warn", "fail", "info"
VERSION_TIMEOUT = 10.0  # seconds for `<cli> --version`


@dataclass
class Check:
    name: str
    status: str
    detail: str
    hint: str | None = None


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("doctor", help="check git, the repo, the Gasfile, the ledger and runners")
    add_gasfile_option(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    checks = diagnose(Path.cwd(), args.gasfile)
    failed = sum(1 for c in checks if c.status == FAIL)
    if args.json:
        print(json.dumps({"ok": not failed, "checks": [asdict(c) for c in checks]}, indent=2))
    else:
        _print(checks, failed)
    return EXIT_FAILED if failed else EXIT_OK


def _print(checks: list[Check], failed: int) -> None:
    for check in checks:
        print(f"{check.status:<5} {check.name:<15} {check.detail}")
        if check.hint and check.status in (WARN, FAIL):
            print(f"{'':<21} hint: {check.hint}")
    warned = sum(1 for c in checks if c.status == WARN)
    print(f"{failed} failed, {warned} warning(s)" if failed or warned else "all good")


def diagnose(cwd: Path, gasfile: str | None) -> list[Check]:
    checks = [_git_version()]
    if checks[0].status == FAIL:
        return checks
    root, repo_check = _repository(cwd)
    checks.append(repo_check)
    if root is None:
        return checks
    loaded, plan, gasfile_check = _gasfile(root, gasfile)
    project = loaded.project if loaded else Project()
    checks += [gasfile_check, _base(root, project), _into(root, project),
               _ledger(root, project), _build_lock(root)]
    return checks + _runners(_roles(loaded, plan), known=loaded is not None)


# -- git and the repository ---------------------------------------------------------------------

def _git_version() -> Check:
    try:
        found = git.version()
    except (OSError, IndexError, ValueError):
        return Check("git", FAIL, "git not found or its version unreadable",
                     "install git >= 2.30")
    shown = ".".join(map(str, found))
    if found < MIN_GIT:
        return Check("git", FAIL, f"git {shown} is older than 2.30", "upgrade git")
    return Check("git", OK, f"git {shown}")


def _repository(cwd: Path) -> tuple[Path | None, Check]:
    proc = git.run("rev-parse", "--show-toplevel", cwd=cwd, check=False)
    if proc.returncode != 0:
        return None, Check("repository", FAIL, f"not a git repository: {cwd}",
                           "run gas inside a git repository (`git init` and commit first)")
    root = Path(proc.stdout.strip())
    head = git.rev("HEAD", cwd=root)
    if head is None:
        return root, Check("repository", FAIL, f"{root} has no commits yet",
                           "commit something first: the integration branch starts from it")
    branch = git.run("symbolic-ref", "--short", "-q", "HEAD", cwd=root, check=False)
    on = branch.stdout.strip() or "detached HEAD"
    return root, Check("repository", OK, f"{root} ({on} at {head[:10]})")


# -- the Gasfile ---------------------------------------------------------------------------------

def _gasfile(root: Path, given: str | None) -> tuple[Gasfile | None, Plan | None, Check]:
    try:
        path = Path(given) if given else find_gasfile(root)
        loaded = load_gasfile(path if path.is_absolute() else root / path, root=root)
    except GasError as exc:
        return None, None, _error_check("Gasfile", exc)
    try:
        plan = compile_plan(loaded)
    except GasError as exc:
        return loaded, None, _error_check("Gasfile", exc)
    edges = plan.graph.number_of_edges()
    return loaded, plan, Check("Gasfile", OK, f"{loaded.display} is valid: "
                               f"{len(plan.beads)} beads, {edges} dependencies")


def _error_check(name: str, exc: GasError) -> Check:
    return Check(name, FAIL, f"{exc.where()}{exc.message}", exc.hint)


# -- branches, ledger, lock ----------------------------------------------------------------------

def _base(root: Path, project: Project) -> Check:
    tip = git.rev(f"refs/heads/{project.base}", cwd=root) or git.rev(project.base, cwd=root)
    if tip is None:
        return Check("base", FAIL, f"project.base: {project.base!r} does not exist",
                     "set project.base to an existing branch (e.g. main or master)")
    return Check("base", OK, f"{project.base} at {tip[:10]}")


def _into(root: Path, project: Project) -> Check:
    into = project.into
    if problem := _branch_problem(root, "into", into):
        return problem
    if into == project.ledger:
        return Check("integration", FAIL, f"project.into and project.ledger are both {into!r}",
                     "the ledger needs a branch of its own (default gt-ledger)")
    tip = git.rev(f"refs/heads/{into}", cwd=root)
    if tip is None:
        return Check("integration", OK, f"{into} does not exist yet; the first build "
                     f"creates it at {project.base}")
    where = worktrees.checked_out_branches(root).get(into)
    if where is not None:
        return Check("integration", FAIL, f"{into} is checked out in {where}",
                     f"switch that checkout to another branch; gas moves {into} by ref")
    return _behind(root, project, tip) or Check("integration", OK,
                                                  f"{into} at {tip[:10]}, not checked out")


def _behind(root: Path, project: Project, tip: str) -> Check | None:
    """Commits on base since the integration branch left it: new beads will not see them."""
    proc = git.run("rev-list", "--count", f"{tip}..{project.base}", cwd=root, check=False)
    behind = int(proc.stdout.strip() or 0) if proc.returncode == 0 else 0
    if not behind:
        return None
    return Check("integration", WARN, f"{project.into} at {tip[:10]} lacks {behind} commit(s) "
                 f"of {project.base}; beads start from {project.into}, without them",
                 f"merge {project.base} into {project.into} if the beads need those commits")


def _branch_problem(root: Path, key: str, name: str) -> Check | None:
    if git.ok("check-ref-format", "--branch", name, cwd=root):
        return None
    label = "integration" if key == "into" else key
    return Check(label, FAIL, f"project.{key}: {name!r} is not a valid branch name",
                 "see `git help check-ref-format`")


def _ledger(root: Path, project: Project) -> Check:
    if problem := _branch_problem(root, "ledger", project.ledger):
        return problem
    ledger = Ledger(root, project.ledger)
    tip = ledger.tip()
    if tip is None:
        return Check("ledger", OK, f"{ledger.branch} does not exist yet; `gas init` or the "
                     "first build creates it")
    try:
        records = ledger.load()
    except (LedgerError, git.GitError) as exc:
        return Check("ledger", FAIL, f"{ledger.branch}: {exc}",
                     "point project.ledger at another branch, or move this one away")
    commits = git.out("rev-list", "--count", tip, cwd=root)
    return Check("ledger", OK, f"{ledger.branch}: schema {SCHEMA}, {len(records)} record(s), "
                 f"{commits} commit(s)")


def _build_lock(root: Path) -> Check:
    path = worktrees.state_dir(root) / "build.lock"
    holder = _lock_holder(path) if path.exists() else None
    if holder is None:
        return Check("build lock", OK, "no build running")
    return Check("build lock", INFO, f"a build is running ({holder}); {path}")


def _lock_holder(path: Path) -> str | None:
    """Who holds the build's flock, or None. Probes with a shared lock, released at once:
    the kernel keeps no owner to ask, and the file's text outlives the build that wrote it."""
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _holder_text(path)
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _holder_text(path: Path) -> str:
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        info = {}
    return f"pid {info.get('pid', '?')} on {info.get('host', '?')} since {info.get('since', '?')}"


# -- runners -------------------------------------------------------------------------------------

def _roles(gasfile: Gasfile | None, plan: Plan | None) -> list[RoleSpec]:
    """Every distinct role setting that names a runner, as a build would check them."""
    if plan is not None:
        found = {r for bead in plan.beads.values() for r in bead.roles.values() if r.runner}
    elif gasfile is not None:
        found = {gasfile.role(name, backlog) for name in ("polecat", "witness")
                 for backlog in (None, *gasfile.backlogs.values())}
        found = {r for r in found if r.runner}
    else:
        found = set()
    return sorted(found, key=lambda r: (r.runner or "", r.name))


def _runners(roles: list[RoleSpec], *, known: bool) -> list[Check]:
    used = sorted({r.runner for r in roles if r.runner})
    checks = [_used_runner(name, [r for r in roles if r.runner == name]) for name in used]
    others = [name for name in runners.runner_names() if name not in used]
    why = "not used" if known else "the Gasfile did not load"
    return checks + [Check(f"runner {name}", INFO, f"{why}; {_found(name, {})}")
                     for name in others]


def _used_runner(name: str, roles: list[RoleSpec]) -> Check:
    try:
        runner = runners.get(name)
    except Exception as exc:  # a broken plugin must not stop the other checks
        return Check(f"runner {name}", FAIL, f"cannot load: {exc}")
    problems = sorted({p for role in roles if (p := runner.check(role))})
    env = dict(roles[0].env)
    if not problems:
        return Check(f"runner {name}", OK, _found(name, env))
    # A runner's own complaint already says when its CLI is missing.
    found = [_found(name, env)] if _cli(name, env) else []
    return Check(f"runner {name}", FAIL, "; ".join([*found, *problems]))


def _found(name: str, env: dict[str, str]) -> str:
    if name == "command":
        return "runs each bead's `run` line with the shell"
    if name not in runners.BUILTIN:
        return "plugin (gastown.runners entry point)"
    path = _cli(name, env)
    if path is None:
        return f"{name} not found on PATH"
    return f"{cli_version(path) or 'version unknown'} at {path}"


def _cli(name: str, env: dict[str, str]) -> str | None:
    """Where a built-in agent runner's CLI (named like the runner) is on the role's PATH."""
    if name == "command" or name not in runners.BUILTIN:
        return None
    return shutil.which(name, path={**os.environ, **env}.get("PATH"))


def cli_version(path: str) -> str | None:
    """The first line `<cli> --version` prints, within a short timeout."""
    try:
        proc = subprocess.run([path, "--version"], capture_output=True, text=True,
                              timeout=VERSION_TIMEOUT, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = (proc.stdout or proc.stderr).strip().splitlines()
    return lines[0].strip() if lines else None
