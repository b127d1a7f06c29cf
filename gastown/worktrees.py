"""Per-bead git worktrees under .gastown/worktrees/, and the .gastown/ working area.

A fresh worktree of a large repository costs a full checkout (seconds at 20,000 files), so
worktrees are kept: remove() detaches a bead's worktree and moves it into the pool
(.gastown/worktrees/_pool/<random name>), and add() moves a pooled one to the next bead's path,
checks out the new start there with `git checkout --force` (only the paths that differ are
rewritten) and deletes every untracked and ignored file (`git clean -ffdx`). The bead's worktree is
always .gastown/worktrees/<bead> (what the logs, `gas show` and GAS_WORKTREE name): a move is a
rename plus one admin file, done without a git process. The pool is the directory listing itself,
so it survives a crash; an entry a crash left unsound is deleted, never used.
"""
from __future__ import annotations

import os
import re
import shutil
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from gastown import git

STATE_DIR = ".gastown"
POOL = "_pool"  # .gastown/worktrees/_pool/<random>: detached worktrees waiting for a bead
POOL_SIZE = 16  # at least this many are kept (a build keeps as many as its cap)
STALE_LOCK = 2.0  # seconds: a shared lock file older than this was left by a killed git
TRASH = "trash"  # .gastown/trash/<random>: worktrees being deleted, outside the admin lock


class _SharedLock:
    """Any number of `shared()` holders at once, or one `exclusive()` one (who, once waiting,
    goes before new shared holders)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._shared = 0
        self._exclusive = False
        self._queued = 0

    @contextmanager
    def shared(self) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: not self._exclusive and not self._queued)
            self._shared += 1
        try:
            yield
        finally:
            with self._cond:
                self._shared -= 1
                self._cond.notify_all()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._cond:
            self._queued += 1
            self._cond.wait_for(lambda: not self._exclusive and not self._shared)
            self._queued -= 1
            self._exclusive = True
        try:
            yield
        finally:
            with self._cond:
                self._exclusive = False
                self._cond.notify_all()


# `git worktree add` and `prune` write the admin dirs under .git/worktrees (a prune that runs
# while an add is half done deletes the new worktree's admin dir), and every git command that
# lists the worktrees (`worktree add` itself) dies on an admin file another one is still
# writing: they hold `_admin` exclusively. Our own moves replace admin files atomically, so
# they only share it (a prune between a move's rename and its relink would unregister the
# worktree). Checkouts and cleans run outside it, in parallel.
_admin = _SharedLock()
# The pool's listing: which entry a claim takes, which slot a return fills (the moves
# themselves run outside it, in parallel: a wave of beads starting at once would queue here).
_pool_lock = threading.Lock()
_claiming: set[Path] = set()  # pooled worktrees being moved out
_arriving: set[Path] = set()  # pool slots a worktree is being moved into

# What a worktree's own git dir keeps when it changes hands; the rest is the last owner's
# (a rebase, merge or bisect in progress, reflog, per-worktree config, a killed git's lock).
_ADMIN_KEEP = frozenset({"HEAD", "commondir", "gitdir", "index"})
CLEAN = "gastown-clean"  # in a pooled worktree's admin dir: "clean" when scrubbed as pooled
# Admin files emptied in place, not deleted, as a worktree changes hands: each file deleted and
# made again costs an inode, and on ext4 without a journal every new file is slower to make
# while many were deleted in the last 30 s (a wave of beads does both at once).
_ADMIN_EMPTIED = frozenset({CLEAN, "COMMIT_EDITMSG"})
# A bead's branch and its worktree's HEAD keep no reflog: the branch is deleted as it merges
# (its story is in the ledger and the merge commit), and each reflog is two more files made
# and deleted per bead.
NO_REFLOG = ("-c", "core.logAllRefUpdates=false")
INDEX_READ_LIMIT = 256 * 1024  # bytes: a larger index is checked by git (faster there)


class _Unsound(Exception):
    """A pooled worktree that cannot be trusted to come back clean."""


def state_dir(root: Path) -> Path:
    return root / STATE_DIR


def worktree_dir(root: Path, name: str) -> Path:
    return state_dir(root) / "worktrees" / name


def pool_dir(root: Path) -> Path:
    return worktree_dir(root, POOL)


def branch_name(bead_id: str) -> str:
    return f"gas/{bead_id}"


def common_dir(root: Path) -> Path:
    """The repository's shared git dir (read once per directory per process)."""
    return _common_dir(Path(root).resolve())


