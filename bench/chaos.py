"""kill -9 a real `gas build` at a random ledger transition, build again, check the result.

    python bench/chaos.py [--n 20] [--seed S]

Each round makes a fresh repository with six beads (a small DAG, a polecat check and a CI
command), starts `python -m gastown build --plain` in a process group of its own, watches the
ledger ref and SIGKILLs the whole group right after its k-th transition (k random, printed),
then runs `gas build` again to the end and checks the invariants: exit 0, every bead's
`Gas-Bead` trailer exactly once on the integration branch, every bead's file there, the ledger
says merged for each with a merge commit on the branch, no worktree or branch of a merged bead
left, and no process of the killed build still running. The last line printed is
`survived K/N, double merges D, lost beads L`.

The test suite (tests/commands/test_crash.py) drives the same machinery at fixed kill points.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gastown import worktrees
from gastown.ledger import Ledger

PY = sys.executable
LEDGER, INTO = "gt-ledger", "staging"
BEADS = ("b1", "b2", "b3", "n1", "n2", "n3")
MARK = "GAS_CHAOS_BUILD"  # every process of one build (gas, git, polecats) inherits this
# Each bead writes its own file; the polecat's check and the refinery's CI read them back.
WORK = '''\
import os, pathlib, time
bead = os.environ["GAS_BEAD_ID"]
hang = os.environ.get("CHAOS_HANG")  # a directory: b1 writes its pid there and never ends
if hang and bead == "b1":
    pathlib.Path(hang, "b1.tmp").write_text(str(os.getpid()))
    pathlib.Path(hang, "b1.tmp").rename(pathlib.Path(hang, "b1"))
    while True:
        time.sleep(0.05)
pathlib.Path("beads").mkdir(exist_ok=True)
pathlib.Path("beads", bead + ".txt").write_text(bead + "\\n")
'''
CHECK = '''\
import pathlib, sys
for path in pathlib.Path("beads").glob("*.txt"):
    if path.read_text() != path.stem + "\\n":
        sys.exit(f"{path} does not name its bead")
'''
GASFILE = f'''\
version: 1
project: {{parallel: 3}}
roles:
  polecat: {{checks: ["{PY} check.py"]}}
  refinery: {{ci: "{PY} check.py"}}
backlogs:
  base:
    run: "{PY} work.py"
    items:
      - {{id: b1, title: "first"}}
      - {{id: b2, title: "second"}}
      - {{id: b3, title: "third"}}
  next:
    run: "{PY} work.py"
    items:
      - {{id: n1, title: "after b1", needs: [b1]}}
      - {{id: n2, title: "after b2 and n1", needs: [b2, n1]}}
      - {{id: n3, title: "after b3", needs: [b3]}}
'''
FILES = {"README.md": "chaos\n", "work.py": WORK, "check.py": CHECK, "Gasfile.yaml": GASFILE}
HERMETIC = {
    "GIT_AUTHOR_NAME": "Chaos", "GIT_AUTHOR_EMAIL": "chaos@localhost",
    "GIT_COMMITTER_NAME": "Chaos", "GIT_COMMITTER_EMAIL": "chaos@localhost",
    "GIT_CONFIG_NOSYSTEM": "1",
}
BUILD_TIMEOUT = 120.0


# -- the repository ---------------------------------------------------------------------------

def git(repo: Path, *args: str, env: Mapping[str, str] | None = None) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True,
                          env=dict(env or os.environ)).stdout.strip()


def hermetic_env(home: Path) -> dict[str, str]:
    """os.environ without the user's git config, identity or GIT_* overrides."""
    home.mkdir(parents=True, exist_ok=True)
    config = home / ".gitconfig"
    config.write_text("[init]\n\tdefaultBranch = main\n[commit]\n\tgpgsign = false\n"
                      "[core]\n\thooksPath = /dev/null\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    return {**env, **HERMETIC, "HOME": str(home), "GIT_CONFIG_GLOBAL": str(config)}


def make_scenario(path: Path, env: Mapping[str, str]) -> Path:
    """The six-bead repository, committed on main."""
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main", env=env)
    for name, text in FILES.items():
        (path / name).write_text(text)
    git(path, "add", "-A", env=env)
    git(path, "commit", "-q", "-m", "initial", env=env)
    return path


# -- watching refs and killing ----------------------------------------------------------------

def ref_value(repo: Path, branch: str) -> str | None:
    """The branch's commit read from the ref files, without starting a process."""
    gitdir = repo / ".git"
    with contextlib.suppress(OSError):
        return (gitdir / "refs" / "heads" / branch).read_text().strip()
    with contextlib.suppress(OSError):
        for line in (gitdir / "packed-refs").read_text().splitlines():
            if line.endswith(f" refs/heads/{branch}"):
                return line.split()[0]
    return None


@dataclass
class Build:
    """One `gas build` subprocess, in a process group (and session) of its own."""

    repo: Path
    proc: subprocess.Popen[bytes]
    log: Path
    mark: str
    started: float = field(default_factory=time.monotonic)

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace")


def start_build(repo: Path, env: Mapping[str, str], log: Path) -> Build:
    mark = uuid.uuid4().hex
    with log.open("wb") as out:
        proc = subprocess.Popen([PY, "-m", "gastown", "build", "--plain"], cwd=repo,
                                env={**env, MARK: mark}, stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    return Build(repo, proc, log, mark)


def run_build(repo: Path, env: Mapping[str, str], log: Path) -> tuple[int, str]:
    """A build to the end: (exit code, output)."""
    build = start_build(repo, env, log)
    try:
        code = build.proc.wait(timeout=BUILD_TIMEOUT)
    finally:
        kill(build)
    return code, build.output


KillPoint = Callable[[Build], None]  # returns when the build is to be killed


def after_moves(branch: str, moves: int) -> KillPoint:
    """Right after the move of `branch` that takes it to `moves` moves (its creation counts
    as one); for the ledger, one that records several transitions (a group commit) counts
    as that many, so the ledger's `moves` are its transitions."""
    def wait(build: Build) -> None:
        seen, last = 0, ref_value(build.repo, branch)
        while _going(build):
            value = ref_value(build.repo, branch)
            if value != last:
                seen, last = seen + 1, value
                if max(seen, reflog_position(build.repo, branch, value)) >= moves:
                    return
    return wait


def reflog_position(repo: Path, branch: str, value: str | None) -> int:
    """How many moves of `branch` it took to reach `value`, from the branch's reflog (0 when
    unknown): exact even when the watcher, starved of CPU, missed a move or two. A ledger
    move counts the transitions its reflog entry says it records."""
    try:
        lines = (repo / ".git" / "logs" / "refs" / "heads" / branch).read_text().splitlines()
    except OSError:
        return 0
    entries = [(line.split(" ", 2)[1], _weight(line)) for line in lines if line.count(" ") >= 2]
    news = [new for new, _ in entries]
    if value not in news:
        return 0
    upto = len(news) - news[::-1].index(value)
    return sum(weight for _, weight in entries[:upto])


def _weight(line: str) -> int:
    """Transitions a reflog entry records: `gastown ledger: N transition(s)`, else one move."""
    found = re.search(r"\tgastown ledger: (\d+) transition", line)
    return int(found.group(1)) if found else 1


def while_exists(relpath: str) -> KillPoint:
    """As soon as `relpath` (under the repository) exists, e.g. git's lock on a ref."""
    def wait(build: Build) -> None:
        path = build.repo / relpath
        while not path.exists() and _going(build):
            pass
    return wait


def _going(build: Build) -> bool:
    """The build still runs and has not outlived BUILD_TIMEOUT."""
    return build.proc.poll() is None and time.monotonic() - build.started < BUILD_TIMEOUT


def kill(build: Build) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(build.proc.pid, signal.SIGKILL)
    build.proc.wait()


def leftovers(mark: str) -> list[int]:
    """Live (not zombie) processes that carry the build's mark in their environment."""
    needle = f"{MARK}={mark}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            environ = (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().rsplit(") ", 1)[1][0]
            if needle in environ.split(b"\0") and state not in "ZX":
                found.append(int(entry.name))
    return found


def wait_gone(mark: str, timeout: float = 10.0) -> list[int]:
    """Processes of a killed build still running after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while (alive := leftovers(mark)) and time.monotonic() < deadline:
        time.sleep(0.02)  # sleep-ok: waiting, with a deadline, for orphans to end
    return alive


# -- the invariants ---------------------------------------------------------------------------

@dataclass
class Verdict:
    """What a rerun left behind, measured against the requirement."""

    problems: list[str] = field(default_factory=list)
    double: list[str] = field(default_factory=list)  # beads whose trailer is there twice
    lost: list[str] = field(default_factory=list)  # beads missing, or merged without their work

    @property
    def ok(self) -> bool:
        return not (self.problems or self.double or self.lost)

    def all(self) -> list[str]:
        return [*self.problems, *(f"merged twice: {b}" for b in self.double),
                *(f"lost: {b}" for b in self.lost)]


def trailer_counts(repo: Path, env: Mapping[str, str]) -> Counter[str]:
    out = git(repo, "log", "--first-parent", "--format=%(trailers:key=Gas-Bead,valueonly)",
              f"refs/heads/{INTO}", env=env)
    return Counter(line.strip() for line in out.splitlines() if line.strip())


def on_branch(repo: Path, commit: str | None, env: Mapping[str, str]) -> bool:
    if not commit:
        return False
    proc = subprocess.run(["git", "merge-base", "--is-ancestor", commit, f"refs/heads/{INTO}"],
                          cwd=repo, env=dict(env), capture_output=True)
    return proc.returncode == 0


def file_on_branch(repo: Path, bead: str, env: Mapping[str, str]) -> str | None:
    proc = subprocess.run(["git", "show", f"refs/heads/{INTO}:beads/{bead}.txt"], cwd=repo,
                          env=dict(env), capture_output=True, text=True)
    return proc.stdout if proc.returncode == 0 else None


def check(repo: Path, env: Mapping[str, str]) -> Verdict:
    """Everything the requirement promises after a crash and a complete rerun."""
    verdict = Verdict()
    counts = trailer_counts(repo, env)
    records = Ledger(repo, LEDGER).load()
    verdict.double = sorted(b for b, n in counts.items() if n > 1)
    if extra := sorted(set(counts) - set(BEADS)):
        verdict.problems.append(f"trailers of no bead on {INTO}: {extra}")
    for bead in BEADS:
        if _lost(repo, bead, counts, records.get(bead), env, verdict.problems):
            verdict.lost.append(bead)
    verdict.problems += stale_worktrees(repo, env)
    return verdict


def _lost(repo: Path, bead: str, counts: Counter[str], record: dict[str, Any] | None,
          env: Mapping[str, str], problems: list[str]) -> bool:
    """True when the bead's work is not on the branch; other disagreements go to problems."""
    state = (record or {}).get("state")
    if state != "merged":
        problems.append(f"{bead}: ledger says {state or 'nothing'}, not merged")
    elif not on_branch(repo, record.get("merge_commit"), env):
        problems.append(f"{bead}: merge_commit {record.get('merge_commit')} is not on {INTO}")
    if not counts[bead]:
        problems.append(f"{bead}: no Gas-Bead trailer on {INTO}")
    return counts[bead] == 0 or file_on_branch(repo, bead, env) != f"{bead}\n"


def stale_worktrees(repo: Path, env: Mapping[str, str]) -> list[str]:
    """Worktrees and gas/ branches of beads that are merged (all of them, after a rerun)."""
    listing = git(repo, "worktree", "list", "--porcelain", env=env)
    paths = [line.split(" ", 1)[1] for line in listing.splitlines()
             if line.startswith("worktree ")]
    pool = worktrees.pool_dir(repo).resolve()  # pooled worktrees are no bead's
    problems = [f"worktree left: {p}" for p in paths
                if Path(p).resolve() != repo.resolve() and Path(p).resolve().parent != pool]
    branches = git(repo, "for-each-ref", "--format=%(refname:short)", "refs/heads/gas/", env=env)
    problems += [f"branch left: {b}" for b in branches.split()]
    return problems


def history(repo: Path, bead: str) -> list[dict[str, Any]]:
    """The bead's ledger history entries ({at, state, note})."""
    record = Ledger(repo, LEDGER).load().get(bead) or {}
    return list(record.get("history", []))


# -- one round --------------------------------------------------------------------------------

@dataclass
class Snapshot:
    """The repository right after the kill."""

    transitions: int  # ledger transitions the killed build recorded (its creation included)
    states: dict[str, str]  # bead -> ledger state
    landed: set[str]  # beads whose trailer was on the integration branch

    def unrecorded(self) -> set[str]:
        """Merges that landed without their `merged` record: the rerun must recover them."""
        return {b for b in self.landed if self.states.get(b) != "merged"}

    def shown(self) -> str:
        return ", ".join(f"{b}={s}" for b, s in sorted(self.states.items())) or "no records"


def snapshot(repo: Path, env: Mapping[str, str]) -> Snapshot:
    made = reflog_position(repo, LEDGER, ref_value(repo, LEDGER))
    states = {b: r.get("state", "") for b, r in Ledger(repo, LEDGER).load().items()}
    landed = set(trailer_counts(repo, env)) if ref_value(repo, INTO) else set()
    return Snapshot(made, states, landed)


@dataclass
class Round:
    repo: Path
    killed_code: int | None  # the killed build's exit status (-9 when the kill landed)
    killed: Snapshot
    code: int  # the rerun's exit code
    output: str  # the rerun's output
    verdict: Verdict
    orphans: list[int]  # processes of the killed build still alive after the rerun
    seconds: float

    @property
    def survived(self) -> bool:
        return self.code == 0 and self.verdict.ok and not self.orphans


def crash_round(workdir: Path, env: Mapping[str, str], kill_at: KillPoint,
                on_kill: Callable[[Path], None] | None = None) -> Round:
    """Build in a fresh repo, SIGKILL it at `kill_at`, build again to the end, check."""
    started = time.monotonic()
    repo = make_scenario(workdir / "repo", env)
    killed = start_build(repo, env, workdir / "killed.log")
    kill_at(killed)
    kill(killed)
    at_kill = snapshot(repo, env)
    if on_kill is not None:
        on_kill(repo)
    code, output = run_build(repo, env, workdir / "rerun.log")
    orphans = wait_gone(killed.mark)
    return Round(repo, killed.proc.returncode, at_kill, code, output, check(repo, env),
                 orphans, time.monotonic() - started)


def clean_transitions(workdir: Path, env: Mapping[str, str]) -> int:
    """How many transitions (the ledger's creation included) a build nobody kills records."""
    repo = make_scenario(workdir / "repo", env)
    code, output = run_build(repo, env, workdir / "clean.log")
    if code != 0:
        raise SystemExit(f"a clean build failed (exit {code}):\n{output}")
    return reflog_position(repo, LEDGER, ref_value(repo, LEDGER))


# -- the bench --------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=20, help="rounds (default 20)")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: random)")
    args = p.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="gastown-chaos-") as tmp:
        env = hermetic_env(Path(tmp, "home"))
        total = clean_transitions(Path(tmp, "clean"), env)
        print(f"seed {seed}; a clean build makes {total} ledger transitions", flush=True)
        rounds = [_one(Path(tmp, f"round-{i}"), env, rng.randint(1, total), i, args.n)
                  for i in range(1, args.n + 1)]
    return _report(rounds)


