"""The list of module files a build leaves for the next one's read-ahead, and the reader."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import gastown
from gastown import readahead
from tests.conftest import make_repo

ROOT = Path(__file__).resolve().parent.parent


def build(repo: Path, first: int) -> None:
    items = [{"id": f"b{n}", "run": f"echo {n} > out{n}.txt"} for n in range(first, first + 2)]
    (repo / "Gasfile.yaml").write_text(
        json.dumps({"version": 1, "backlogs": {"work": {"items": items}}}))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-m", "gastown", "build", "--plain"], cwd=repo, env=env,
                   check=True, capture_output=True)


def test_a_build_lists_the_files_of_its_imports_and_the_list_only_grows(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"README.md": "hi\n"})
    build(repo, 0)
    listed = (repo / readahead.LIST).read_text().splitlines()
    assert all(os.path.isabs(name) and os.path.isfile(name) for name in listed)
    package = Path(gastown.__file__).parent
    mine = {Path(name).name.split(".")[0] for name in listed if name.startswith(str(package))}
    assert {"lifecycle", "worktrees", "ledger", "executor"} <= mine
    assert any(f"{os.sep}doit{os.sep}" in name for name in listed)  # the executor's library
    assert any(name.endswith(".so") for name in listed)  # extension modules too

    readahead.remember(repo)  # this process imported pytest, which no build does
    grown = (repo / readahead.LIST).read_text().splitlines()
    assert set(listed) < set(grown) and any("pytest" in name for name in grown)
    inode = (repo / readahead.LIST).stat().st_ino
    build(repo, 2)  # a build that reads the list ahead, and finds nothing new to add
    assert (repo / readahead.LIST).stat().st_ino == inode


def test_the_reader_never_outlives_the_build(tmp_path: Path) -> None:
    readahead.start(tmp_path)  # no list: no reader
    assert readahead._reader is None
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # where a module was: cat waits there for a writer that never comes
    (tmp_path / readahead.LIST).parent.mkdir(parents=True)
    (tmp_path / readahead.LIST).write_text(f"{tmp_path / 'gone.pyc'}\n{fifo}\n")
    readahead.start(tmp_path)
    pid = readahead._reader
    assert pid is not None
    assert os.waitpid(pid, os.WNOHANG) == (0, 0)  # still reading
    readahead.stop()
    assert readahead._reader is None
    assert not Path(f"/proc/{pid}").exists()  # killed and reaped
