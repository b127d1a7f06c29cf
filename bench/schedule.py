"""How close gas gets to the scheduling bound, next to make -j8 and plain doit.

A seeded random DAG of 150 beads (fan-in/fan-out like real backlogs, a few long chains), each
bead sleeping 0.5-3 s, cap 8. LB = max(critical path, total work / cap). gas runs the whole
bead lifecycle (worktree, checks, merge, ledger); make and doit run the bare sleeps.
Prints makespan / LB for each, gas last.   Usage: python bench/schedule.py [--beads 150]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CAP = 8


def make_dag(n: int, seed: int) -> tuple[dict[str, float], dict[str, list[str]]]:
    rng = random.Random(seed)
    ids = [f"b{i:03d}" for i in range(n)]
    sleep = {b: round(rng.uniform(0.5, 3.0), 2) for b in ids}
    needs: dict[str, list[str]] = {b: [] for b in ids}
    for i, bead in enumerate(ids[1:], 1):
        if rng.random() < 0.45:
            needs[bead] = sorted(set(rng.sample(ids[:i], k=min(i, rng.choice([1, 1, 2, 3])))))
    for start in rng.sample(range(0, n - 12), 3):  # a few long chains
        for a, b in zip(ids[start:start + 12], ids[start + 1:start + 12], strict=False):
            needs[b] = sorted(set(needs[b]) | {a})
    return sleep, needs


def bound(sleep: dict[str, float], needs: dict[str, list[str]]) -> float:
    finish: dict[str, float] = {}
    for bead in sleep:  # ids are in topological order: needs point backwards
        finish[bead] = sleep[bead] + max((finish[n] for n in needs[bead]), default=0.0)
    return max(max(finish.values()), sum(sleep.values()) / CAP)


def timed(argv: list[str], cwd: Path) -> float:
    start = time.monotonic()
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{argv[0]} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return time.monotonic() - start


def run_make(work: Path, sleep: dict[str, float], needs: dict[str, list[str]]) -> float:
    rules = [f"{b}: {' '.join(needs[b])}\n\t@sleep {s}" for b, s in sleep.items()]
    text = f".PHONY: all {' '.join(sleep)}\nall: {' '.join(sleep)}\n" + "\n".join(rules) + "\n"
    (work / "Makefile").write_text(text)
    return timed(["make", f"-j{CAP}", "-s", "all"], work)


DODO = '''
import json, sys
from doit.doit_cmd import DoitMain
from doit.cmd_base import ModuleTaskLoader
spec = json.load(open("dag.json"))
def task_bead():
    for bead, seconds in spec["sleep"].items():
        yield {"name": bead, "actions": [f"sleep {seconds}"],
               "task_dep": [f"bead:{n}" for n in spec["needs"][bead]]}
sys.exit(DoitMain(ModuleTaskLoader(globals()), config_filenames=()).run(
    ["run", "-n", "CAP", "-P", "thread", "--db-file", ".doit.db"]))
'''.replace("CAP", str(CAP))


def run_doit(work: Path, sleep: dict[str, float], needs: dict[str, list[str]]) -> float:
    (work / "dag.json").write_text(json.dumps({"sleep": sleep, "needs": needs}))
    (work / "dodo_bench.py").write_text(DODO)
    return timed([sys.executable, "dodo_bench.py"], work)


def run_gas(work: Path, sleep: dict[str, float], needs: dict[str, list[str]]) -> float:
    items = [{"id": b, "run": f"sleep {s} && echo {b} > out/{b}.txt", "needs": needs[b]}
             for b, s in sleep.items()]
    gasfile = {"version": 1, "project": {"parallel": CAP},
               "backlogs": {"dag": {"items": items}}}
    (work / "Gasfile.yaml").write_text(json.dumps(gasfile))
    (work / "out").mkdir()
    (work / "out" / ".keep").write_text("")
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.com"]
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=work, check=True)
    subprocess.run(["git", "add", "-A"], cwd=work, check=True)
    subprocess.run([*git, "commit", "-qm", "bench"], cwd=work, check=True)
    env_argv = [sys.executable, "-m", "gastown", "build", "--plain"]
    return timed(env_argv, work)


def main() -> None:
    args = argparse.ArgumentParser()
    args.add_argument("--beads", type=int, default=150)
    args.add_argument("--seed", type=int, default=7)
    opts = args.parse_args()
    sleep, needs = make_dag(opts.beads, opts.seed)
    lb = bound(sleep, needs)
    print(f"{opts.beads} beads, seed {opts.seed}, cap {CAP}: work {sum(sleep.values()):.1f}s, "
          f"LB {lb:.1f}s; machine: {os.cpu_count()} cores")
    results = {}
    for name, runner in (("make -j8", run_make), ("doit (FIFO)", run_doit), ("gas", run_gas)):
        work = Path(tempfile.mkdtemp(prefix="gas-schedule-"))
        try:
            results[name] = runner(work, sleep, needs)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        print(f"{name:<12} makespan {results[name]:6.1f}s  = {results[name] / lb:.2f} x LB")
    print(f"gas makespan / LB: {results['gas'] / lb:.2f} (make -j8: "
          f"{results['make -j8'] / lb:.2f}, doit: {results['doit (FIFO)'] / lb:.2f})")


if __name__ == "__main__":
    main()