def _one(workdir: Path, env: Mapping[str, str], moves: int, i: int, n: int) -> Round:
    result = crash_round(workdir, env, after_moves(LEDGER, moves))
    at_kill = result.killed
    recovered = f", recovered {sorted(at_kill.unrecorded())}" if at_kill.unrecorded() else ""
    status = "ok" if result.survived else "FAILED"
    if result.killed_code != -signal.SIGKILL:
        status += " (the build ended before the kill point)"
    print(f"[{i:>2}/{n}] kill after transition {moves:>2} ({at_kill.transitions} made; "
          f"{at_kill.shown()}) -> rerun exit {result.code}{recovered}, {status} "
          f"in {result.seconds:.1f}s", flush=True)
    for problem in [*result.verdict.all(), *(f"still running: pid {p}" for p in result.orphans)]:
        print(f"        {problem}", flush=True)
    if result.code != 0:
        print("        " + "\n        ".join(_why(result)), flush=True)
    for pid in result.orphans:  # the killed build's, still running: leave nothing behind
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    shutil.rmtree(workdir, ignore_errors=True)
    return result


def _why(result: Round) -> list[str]:
    """What a failed rerun said: unmerged beads' reasons, crash logs, the output's end."""
    lines = [f"{b}: {r.get('state')}: {r.get('reason')}"
             for b, r in sorted(Ledger(result.repo, LEDGER).load().items())
             if r.get("state") != "merged"]
    for log in sorted((result.repo / ".gastown" / "logs").glob("crash-*.log")):
        lines += [f"{log.name}:", *log.read_text(errors="replace").splitlines()[-12:]]
    return lines + result.output.splitlines()[-15:]


def _report(rounds: list[Round]) -> int:
    survived = sum(r.survived for r in rounds)
    double = sum(len(r.verdict.double) for r in rounds)
    lost = sum(len(r.verdict.lost) for r in rounds)
    recovered = sum(len(r.killed.unrecorded()) for r in rounds)
    print(f"merges recovered from their trailer: {recovered}")
    print(f"reruns with other problems: {sum(bool(r.verdict.problems) for r in rounds)}")
    print(f"reruns that left processes of the killed build: {sum(bool(r.orphans) for r in rounds)}")
    print(f"survived {survived}/{len(rounds)}, double merges {double}, lost beads {lost}")
    return 0 if survived == len(rounds) else 1


if __name__ == "__main__":
    raise SystemExit(main())
