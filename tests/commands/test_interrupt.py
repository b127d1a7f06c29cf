"""Ctrl-C during a build: the first press lets running beads finish and starts no more; a
second press (or SIGTERM) stops everything at once, the ledger says `interrupted`, and the
next build finishes the work."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import git, make_repo, trailers

# Each bead writes its pid and then blocks until a release file appears.
HANG = '''
import os, pathlib, sys, time
pids = pathlib.Path(os.environ["GAS_TEST_PIDS"])
pids.mkdir(exist_ok=True)
mine = pids / os.environ["GAS_BEAD_ID"]
mine.with_suffix(".tmp").write_text(str(os.getpid()))
mine.with_suffix(".tmp").rename(mine)  # appears whole: the test never reads a half-written pid
release = pids / "release"
while not release.exists():
    time.sleep(0.05)  # sleep-ok: this is the bead's work, not test synchronisation
pathlib.Path(os.environ["GAS_BEAD_ID"] + ".txt").write_text("done")
'''

GASFILE = f'''\
version: 1
project: {{parallel: 2}}
backlogs:
  slow:
    items:
      - {{id: s1, run: "{sys.executable} hang.py"}}
      - {{id: s2, run: "{sys.executable} hang.py"}}
      - {{id: s3, run: "{sys.executable} hang.py", needs: [s1]}}
'''


def wait_for(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)  # sleep-ok: polling a condition with a deadline


def alive(pid: int) -> bool:
    """Running, not merely a zombie (a container's PID 1 may never reap orphans)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return _state(pid) not in ("Z", "gone")


def start_build(tmp_path: Path) -> tuple[Path, Path, dict[str, str], subprocess.Popen[str]]:
    repo = make_repo(tmp_path / "repo", {"hang.py": HANG, "Gasfile.yaml": GASFILE})
    pids = tmp_path / "pids"
    env = {**os.environ, "GAS_TEST_PIDS": str(pids)}
    proc = subprocess.Popen([sys.executable, "-m", "gastown", "build", "--plain"], cwd=repo,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_for(lambda: (pids / "s1").exists() and (pids / "s2").exists())
    return repo, pids, env, proc


def read_until(proc: subprocess.Popen[str], text: str) -> str:
    """Read the build's output until a line holding `text` (the build prints as it goes)."""
    assert proc.stdout is not None
    seen = ""
    while text not in seen:
        line = proc.stdout.readline()
        assert line, f"the build ended without printing {text!r}:\n{seen}"
        seen += line
    return seen


def test_first_ctrl_c_lets_running_beads_finish(tmp_path: Path) -> None:
    repo, pids, env, proc = start_build(tmp_path)
    proc.send_signal(signal.SIGINT)
    read_until(proc, "INTERRUPT: nothing more dispatched; running beads finish")
    (pids / "release").write_text("go")
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out
    assert "1 Beads not dispatched: interrupted" in out
    assert sorted(trailers(repo)) == ["s1", "s2"]
    rerun = subprocess.run([sys.executable, "-m", "gastown", "build"], cwd=repo, env=env,
                           capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert sorted(trailers(repo)) == ["s1", "s2", "s3"]


@pytest.mark.parametrize("signals", [[signal.SIGINT, signal.SIGINT], [signal.SIGTERM]],
                         ids=["ctrl-c twice", "sigterm"])
def test_interrupt_stops_everything_and_next_build_resumes(tmp_path: Path,
                                                           signals: list[int]) -> None:
    repo, pids, env, proc = start_build(tmp_path)
    children = [int((pids / b).read_text()) for b in ("s1", "s2")]
    for n, sig in enumerate(signals, 1):
        proc.send_signal(sig)
        if n < len(signals):
            read_until(proc, "INTERRUPT: nothing more dispatched")
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out
    assert "INTERRUPTED: stopping every polecat" in out
    assert "Beads interrupted: 2" in out
    assert not any(alive(pid) for pid in children), {pid: _state(pid) for pid in children}
    for bead in ("s1", "s2"):
        record = json.loads(git(repo, "show", f"gt-ledger:{_path(bead)}"))
        assert record["state"] == "interrupted"
    (pids / "release").write_text("go")
    rerun = subprocess.run([sys.executable, "-m", "gastown", "build"], cwd=repo, env=env,
                           capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert sorted(trailers(repo)) == ["s1", "s2", "s3"]
    notes = [h["note"] for h in json.loads(git(repo, "show", f"gt-ledger:{_path('s1')}"))
             ["history"]]
    assert any(n.startswith("restarted cleanly from ") and "stopped while it was interrupted"
               in n for n in notes), notes


def _path(bead: str) -> str:
    from gastown.ledger import record_path

    return record_path(bead)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0]
    except OSError:
        return "gone"
