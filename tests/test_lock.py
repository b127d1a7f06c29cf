"""The build lock tells the next build whether the last one got to its end, and when it started:
only a killed build's processes are looked for, and only among those younger than it."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gastown import spawn
from gastown.lock import build_lock


def test_a_build_that_ends_says_so(tmp_path: Path) -> None:
    path = tmp_path / "build.lock"
    with build_lock(path, "first") as previous:
        assert previous == {}
    with build_lock(path, "second") as previous:
        assert previous["build"] == "first"
        assert previous["ended"] is True
        assert isinstance(previous["started"], int) and previous["started"] > 0


def test_a_build_that_did_not_end_leaves_no_mark(tmp_path: Path) -> None:
    path = tmp_path / "build.lock"
    with pytest.raises(RuntimeError), build_lock(path, "crashed"):
        raise RuntimeError("the build crashed")
    with build_lock(path, "next") as previous:
        assert previous["build"] == "crashed"
        assert "ended" not in previous


def _tagged_sleeper(build: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, spawn.BUILD_MARKER: build}
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], env=env)


def test_only_a_killed_build_is_swept(tmp_path: Path) -> None:
    """A process of the previous build is killed only when that build did not end; one started
    before that build (older than it, so not its own) is not even looked at."""
    proc = _tagged_sleeper("b-killed")
    try:
        with build_lock(tmp_path / "build.lock", "b-killed") as _:
            pass
        with build_lock(tmp_path / "build.lock", "next") as previous:
            assert spawn.sweep_build(previous) == 0  # it ended: nothing of it can be left
            assert proc.poll() is None
            # a build started after proc: proc is not one of its processes
            assert spawn.sweep_build({**previous, "ended": False, "started": 2**62}) == 0
            assert proc.poll() is None
            assert spawn.sweep_build({**previous, "ended": False, "started": 0}) == 1
        assert proc.wait(timeout=10) == -9
    finally:
        proc.kill()
        proc.wait()