@cache
def _common_dir(root: Path) -> Path:
    found = git.dirs(root)
    path = found[1] if found else Path(git.out("rev-parse", "--git-common-dir", cwd=root))
    return (root / path).resolve()


def ensure_excluded(root: Path) -> None:
    """Keep .gastown/ out of `git status` without touching the user's .gitignore."""
    exclude = common_dir(root) / "info" / "exclude"
    exclude.parent.mkdir(parents=True, exist_ok=True)
    lines = exclude.read_text().splitlines() if exclude.exists() else []
    if f"/{STATE_DIR}/" not in lines and f"{STATE_DIR}/" not in lines:
        exclude.write_text("\n".join([*lines, f"/{STATE_DIR}/"]) + "\n")


@cache
def identity_env(root: Path) -> dict[str, str]:
    """A committer identity for repos (and CI machines) that have none configured."""
    env: dict[str, str] = {}
    found = git.run("config", "--get-regexp", r"^user\.(name|email)$", cwd=root, check=False)
    configured = {line.split(" ", 1)[0] for line in found.stdout.splitlines()
                  if line.partition(" ")[2].strip()}
    for key, fallback in (("name", "gastown"), ("email", "gastown@localhost")):
        if f"user.{key}" in configured:
            continue
        for role in ("AUTHOR", "COMMITTER"):  # what the environment sets, git uses
            if not os.environ.get(f"GIT_{role}_{key.upper()}"):
                env[f"GIT_{role}_{key.upper()}"] = fallback
    return env


