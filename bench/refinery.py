"""Batched refinery against a slow CI: python bench/refinery.py [--beads 40] [--batch 8]

Two fresh repositories, each with the same Gasfile: `--beads` independent beads (the command
runner, instant work: each writes out/<id>.txt), one of them planted bad, and a CI command that
takes `--ci-seconds` (a sleep: the workload of a real CI) and fails when the bad bead's file is
in the tree. `gas build` runs once with `refinery: {batch: 1}` (unbatched) and once with
`refinery: {batch: N}`, one after the other. For each it prints CI runs, CI runs per merged
bead and makespan (the build's wall time), and checks the result: every good bead's trailer
exactly once on the integration branch, the bad bead alone failed, and no first-parent commit
of the integration branch holding the bad bead's file. The last line is
`batched vs unbatched: X.Xx fewer CI runs, makespan Y.Yx; bad bead rejected alone: yes/no;
double merges: D` (Y = unbatched makespan / batched makespan).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

PY = sys.executable
INTO = "staging"
ROOT = Path(__file__).resolve().parent.parent
HERMETIC = {
    "GIT_AUTHOR_NAME": "Bench", "GIT_AUTHOR_EMAIL": "bench@localhost",
    "GIT_COMMITTER_NAME": "Bench", "GIT_COMMITTER_EMAIL": "bench@localhost",
    "GIT_CONFIG_NOSYSTEM": "1",
}
CI = '''\
import os, pathlib, sys, time
with open({runs!r}, "a") as runs:
    runs.write(os.environ.get("GAS_BEADS", "") + "\\n")
time.sleep({seconds!r})  # the CI's workload
if pathlib.Path("out", {bad!r} + ".txt").exists():
    print("{bad} breaks the build")
    sys.exit(1)
'''
GASFILE = '''\
version: 1
project: {{base: main, into: {into}, parallel: {parallel}}}
roles:
  refinery: {{ci: "{py} ci.py", batch: {batch}}}
backlogs:
  work:
    run: "mkdir -p out && echo $GAS_BEAD_ID > out/$GAS_BEAD_ID.txt"
    items: [{items}]
'''


@dataclass
class Outcome:
    label: str
    beads: list[str]
    bad: str
    seconds: float
    code: int
    ci_runs: list[list[str]]  # the beads each CI run tested
    trailers: Counter[str]
    failed: dict[str, str]
    bad_on_branch: bool  # some first-parent commit of INTO holds the bad bead's file

    @property
    def merged(self) -> int:
        return len(self.trailers)

    @property
    def double_merges(self) -> int:
        return sum(n - 1 for n in self.trailers.values())

    @property
    def rejected_alone(self) -> bool:
        good = set(self.beads) - {self.bad}
        return set(self.failed) == {self.bad} and set(self.trailers) == good \
            and not self.bad_on_branch

    def line(self) -> str:
        per = len(self.ci_runs) / self.merged if self.merged else float("nan")
        return (f"{self.label:<20} {len(self.beads)} beads, {self.merged} merged, failed: "
                f"{', '.join(sorted(self.failed)) or 'none'}; CI runs {len(self.ci_runs)} "
                f"({per:.2f} per merged bead); makespan {self.seconds:.1f}s")


def git(repo: Path, *args: str, env: Mapping[str, str]) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True,
                          env=dict(env)).stdout.strip()


def hermetic_env(home: Path) -> dict[str, str]:
    """os.environ without the user's git config, identity or GIT_* overrides."""
    home.mkdir(parents=True, exist_ok=True)
    config = home / ".gitconfig"
    config.write_text("[init]\n\tdefaultBranch = main\n[commit]\n\tgpgsign = false\n"
                      "[core]\n\thooksPath = /dev/null\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    pythonpath = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    return {**env, **HERMETIC, "HOME": str(home), "GIT_CONFIG_GLOBAL": str(config),
            "PYTHONPATH": pythonpath}


