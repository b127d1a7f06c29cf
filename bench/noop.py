"""No-op rebuild at scale: python bench/noop.py [--sizes 1000,3000,10000] [--runs 3]

For each size N, a throwaway repository whose Gasfile compiles to N beads (two JSON backlogs,
one bead of the second needing one of the first, and a few chores needing a whole backlog),
all of them recorded merged in the ledger with their current fingerprints (written directly,
without running N builds), polecat and witness prompt templates as `gas init` writes them, the
repository packed as `git gc --auto` keeps it. Then `gas build` (which runs nothing) and
`gas status` are timed as subprocesses, after one build that makes .gastown/: the best wall
time of several runs and the peak RSS of the gas process.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gastown import ledger as ledger_mod  # noqa: E402
from gastown.commands.common import load  # noqa: E402
from gastown.ledger import Ledger  # noqa: E402

CHORES = 3
GASFILE = """\
version: 1
project: {parallel: 4}
roles:
  polecat: {runner: command, checks: ["true"]}
  witness: {checks: ["true"]}
backlogs:
  fix:
    from: backlog/fix.json
    run: "true fix {{ item.file }}"
    tags: [security]
  migrate:
    from: backlog/migrate.json
    run: "true migrate {{ item.file }}"
    needs: ["fix-{{ item.after }}"]
  chores:
    items:
%s
"""
GIT_ENV = {"GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@localhost",
           "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@localhost"}


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True,
                   env={**os.environ, **GIT_ENV})


def write_backlogs(repo: Path, n: int) -> None:
    fixes = (n - CHORES) // 2
    migrations = n - CHORES - fixes
    fix = [{"id": f"{i:05d}", "title": f"Fix finding {i} in src/mod{i}.py",
            "file": f"src/mod{i}.py", "rule": "no-eval", "line": i % 400 + 1}
           for i in range(fixes)]
    migrate = [{"id": f"{i:05d}", "title": f"Migrate lib/page{i}.js to TypeScript",
                "file": f"lib/page{i}.js", "after": f"{i % fixes:05d}"}
               for i in range(migrations)]
    (repo / "backlog").mkdir()
    (repo / "backlog" / "fix.json").write_text(json.dumps(fix, indent=1))
    (repo / "backlog" / "migrate.json").write_text(json.dumps(migrate, indent=1))
    chores = "\n".join(f'      - {{id: chore-{c}, title: "Chore {c}", run: "true", '
                       f'needs: [{"migrate" if c else "security"}]}}' for c in range(CHORES))
    (repo / "Gasfile.yaml").write_text(GASFILE % chores)


def make_repo(path: Path, n: int) -> Path:
    """A repository whose N beads are all merged with their current fingerprints."""
    git(path.parent, "init", "-q", "-b", "main", str(path))
    write_backlogs(path, n)
    prompts = path / "templates" / "prompts"
    shutil.copytree(ROOT / "gastown" / "data" / "prompts", prompts)  # as `gas init` writes
    git(path, "add", "-A")
    git(path, "commit", "-qm", "initial")
    git(path, "branch", "staging", "main")
    plan = load(cwd=path).plan
    assert len(plan.beads) == n, (len(plan.beads), n)
    head = subprocess.run(["git", "rev-parse", "main"], cwd=path, check=True, text=True,
                          capture_output=True).stdout.strip()
    records = [ledger_mod.transition(None, bead_id=b.id, state="merged", into="staging",
                                     merge_commit=head, fingerprint=b.fingerprint,
                                     backlog=b.backlog, title=b.title)
               for b in plan.beads.values()]
    Ledger(path).put_many(records, f"bench: {n} beads merged")
    git(path, "gc", "-q")  # a long-lived repository is packed
    return path


def measure(repo: Path, *args: str) -> tuple[float, float, str]:
    """Wall seconds and peak RSS (MiB) of one `gas ARGS` run, and its stdout+stderr."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "gastown", *args], cwd=repo, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    text = proc.stdout.read().decode(errors="replace")
    _, status, usage = os.wait4(proc.pid, 0)  # the child's own rusage, not all children's
    wall = time.perf_counter() - started
    proc.returncode = code = os.waitstatus_to_exitcode(status)
    proc.stdout.close()
    if code != 0:
        raise SystemExit(f"gas {' '.join(args)} exited {code}:\n{text[-2000:]}")
    return wall, usage.ru_maxrss / 1024, text


def best(repo: Path, runs: int, *args: str) -> tuple[float, float, str]:
    results = [measure(repo, *args) for _ in range(runs)]
    wall = min(r[0] for r in results)
    return wall, max(r[1] for r in results), results[-1][2]


def bench(n: int, runs: int, tmp: Path) -> dict[str, float]:
    started = time.perf_counter()
    repo = make_repo(tmp / f"repo-{n}", n)
    setup = time.perf_counter() - started
    first, _, _ = measure(repo, "build", "--plain")  # makes .gastown/, remembers the compile
    build, build_rss, out = best(repo, runs, "build", "--plain")
    if f"Up to date: {n} Beads already merged" not in out or "Dispatching" in out:
        raise SystemExit(f"the build at {n} was not a no-op:\n{out[-2000:]}")
    status, status_rss, out = best(repo, runs, "status")
    if f"{n} merged" not in out:
        raise SystemExit(f"gas status at {n} does not show every bead merged:\n{out[-500:]}")
    return {"n": n, "setup": setup, "first": first, "build": build, "build_rss": build_rss,
            "status": status, "status_rss": status_rss}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,3000,10000")
    parser.add_argument("--runs", type=int, default=3, help="runs per command; the best counts")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = []
    with tempfile.TemporaryDirectory(prefix="gastown-noop-") as tmp:
        for n in sizes:
            rows.append(bench(n, args.runs, Path(tmp)))
            r = rows[-1]
            print(f"{n:>6} beads: build {r['build']:6.2f}s {r['build_rss']:6.1f} MiB   "
                  f"status {r['status']:6.2f}s {r['status_rss']:6.1f} MiB   "
                  f"(first build {r['first']:.2f}s, setup {r['setup']:.1f}s)", flush=True)
    first, last = rows[0], rows[-1]
    ratio = last["n"] / first["n"]
    print("cost per extra bead (linear: the same between every pair of sizes): " + ", ".join(
        f"{_k(a['n'])}->{_k(b['n'])} build {_per_bead(a, b, 'build')} "
        f"status {_per_bead(a, b, 'status')}" for a, b in itertools.pairwise(rows)))
    print(f"status growth {_k(first['n'])}->{_k(last['n'])}: "
          f"{last['status'] / first['status']:.1f}x, "
          f"peak memory growth {last['build_rss'] / first['build_rss']:.1f}x")
    print(f"no-op build at {last['n']}: {last['build']:.2f}s, status: {last['status']:.2f}s, "
          f"growth {_k(first['n'])}->{_k(last['n'])}: {last['build'] / first['build']:.1f}x "
          f"(linear = {ratio:g}x)")


def _per_bead(a: dict[str, float], b: dict[str, float], what: str) -> str:
    return f"{(b[what] - a[what]) / (b['n'] - a['n']) * 1e6:.0f} us"


def _k(n: int) -> str:
    return f"{n // 1000}k" if n % 1000 == 0 else str(n)


if __name__ == "__main__":
    main()
