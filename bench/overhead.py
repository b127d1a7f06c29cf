"""gastown's own cost per bead: throughput with an instant agent, and the share of a run with
real-length agents that is not agent time.

    python bench/overhead.py [--instant 100] [--beads 20] [--seconds 30] [--settle 40]
                             [--repeat 3] [--dir D] [--server]

1. `--instant` independent beads whose command runner writes one file and exits at once, cap 8,
   on a small repository: beads per second end to end (`gas build` started to exited: worktree,
   polecat, commit, witness, merge, ledger, cleanup).
2. `--beads` independent beads whose agent works `--seconds` (a command sleeping, then writing
   a file), cap = `--beads`, so every bead runs at once: the agent time is `--seconds`, all else
   is gastown's. Prints the wall time of `gas build` (process start to exit), where the rest
   went (before the first agent started, after the last one ended, and how far apart the
   agents started), the share of the run when no agent was running, and the share that is not
   agent time (wall minus `--seconds`). In a new repository, then in a warm one (a first build
   filled its worktree pool), each measured build `--settle` seconds after the one before it.
   `--repeat` builds of each kind: single builds vary by a third of the figure on this machine,
   so the last line gives the median.

With `--server`, every `gas` runs as it does with GAS_SERVER=1: through a build server (a
private one, started before the first measured build and stopped at the end; gastown.server).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gastown.ledger import Ledger  # noqa: E402

IDENTITY = {"GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@localhost",
            "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@localhost"}


def gasfile(path: Path, run: str, beads: int, cap: int, first: int = 0) -> None:
    """A Gasfile of `beads` independent beads running `run` (ids from b<first>)."""
    ids = [f"b{n:03d}" for n in range(first, first + beads)]
    items = [{"id": bead, "run": run.format(id=bead)} for bead in ids]
    text = {"version": 1, "project": {"parallel": cap}, "backlogs": {"work": {"items": items}}}
    (path / "Gasfile.yaml").write_text(json.dumps(text, indent=1))


def make_repo(path: Path, run: str, beads: int, cap: int) -> Path:
    """A small repository with a Gasfile of `beads` independent beads running `run`."""
    path.mkdir(parents=True)
    gasfile(path, run, beads, cap)
    (path / "src").mkdir()
    for n in range(20):
        (path / "src" / f"m{n}.py").write_text(f"VALUE = {n}\n")
    (path / "out").mkdir()
    (path / "out" / ".keep").write_text("")
    env = {**os.environ, **IDENTITY}
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=path, check=True, env=env)
    subprocess.run(["git", "add", "-A"], cwd=path, check=True, env=env)
    subprocess.run(["git", "commit", "-qm", "bench"], cwd=path, check=True, env=env)
    return path


def build(repo: Path) -> tuple[float, float, float]:
    """Run `gas build`: (wall clock started, ended) as epoch seconds, and the wall time. As an
    installed gas runs: with Python's bytecode cache (a sandbox may turn it off), which the
    first build of the run fills."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    start, clock = time.time(), time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "gastown", "build", "--plain"], cwd=repo,
                          capture_output=True, text=True, env={**env, **IDENTITY})
    wall = time.monotonic() - clock
    if proc.returncode != 0:
        sys.exit(f"gas build failed ({proc.returncode}):\n{proc.stdout[-3000:]}{proc.stderr}")
    return start, start + wall, wall


def attempts(repo: Path) -> dict[str, tuple[float, float]]:
    """bead -> (agent started, agent ended) of its last attempt, as epoch seconds: the start
    the ledger recorded, plus the polecat's own duration."""
    spans = {}
    for bead, record in Ledger(repo).load().items():
        last = record["attempts"][-1]
        started = datetime.fromisoformat(last["started"].replace("Z", "+00:00")).timestamp()
        spans[bead] = (started, started + float(last["polecat_s"]))
    return spans


def throughput(work: Path, beads: int) -> float:
    repo = make_repo(work / "instant", "echo {id} > out/{id}.txt", beads, cap=8)
    _, _, wall = build(repo)
    print(f"instant agent, {beads} beads, cap 8: {wall:.2f} s, {beads / wall:.1f} beads/s "
          f"({wall / beads * 1000:.0f} ms per bead end to end)")
    return beads / wall


def warm_up(work: Path, beads: int, seconds: float) -> Path:
    """A repository gastown has built in before (its worktree pool filled by a first wave of
    beads), as a factory runs. The first wave's agents work 2 s, so that all of them run at
    once and each leaves its worktree in the pool (instant ones would reuse a few)."""
    repo = make_repo(work / "warm", "true", beads, cap=beads)
    gasfile(repo, "sleep 2 && echo {id} > out/{id}.txt", beads, cap=beads, first=500)
    build(repo)
    return repo