def make_repo(path: Path, env: Mapping[str, str], *, beads: list[str], bad: str, batch: int,
              parallel: int, ci_seconds: float) -> Path:
    path.mkdir(parents=True)
    items = ", ".join(f"{{id: {bead}}}" for bead in beads)
    files = {
        "README.md": "refinery bench\n",
        "ci.py": CI.format(runs=str(path.parent / "ci-runs"), seconds=ci_seconds, bad=bad),
        "Gasfile.yaml": GASFILE.format(into=INTO, parallel=parallel, py=PY, batch=batch,
                                       items=items),
    }
    git(path, "init", "-q", "-b", "main", env=env)
    for name, text in files.items():
        (path / name).write_text(text)
    git(path, "add", "-A", env=env)
    git(path, "commit", "-q", "-m", "initial", env=env)
    return path


def run(workdir: Path, label: str, env: Mapping[str, str], *, beads: list[str], bad: str,
        batch: int, parallel: int, ci_seconds: float) -> Outcome:
    repo = make_repo(workdir / "repo", env, beads=beads, bad=bad, batch=batch,
                     parallel=parallel, ci_seconds=ci_seconds)
    started = time.monotonic()
    with (workdir / "build.log").open("w") as log:
        proc = subprocess.run([PY, "-m", "gastown", "build", "--plain", "--json"], cwd=repo,
                              env=dict(env), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=log, text=True, timeout=3600)
    seconds = time.monotonic() - started
    result = json.loads(proc.stdout)
    runs = (workdir / "ci-runs").read_text().splitlines()
    return Outcome(label, beads, bad, seconds, proc.returncode, [r.split() for r in runs],
                   trailer_counts(repo, env), dict(result["failed"]),
                   bad_on_branch(repo, bad, env))


def trailer_counts(repo: Path, env: Mapping[str, str]) -> Counter[str]:
    out = git(repo, "log", "--first-parent", "--format=%(trailers:key=Gas-Bead,valueonly)",
              INTO, env=env)
    return Counter(line.strip() for line in out.splitlines() if line.strip())


def bad_on_branch(repo: Path, bad: str, env: Mapping[str, str]) -> bool:
    commits = git(repo, "log", "--first-parent", "--format=%H", INTO, env=env).split()
    return any(f"out/{bad}.txt" in git(repo, "ls-tree", "-r", "--name-only", c, env=env)
               for c in commits)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--beads", type=int, default=40, help="beads per build (default 40)")
    p.add_argument("--batch", type=int, default=8, help="the batched run's batch (default 8)")
    p.add_argument("--parallel", type=int, default=8, help="project.parallel (default 8)")
    p.add_argument("--ci-seconds", type=float, default=2.0, help="one CI run (default 2)")
    args = p.parse_args(argv)
    beads = [f"b{n:02d}" for n in range(1, args.beads + 1)]
    bad = beads[len(beads) // 2]
    print(f"{args.beads} beads (bad: {bad}), CI {args.ci_seconds:g}s, parallel {args.parallel}")
    outcomes = []
    with tempfile.TemporaryDirectory(prefix="gastown-refinery-") as tmp:
        env = hermetic_env(Path(tmp, "home"))
        for label, batch in (("unbatched (batch 1)", 1), (f"batched (batch {args.batch})",
                                                           args.batch)):
            workdir = Path(tmp, f"batch-{batch}")
            workdir.mkdir()
            outcome = run(workdir, label, env, beads=beads, bad=bad, batch=batch,
                          parallel=args.parallel, ci_seconds=args.ci_seconds)
            print(outcome.line(), flush=True)
            outcomes.append(outcome)
    unbatched, batched = outcomes
    print(f"{batched.label} CI run sizes: {' '.join(str(len(r)) for r in batched.ci_runs)}")
    alone = all(o.rejected_alone for o in outcomes)
    doubles = sum(o.double_merges for o in outcomes)
    print(f"batched vs unbatched: {len(unbatched.ci_runs) / len(batched.ci_runs):.1f}x fewer CI "
          f"runs, makespan {unbatched.seconds / batched.seconds:.1f}x; bad bead rejected alone: "
          f"{'yes' if alone else 'no'}; double merges: {doubles}")
    return 0 if alone and not doubles else 1


if __name__ == "__main__":
    raise SystemExit(main())