def add(root: Path, name: str, start: str, *, branch: str | None) -> Path:
    """A clean worktree at `start` (on `branch`, reset there, or detached): a pooled one when
    the pool has one, else a fresh checkout."""
    path = worktree_dir(root, name)
    remove(root, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not _from_pool(root, path, start, branch):
        _fresh(root, path, start, branch)
    return path


def remove(root: Path, path: Path, *, keep: int | None = None) -> None:
    """Done with a worktree: detached and pooled (deleted when the pool holds POOL_SIZE, or
    `keep` if more: a build keeps one per bead it runs at once, or the worktree is unsound).
    Its branch is checked out nowhere once this returns."""
    if not path.exists() and not path.is_symlink():
        return
    try:
        pooled = _to_pool(root, path, keep)
    except (git.GitError, OSError, _Unsound):
        pooled = False
    if not pooled:
        _discard(root, path)


def _from_pool(root: Path, path: Path, start: str, branch: str | None) -> bool:
    try:
        if not _claim(root, path):
            return False
        _refresh(path, start, branch)
        return True
    except (git.GitError, OSError, _Unsound):
        _discard(root, path)
        return False


def _fresh(root: Path, path: Path, start: str, branch: str | None) -> None:
    """Registered under the lock, checked out outside it."""
    target = ["-B", branch] if branch else ["--detach"]
    with _admin.exclusive():
        git.run(*NO_REFLOG, "worktree", "add", "-f", "--quiet", "--no-checkout", *target,
                str(path), start, cwd=root)
    git.run(*NO_REFLOG, "checkout", "--force", "--quiet", cwd=path, env=_confined(path))


def _claim(root: Path, path: Path) -> bool:
    """Move a sound pooled worktree to `path`; False when the pool has none."""
    doomed: list[Path] = []
    claimed = False
    while not claimed and (entry := _take(root)) is not None:
        try:
            with _admin.shared():
                claimed = _sound(root, entry) and _move(root, entry, path)
                if not claimed:
                    doomed += [_to_trash(root, p) for p in (entry, path) if p.exists()]
        finally:
            with _pool_lock:
                _claiming.discard(entry)
    if doomed:
        with _admin.exclusive():
            _prune(root)
    for gone in doomed:
        shutil.rmtree(gone, ignore_errors=True)
    return claimed


def _refresh(path: Path, start: str, branch: str | None) -> None:
    """The last owner's work gone: `start` checked out (only changed paths are rewritten),
    every untracked and ignored file deleted, no operation in progress. A worktree scrubbed
    when it was pooled (its admin dir holds the CLEAN mark) needs the checkout alone: the
    scrub is done as the last bead ends, not as the next one starts (where a wave of beads
    starting at once waits for it)."""
    env = _confined(path)
    admin = _admin_dir(path)
    scrubbed = admin is not None and _marked_clean(admin)
    if not scrubbed:
        _check_flags(path, admin)
    _forget_operations(path)  # the CLEAN mark goes too: this owner may leave anything
    target = ["--ignore-other-worktrees", "-B", branch, start] if branch else ["--detach", start]
    git.run(*NO_REFLOG, "checkout", "--force", "--quiet", "--no-recurse-submodules", *target,
            cwd=path, env=env)
    if not scrubbed:
        git.run("clean", "-ffdxq", cwd=path, env=env)


def _check_flags(path: Path, admin: Path | None) -> _Index | None:
    """No index entry is marked assume-unchanged or skip-worktree (checkout would trust such
    an entry's file as it is): read here for a small index (which is returned), by
    `git ls-files -v` else."""
    index = _read_index(admin / "index") if admin else None
    flagged = index.flagged if index else None
    if flagged is None:
        tags = {line[:1] for line in git.out("ls-files", "-v", cwd=path,
                                             env=_confined(path)).splitlines()}
        flagged = bool(tags - {"H", "M"})
    if flagged:
        raise _Unsound(f"{path}: index entries marked assume-unchanged or skip-worktree")
    return index


@dataclass
class _Index:
    flagged: bool  # an entry is marked assume-valid or skip-worktree
    paths: set[bytes]  # every entry's path


def _read_index(index: Path) -> _Index | None:
    """The entries of this version 2 or 3 index (gitformat-index); None when git should be
    asked (a large or newer index, or one this reading does not follow to its end exactly)."""
    try:
        data = index.read_bytes() if index.stat().st_size <= INDEX_READ_LIMIT else b""
    except OSError:
        return None
    if len(data) < 12 or data[:4] != b"DIRC":
        return None
    version, count = struct.unpack(">II", data[4:12])
    if version not in (2, 3):
        return None
    for oid_size in (20, 32):  # sha1, sha256: whichever walks the entries exactly
        found = _walk_index(data, count, oid_size)
        if found is not None:
            return found
    return None


def _walk_index(data: bytes, count: int, oid_size: int) -> _Index | None:
    pos, found = 12, _Index(False, set())
    for _ in range(count):
        head = pos + 40 + oid_size  # ctime mtime dev ino mode uid gid size, then the id
        if head + 2 > len(data):
            return None
        flags = struct.unpack(">H", data[head:head + 2])[0]
        name = head + 2
        if flags & 0x4000:  # extended flags (version 3): skip-worktree is 0x4000
            found.flagged |= bool(struct.unpack(">H", data[name:name + 2])[0] & 0x4000)
            name += 2
        found.flagged |= bool(flags & 0x8000)  # assume-valid
        end = data.find(b"\0", name)
        if end < 0 or (flags & 0xFFF) not in (end - name, 0xFFF):
            return None
        found.paths.add(data[name:end])
        pos += (end - pos + 8) // 8 * 8  # entries are NUL-padded to a multiple of 8 bytes
    return found if pos <= len(data) else None


def _untracked(top: Path, paths: set[bytes]) -> bool:
    """Whether the worktree holds anything its index does not (what `git clean -ffdx` would
    delete: untracked or ignored files, empty directories), or a directory where the index
    has a file. Stops at the first one."""
    dirs = _parents(paths)
    pending = [b""]
    while pending:
        rel = pending.pop()
        try:
            with os.scandir(os.fsencode(top) + b"/" + rel) as entries:
                found = [(rel + entry.name, entry.is_dir(follow_symlinks=False))
                         for entry in entries if rel or entry.name != b".git"]
        except OSError:
            return True
        for name, is_dir in found:
            if name in paths and not is_dir:
                continue
            if name not in dirs or not is_dir:
                return True
            pending.append(name + b"/")
    return False


def _parents(paths: set[bytes]) -> set[bytes]:
    """Every directory holding one of `paths`."""
    dirs: set[bytes] = set()
    for path in paths:
        cut = path.rfind(b"/")
        while cut > 0 and path[:cut] not in dirs:
            dirs.add(path[:cut])
            cut = path.rfind(b"/", 0, cut)
    return dirs


def _scrub(path: Path) -> None:
    """Every untracked and ignored file deleted and the index checked now; CLEAN says so to
    the next owner (a kill before the mark leaves a worktree the next owner scrubs itself).
    A worktree holding only what its index lists (looked at here when the index is small)
    needs no `git clean`."""
    admin = _admin_dir(path)
    index = _check_flags(path, admin)
    if index is None or _untracked(path, index.paths):
        git.run("clean", "-ffdxq", cwd=path, env=_confined(path))
    if admin is not None:
        (admin / CLEAN).write_bytes(b"clean\n")


def _marked_clean(admin: Path) -> bool:
    try:
        return (admin / CLEAN).read_bytes() == b"clean\n"
    except OSError:
        return False


def _forget_operations(path: Path) -> None:
    admin = _admin_dir(path)
    if admin is None:
        raise _Unsound(f"{path}: not a worktree")
    if (admin / "modules").exists():  # git clean does not empty a checked-out submodule
        raise _Unsound(f"{path}: submodules checked out")
    _clear_admin(admin)


def forget_operations(path: Path) -> None:
    """No merge, rebase, cherry-pick or bisect in progress in the linked worktree `path` any
    more (what `git merge --abort` and friends would end, in one go and without a process)."""
    admin = _admin_dir(path)
    if admin is not None:
        _clear_admin(admin)


def _clear_admin(admin: Path) -> None:
    for item in admin.iterdir():
        if item.name in _ADMIN_KEEP or item.name.startswith("sharedindex."):
            continue
        if item.name in _ADMIN_EMPTIED and item.is_file() and not item.is_symlink():
            os.truncate(item, 0)
        elif item.is_dir() and not item.is_symlink():
            shutil.rmtree(item)
        else:
            item.unlink()


def _to_pool(root: Path, path: Path, keep: int | None) -> bool:
    if not _sound(root, path) or not _detach(path):
        return False
    _forget_operations(path)  # a rebase in progress would still hold its branch
    if len(_pool_entries(root)) >= max(POOL_SIZE, keep or 0):
        return False  # full: not worth scrubbing
    _scrub(path)
    slot = _free_slot(root, keep)
    if slot is None:
        return False
    try:
        with _admin.shared():
            return _move(root, path, slot)
    finally:
        with _pool_lock:
            _arriving.discard(slot)


def _detach(path: Path) -> bool:
    """HEAD at the commit it is at, on no branch (what `update-ref --no-deref HEAD HEAD` does,
    without a process when HEAD and its branch are loose ref files): a pooled worktree holds
    no branch. False when HEAD is at no commit."""
    admin = _admin_dir(path)
    commit = git.read_ref("HEAD", path)
    if admin is None or commit is None:
        return git.run("update-ref", "--no-deref", "HEAD", "HEAD", cwd=path,
                       env=_confined(path), check=False).returncode == 0
    _replace(admin / "HEAD", commit)
    return True


def _take(root: Path) -> Path | None:
    """A pooled worktree no other thread is claiming, now this thread's to claim."""
    with _pool_lock:
        entry = next((e for e in _pool_entries(root) if e not in _claiming | _arriving), None)
        if entry is not None:
            _claiming.add(entry)
        return entry


def _free_slot(root: Path, keep: int | None) -> Path | None:
    """A new name in the pool (never one a killed move may have left registered), held for
    this thread's move; None when the pool is full."""
    with _pool_lock:
        pool, entries = pool_dir(root), set(_pool_entries(root))
        # a slot arriving counts once: it may be in the pool already, its move ending
        filling = sum(slot.parent == pool and slot not in entries for slot in _arriving)
        if len(entries) + filling >= max(POOL_SIZE, keep or 0):
            return None
        pool.mkdir(parents=True, exist_ok=True)
        slot = pool / os.urandom(6).hex()
        _arriving.add(slot)
        return slot


def _move(root: Path, src: Path, dst: Path) -> bool:
    """What `git worktree move` does, without a process: the directory renamed, then the
    admin dir's `gitdir` (and a relative `.git` link, whose depth may change) pointed at the
    new place, each file replaced atomically so that a git listing the worktrees meanwhile
    reads the old path or the new one, never half a file. A kill between the two leaves a
    worktree that is not _sound(), which is discarded. The caller holds the locks, and has
    checked that no submodule is checked out in it (it would come back unclean)."""
    admin = _admin_dir(src)
    if admin is None:
        return False
    try:
        link = (admin / "gitdir").read_text().strip()
        dotgit = (src / ".git").read_text().strip().removeprefix("gitdir: ")
        src.rename(dst)
    except OSError:
        return False
    target = dst.absolute() / ".git"
    _replace(admin / "gitdir", str(target) if os.path.isabs(link) else
             os.path.relpath(target, admin))
    if not os.path.isabs(dotgit):
        _replace(dst / ".git", f"gitdir: {os.path.relpath(admin, dst.absolute())}")
    return True


def _replace(path: Path, line: str) -> None:
    """`path` holds `line` now: written beside it, then renamed over it."""
    temp = path.with_name(f"{path.name}.gas-{os.urandom(4).hex()}")
    temp.write_text(line + "\n")
    temp.replace(path)


def _pool_entries(root: Path) -> list[Path]:
    try:
        with os.scandir(pool_dir(root)) as entries:
            return sorted(Path(e.path) for e in entries if e.is_dir(follow_symlinks=False))
    except FileNotFoundError:
        return []


def _discard(root: Path, path: Path) -> None:
    """Delete a worktree: renamed into the trash and unregistered under the lock (cheap), its
    files deleted outside it."""
    gone = _to_trash(root, path)
    with _admin.exclusive():
        _prune(root)
    shutil.rmtree(gone, ignore_errors=True)


def _to_trash(root: Path, path: Path) -> Path:
    """Out of the way at once; where it is now (itself when it could not be moved)."""
    trash = state_dir(root) / TRASH / os.urandom(16).hex()
    try:
        trash.parent.mkdir(parents=True, exist_ok=True)
        path.rename(trash)
    except OSError:
        return path
    return trash


def _sound(root: Path, path: Path) -> bool:
    """A worktree of this repository whose registration points back at it (a kill in the
    middle of a move, or an agent's `rm -rf .git`, leaves one that is not)."""
    admin = _admin_dir(path)
    if admin is None or admin.parent != _admin_root(root):
        return False
    try:
        back = Path((admin / "gitdir").read_text().strip())
    except OSError:
        return False
    return (admin / back).resolve() == (path / ".git").resolve()


def _admin_dir(path: Path) -> Path | None:
    """The worktree's own git dir, read from its `.git` file."""
    try:
        text = (path / ".git").read_text().strip()
    except OSError:  # missing, or a directory: not a linked worktree
        return None
    if not text.startswith("gitdir: "):
        return None
    admin = (path / text.removeprefix("gitdir: ")).resolve()
    return admin if admin.is_dir() else None


@cache
def _admin_root(root: Path) -> Path:
    return (common_dir(root) / "worktrees").resolve()


def _confined(path: Path) -> dict[str, str]:
    """git run in `path` must find the repository there: without its `.git` it would walk up
    to the main checkout (which holds .gastown/) and reset or clean that instead."""
    return {"GIT_CEILING_DIRECTORIES": str(path.resolve().parent)}


def restore(root: Path, name: str, branch: str) -> Path | None:
    """The worktree of a bead whose merge failed, back at its branch for the user to look at
    (it was pooled as the bead went to merge); None when the branch is gone."""
    tip = git.rev(f"refs/heads/{branch}", cwd=root)
    return add(root, name, tip, branch=branch) if tip else None


def delete_branches(root: Path, branches: list[str]) -> None:
    """Delete these branches in one git process (one by one if that transaction fails);
    `update-ref` does not list the worktrees, as `branch -D` does, so a pooled worktree whose
    HEAD still names one does not stop it."""
    if not branches:
        return
    lines = "".join(f"delete refs/heads/{branch}\n" for branch in branches)
    if git.run("update-ref", "--stdin", cwd=root, input=lines, check=False).returncode == 0:
        return
    for branch in branches:
        git.run("update-ref", "-d", f"refs/heads/{branch}", cwd=root, check=False)


def leftovers(root: Path) -> list[str]:
    """Names of the bead (and refinery) worktree directories under .gastown/worktrees/; the
    pool is not one."""
    parent = state_dir(root) / "worktrees"
    if not parent.is_dir():
        return []
    return sorted(p.name for p in parent.iterdir() if p.is_dir() and p.name != POOL)


def bead_branches(root: Path) -> list[str]:
    """Bead ids that have a gas/<id> branch."""
    out = git.out("for-each-ref", "--format=%(refname)", "refs/heads/gas/", cwd=root)
    return [ref.removeprefix("refs/heads/gas/") for ref in out.split()]


def clear_ref_locks(root: Path, branches: list[str]) -> list[str]:
    """Remove the `<ref>.lock` files a killed git left on branches only gastown moves
    (`branches` and every gas/ bead branch): git refuses to move a ref while its lock is there.
    Also `packed-refs.lock` (every branch deletion takes it) once it is old enough that no
    live git holds it. Only for a caller that holds the build lock, so that no gastown git
    can be holding one."""
    common = common_dir(root)
    heads = common / "refs" / "heads"
    locks = [heads / f"{branch}.lock" for branch in branches]
    locks += sorted((heads / "gas").rglob("*.lock")) if (heads / "gas").is_dir() else []
    if _stale(common / "packed-refs.lock"):
        locks.append(common / "packed-refs.lock")
    removed = []
    for lock in locks:
        if lock.is_file():
            lock.unlink(missing_ok=True)
            removed.append(str(lock.relative_to(common)))
    return removed


def _stale(lock: Path) -> bool:
    """True when `lock` is still there STALE_LOCK seconds after it was made: a live git holds
    packed-refs.lock for milliseconds (and waits 1 s for it before giving up)."""
    while True:
        try:
            age = time.time() - lock.stat().st_mtime
        except FileNotFoundError:
            return False
        if age >= STALE_LOCK:
            return True
        time.sleep(min(0.05, STALE_LOCK - age))


def prune(root: Path) -> None:
    """Forget worktrees whose directories are gone (a crashed build, a user's rm -rf); delete
    pooled worktrees a crash left unsound, and what a killed build left in the trash."""
    with _pool_lock, _admin.exclusive():
        doomed = [_to_trash(root, p) for p in _pool_entries(root) if not _sound(root, p)]
        _prune(root)
    trash = state_dir(root) / TRASH
    for gone in [*doomed, *(trash.iterdir() if trash.is_dir() else [])]:
        shutil.rmtree(gone, ignore_errors=True)


def _prune(root: Path) -> None:
    """`git worktree prune`, our half-made registrations included; the caller holds `_admin`
    exclusively (no add of ours is under way)."""
    _unlock_missing(root)
    git.run("worktree", "prune", cwd=root, check=False)


def _unlock_missing(root: Path) -> None:
    """`git worktree add` locks the worktree it is making ("initializing") until it is done:
    one killed in between leaves a locked registration of a missing directory, which prune
    keeps and every later add of that path refuses. Only ours (under .gastown/worktrees/)
    are unlocked, and those killed before git wrote where the worktree is (no `gitdir`: no
    worktree can be in use through it); a user's locked worktree is left alone."""
    ours = (state_dir(root) / "worktrees").resolve()
    admins = _admin_root(root)
    for lock in admins.glob("*/locked") if admins.is_dir() else []:
        try:
            target = Path((lock.parent / "gitdir").read_text().strip())
        except FileNotFoundError:
            lock.unlink(missing_ok=True)
            continue
        except OSError:
            continue
        where = (lock.parent / target).parent
        if where.resolve().is_relative_to(ours) and not where.exists():
            lock.unlink(missing_ok=True)


def reset(worktree: Path, commit: str, *, keep_ignored: bool = False) -> None:
    """Back to `commit`: tracked and untracked changes gone (ignored files too, unless kept),
    untracked nested repositories included."""
    env = _confined(worktree)
    git.run(*NO_REFLOG, "reset", "--quiet", "--hard", commit, cwd=worktree, env=env)
    git.run("clean", "-ffdq" if keep_ignored else "-ffdxq", cwd=worktree, env=env)


def commit_all(worktree: Path, message: str, base: str | None = None) -> tuple[int, int, int]:
    """Commit everything the polecat changed; (files, insertions, deletions) from `base`
    (default: HEAD before this commit) to HEAD then, (0, 0, 0) when nothing changed. When
    HEAD was at `base`, that is the summary `git commit` prints itself: no `git diff`."""
    env = _confined(worktree)
    on_base = base is None or git.rev("HEAD", cwd=worktree) == base
    git.run("add", "-A", cwd=worktree, env=env)
    done = git.run(*git.NO_AUTO_GC, *NO_REFLOG, "commit", "--no-verify", "-m", message,
                   cwd=worktree, env={**env, **identity_env(_top(worktree))}, check=False)
    if done.returncode != 0:
        if git.run("diff", "--cached", "--quiet", cwd=worktree, env=env,
                   check=False).returncode != 0:
            raise git.GitError(["commit"], done.returncode, done.stdout + done.stderr)
        if on_base:
            return 0, 0, 0  # nothing to commit, nor committed before
    summary = _summary(done.stdout) if on_base and done.returncode == 0 else None
    return summary or diff_stat(worktree, base or "HEAD^")


_SUMMARY = re.compile(r" (\d+) files? changed(?:, (\d+) insertions?\(\+\))?"
                      r"(?:, (\d+) deletions?\(-\))?")


def _summary(out: str) -> tuple[int, int, int] | None:
    """(files, insertions, deletions) from the summary `git commit` prints (None when it is
    not there in English: another locale's words, say)."""
    for line in out.splitlines()[1:]:
        if found := _SUMMARY.fullmatch(line):
            return int(found[1]), int(found[2] or 0), int(found[3] or 0)
    return None


def _top(worktree: Path) -> Path:
    """The main checkout of a linked worktree."""
    return common_dir(worktree).parent


def diff_stat(worktree: Path, base: str) -> tuple[int, int, int]:
    """(files, insertions, deletions) between `base` and the worktree's HEAD."""
    return numstat(git.out("diff", "--numstat", base, "HEAD", cwd=worktree,
                           env=_confined(worktree)))


def numstat(out: str) -> tuple[int, int, int]:
    """(files, insertions, deletions) of `git diff --numstat` output (binary files count as
    files only)."""
    files = ins = dels = 0
    for row in out.splitlines():
        added, deleted, _ = row.split("\t", 2)
        files += 1
        ins += int(added) if added.isdigit() else 0
        dels += int(deleted) if deleted.isdigit() else 0
    return files, ins, dels


def checked_out_branches(root: Path) -> dict[str, str]:
    """branch name -> worktree path, for every worktree of the repo."""
    out = git.out("worktree", "list", "--porcelain", cwd=root)
    result: dict[str, str] = {}
    path = ""
    for line in out.splitlines():
        if line.startswith("worktree "):
            path = line[len("worktree "):]
        elif line.startswith("branch refs/heads/"):
            result[line[len("branch refs/heads/"):]] = path
    return result