def share(repo: Path, beads: int, seconds: float, first: int, label: str) -> float:
    """The share of one build in `repo` of `beads` x `seconds`, ids from b<first>, that is not
    agent time."""
    gasfile(repo, f"sleep {seconds} && echo {{id}} > out/{{id}}.txt", beads, cap=beads,
            first=first)
    start, end, wall = build(repo)
    spans = [span for bead, span in attempts(repo).items()
             if first <= int(bead[1:]) < first + beads]
    begun, last = min(s for s, _ in spans), max(e for _, e in spans)
    overhead = wall - seconds
    idle = (begun - start) + (end - last)
    print(f"{beads} beads x {seconds:g} s, cap {beads}, {label}: wall {wall:.2f} s; before "
          f"the first agent {begun - start:.2f} s, after the last {end - last:.2f} s, agents "
          f"spread over {last - begun - seconds:.2f} s; no agent running {idle / wall:.1%}; "
          f"not agent time {overhead:.3f} s = {overhead / wall:.2%}", flush=True)
    return overhead / wall


def shares(work: Path, opts: argparse.Namespace) -> tuple[list[float], list[float]]:
    """(new repository, warm repository) shares, `--repeat` of each. Each measured build
    starts as a user's would, not a second after the build before it: on ext4 without a
    journal (this machine) making a file costs more while many were deleted in the last 30-35 s,
    and a build deletes hundreds (README)."""
    cold, warm = [], []
    for n in range(opts.repeat):
        if n:
            time.sleep(opts.settle)
        repo = make_repo(work / f"cold-{n}", "true", opts.beads, cap=opts.beads)
        cold.append(share(repo, opts.beads, opts.seconds, 0, "new repo"))
    warm_repo = warm_up(work, opts.beads, opts.seconds)
    for n in range(opts.repeat):
        time.sleep(opts.settle)
        warm.append(share(warm_repo, opts.beads, opts.seconds, 1000 + 100 * n, "warm repo"))
    return cold, warm


def start_server(work: Path) -> Path:
    """A build server of this bench's own (GAS_SERVER=1 for every gas run from now on), up:
    its socket's path."""
    runtime = work / "runtime"
    runtime.mkdir(mode=0o700)
    os.environ.update({"GAS_SERVER": "1", "XDG_RUNTIME_DIR": str(runtime)})
    code = "from gastown import server; print(server.address())"
    sock = Path(subprocess.run([sys.executable, "-c", code], cwd=work, check=True,
                               capture_output=True, text=True).stdout.strip())
    subprocess.run([sys.executable, "-m", "gastown", "--version"], cwd=work, check=True,
                   capture_output=True)  # finds none, starts one
    deadline = time.monotonic() + 60
    while not sock.exists():
        if time.monotonic() > deadline:
            sys.exit("the build server did not start")
        time.sleep(0.05)
    return sock


def stop_server(sock: Path) -> None:
    pid = sock.with_name(sock.name + ".lock").read_text().strip()
    if pid.isdigit():
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGTERM)


def main(argv: list[str] | None = None) -> None:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--instant", type=int, default=100)
    args.add_argument("--beads", type=int, default=20)
    args.add_argument("--seconds", type=float, default=30.0)
    args.add_argument("--settle", type=float, default=40.0,
                      help="seconds between one measured build and the next")
    args.add_argument("--repeat", type=int, default=3,
                      help="measured builds in a new repository, and in a warm one")
    args.add_argument("--dir", type=Path, help="where to make the repositories (default: the "
                      "system's temporary directory; /dev/shm leaves the disk out)")
    args.add_argument("--server", action="store_true",
                      help="run every gas through a build server (GAS_SERVER=1)")
    opts = args.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="gas-overhead-", dir=opts.dir))
    saved = dict(os.environ)
    sock = start_server(work) if opts.server else None
    try:
        cold, warm = shares(work, opts)
        rate = throughput(work, opts.instant)
    finally:
        if sock is not None:
            stop_server(sock)
        os.environ.clear()
        os.environ.update(saved)
        shutil.rmtree(work, ignore_errors=True)
    how = " through a build server" if opts.server else ""
    print(f"overhead{how}: {rate:.1f} beads/s with an instant agent; of a {opts.beads} x "
          f"{opts.seconds:g} s run, {statistics.median(warm):.2%} is not agent time "
          f"({statistics.median(cold):.2%} in a new repo; medians of {opts.repeat})")


if __name__ == "__main__":
    main()
