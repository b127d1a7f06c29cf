"""A worktree per bead on a generated 20,000-file repository: fresh checkout vs the pool.

    python bench/worktrees.py [--files 20000] [--beads 10] [--parallel 8] [--rounds 2]

Each bead is provisioned the way lifecycle.py does it: add() at the integration tip, work (a
few tracked edits, a commit, ignored build output and __pycache__, an untracked file), the tip
moved by a commit that changes a few files (what a merged bead does), then remove(). Its time
is that of add() and remove() only. `fresh` is the previous code (`git worktree add` and
`git worktree remove` under one lock); `pool` is gastown.worktrees, measured once the pool is
warm: the first bead, or the first `--parallel` beads at once, are not counted (a build pays
for them once; the fresh way has nothing to warm). Sequentially over `--beads` beads, then
`--parallel` threads at once, `--rounds` beads each: their add()s start together, as do
their remove()s, and the work and merges (not timed) run after every add() has ended. The
last line printed is `pool vs fresh: sequential Xx, 8 at once Yx`.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gastown import git, worktrees

IDENTITY = {"GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@localhost",
            "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@localhost"}
PER_DIR = 100  # files per directory: pkg<NN>/mod<N>/f<i>.py
CHANGED = 5  # files each merged bead changes

Add = Callable[[Path, str, str], Path]
Remove = Callable[[Path, Path], None]


def make_repo(path: Path, files: int) -> Path:
    """`files` small Python files in nested directories, one commit on main."""
    path.mkdir(parents=True)
    git.run("init", "-q", "-b", "main", cwd=path)
    for n in range(files):
        target = path / _name(n)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(f'"""Module {n}."""\n\nVALUE = {n}\n' + "# padding\n" * 20)
    (path / ".gitignore").write_text("build/\n__pycache__/\n*.pyc\n")
    git.run("add", "-A", cwd=path)
    git.run("commit", "-q", "-m", "generated", cwd=path)
    worktrees.ensure_excluded(path)
    return path


def _name(n: int) -> str:
    return f"pkg{n // (PER_DIR * 10):02d}/mod{n // PER_DIR % 10}/f{n}.py"


class Tip:
    """The integration branch; each merged bead moves it by a commit changing a few files."""

    def __init__(self, root: Path, files: int) -> None:
        self.root, self.files, self.count = root, files, 0
        self.lock = threading.Lock()

    def get(self) -> str:
        return git.out("rev-parse", "main", cwd=self.root)

    def merge(self) -> None:
        with self.lock:
            self.count += 1
            index = self.root / ".git" / "bench-index"
            env = {"GIT_INDEX_FILE": str(index)}
            git.run("read-tree", "main", cwd=self.root, env=env)
            for k in range(CHANGED):
                name = _name((self.count * 7919 + k * 104729) % self.files)
                blob = git.out("hash-object", "-w", "--stdin", cwd=self.root,
                               input=f"VALUE = {self.count}\n")
                git.run("update-index", "--cacheinfo", f"100644,{blob},{name}", cwd=self.root,
                        env=env)
            tree = git.out("write-tree", cwd=self.root, env=env)
            commit = git.out("commit-tree", tree, "-p", "main", "-m", f"merge {self.count}",
                             cwd=self.root)
            git.run("update-ref", "refs/heads/main", commit, cwd=self.root)
            index.unlink()


# -- the two ways to get a worktree -------------------------------------------------------------

_old_lock = threading.Lock()


def fresh_add(root: Path, name: str, start: str) -> Path:
    """The previous worktrees.add(): a full checkout, under the admin lock."""
    path = worktrees.worktree_dir(root, name)
    fresh_remove(root, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _old_lock:
        git.run("worktree", "add", "-f", "--quiet", "-B", worktrees.branch_name(name),
                str(path), start, cwd=root)
    return path


def fresh_remove(root: Path, path: Path) -> None:
    """The previous worktrees.remove()."""
    if not path.exists():
        return
    with _old_lock:
        git.run("worktree", "remove", "--force", "--force", str(path), cwd=root, check=False)
    shutil.rmtree(path, ignore_errors=True)


def pool_add(root: Path, name: str, start: str) -> Path:
    return worktrees.add(root, name, start, branch=worktrees.branch_name(name))


# -- one bead -----------------------------------------------------------------------------------

@dataclass
class Times:
    add: list[float] = field(default_factory=list)
    remove: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def per_bead(self) -> float:
        return statistics.mean(a + r for a, r in zip(self.add, self.remove, strict=True))

    def line(self) -> str:
        return (f"{self.per_bead():8.3f} s/bead (add {statistics.mean(self.add):.3f}, "
                f"remove {statistics.mean(self.remove):.3f})")


def bead(root: Path, tip: Tip, name: str, add: Add, remove: Remove, times: Times | None,
         together: threading.Barrier | None = None) -> None:
    wait = together.wait if together else (lambda: 0)
    base = tip.get()
    wait()
    clock = time.perf_counter()
    tree = add(root, name, base)
    added = time.perf_counter() - clock
    wait()
    work(tree, name)
    tip.merge()
    wait()
    clock = time.perf_counter()
    remove(root, tree)
    removed = time.perf_counter() - clock
    git.run("branch", "-D", worktrees.branch_name(name), cwd=root, check=False)
    if times is not None:
        with times.lock:
            times.add.append(added)
            times.remove.append(removed)


def work(tree: Path, name: str) -> None:
    """What a polecat leaves: edits committed, an untracked file, ignored build output."""
    for path in sorted((tree / "pkg00" / "mod0").iterdir())[:3]:
        path.write_text(f"# {name}\n" + path.read_text())
    worktrees.commit_all(tree, f"{name}: work")
    (tree / "scratch.txt").write_text(name)
    out = tree / "build" / "lib"
    out.mkdir(parents=True)
    for n in range(50):
        (out / f"{n}.o").write_bytes(os.urandom(256))
    cache = tree / "pkg00" / "mod1" / "__pycache__"
    cache.mkdir(parents=True, exist_ok=True)
    (cache / "f100.cpython-311.pyc").write_bytes(b"\0" * 512)


# -- the runs -----------------------------------------------------------------------------------

def sequential(root: Path, tip: Tip, add: Add, remove: Remove, beads: int, tag: str) -> Times:
    bead(root, tip, f"{tag}-warm", add, remove, None)
    os.sync()  # what the warm-up wrote is on disk before the clock starts
    times = Times()
    for n in range(beads):
        bead(root, tip, f"{tag}-{n}", add, remove, times)
    return times


def at_once(root: Path, tip: Tip, add: Add, remove: Remove, parallel: int, rounds: int,
            tag: str, *, warm_up: bool) -> Times:
    """`parallel` beads start together (their add()s at the same moment, from the same tip),
    work, merge, and end together (their remove()s at the same moment); `rounds` times."""
    warm = [add(root, f"{tag}-warm-{n}", tip.get()) for n in range(parallel if warm_up else 0)]
    for tree in warm:
        remove(root, tree)
        git.run("branch", "-D", worktrees.branch_name(tree.name), cwd=root, check=False)
    os.sync()
    times, errors = Times(), []
    together = threading.Barrier(parallel)

    def worker(n: int) -> None:
        try:
            for k in range(rounds):
                bead(root, tip, f"{tag}-{n}-{k}", add, remove, times, together)
        except Exception as exc:
            errors.append(exc)
            together.abort()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(parallel)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return times


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--beads", type=int, default=10, help="sequential beads measured")
    parser.add_argument("--parallel", type=int, default=8, help="beads at once")
    parser.add_argument("--rounds", type=int, default=2, help="beads per thread at once")
    args = parser.parse_args(argv)
    for key, value in IDENTITY.items():
        os.environ.setdefault(key, value)
    with tempfile.TemporaryDirectory(prefix="gastown-bench-") as tmp:
        clock = time.perf_counter()
        root = make_repo(Path(tmp, "repo"), args.files)
        print(f"repo: {args.files:,} files, generated in {time.perf_counter() - clock:.1f} s")
        tip = Tip(root, args.files)
        fresh = sequential(root, tip, fresh_add, fresh_remove, args.beads, "fresh")
        print(f"sequential, {args.beads} beads: fresh {fresh.line()}")
        pool = sequential(root, tip, pool_add, worktrees.remove, args.beads, "pool")
        print(f"sequential, {args.beads} beads: pool  {pool.line()}")
        many = args.parallel * args.rounds
        fresh_many = at_once(root, tip, fresh_add, fresh_remove, args.parallel, args.rounds,
                             "fresh", warm_up=False)
        print(f"{args.parallel} at once, {many} beads: fresh {fresh_many.line()}")
        pool_many = at_once(root, tip, pool_add, worktrees.remove, args.parallel, args.rounds,
                            "pool", warm_up=True)
        print(f"{args.parallel} at once, {many} beads: pool  {pool_many.line()}")
        print(f"pool vs fresh: sequential {fresh.per_bead() / pool.per_bead():.0f}x, "
              f"{args.parallel} at once {fresh_many.per_bead() / pool_many.per_bead():.0f}x")


if __name__ == "__main__":
    main()
