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

import locale
import os
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from stat import S_ISREG

from gastown import git, objects

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
_claiming: set[str] = set()  # pooled worktrees being moved out
_preparing: set[str] = set()  # pooled worktrees prepare() is checking out
_prepared: dict[str, str] = {}  # pooled worktree -> the commit prepare() checked it out at
_pool_changed = threading.Condition(_pool_lock)  # a prepare() of one ended
_arriving: set[str] = set()  # pool slots a worktree is being moved into

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
    # read as `git config --get-regexp '^user\.(name|email)$'` prints them
    found = "".join(f"{key} {value}\n" if value is not None else f"{key}\n"
                    for key, value in git.settings(root).entries if key.startswith("user."))
    configured = {line.split(" ", 1)[0] for line in found.splitlines()
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
    if not _from_pool(root, path, start, branch):  # a claim needs no mkdir: the pool is in it
        path.parent.mkdir(parents=True, exist_ok=True)
        _fresh(root, path, start, branch)
    return path


def remove(root: Path, path: Path, *, keep: int | None = None) -> None:
    """Done with a worktree: detached and pooled (deleted when the pool holds POOL_SIZE, or
    `keep` if more: a build keeps one per bead it runs at once, or the worktree is unsound).
    Its branch is checked out nowhere once this returns."""
    if not os.path.lexists(path):
        return
    try:
        pooled = _to_pool(root, path, keep)
    except (git.GitError, OSError, _Unsound):
        pooled = False
    if not pooled:
        _discard(root, path)


def _from_pool(root: Path, path: Path, start: str, branch: str | None) -> bool:
    try:
        admin = _claim(root, path, start)
        if admin is None:
            return False
        _refresh(path, start, branch, admin)
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


def _claim(root: Path, path: Path, start: str | None = None) -> str | None:
    """Move a sound pooled worktree (one prepared at `start` if any) to `path`: its admin
    dir; None when the pool has none."""
    doomed: list[Path] = []
    claimed: str | None = None
    while claimed is None and (entry := _take(root, start)) is not None:
        try:
            with _admin.shared():
                links = _sound_links(root, entry)
                if links is not None and _move(root, entry, path, links):
                    claimed = links.admin
                else:
                    doomed += [_to_trash(root, p) for p in (entry, path) if p.exists()]
        finally:
            with _pool_lock:
                _claiming.discard(str(entry))
    if doomed:
        with _admin.exclusive():
            _prune(root)
    for gone in doomed:
        _rmtree(gone)
    return claimed


def _refresh(path: Path, start: str, branch: str | None, admin: str) -> None:
    """The last owner's work gone: `start` checked out (only changed paths are rewritten),
    every untracked and ignored file deleted, no operation in progress. A worktree scrubbed
    when it was pooled (its admin dir holds the CLEAN mark) needs the checkout alone: the
    scrub is done as the last bead ends, not as the next one starts (where a wave of beads
    starting at once waits for it). `admin` is its admin dir, as its claim found it."""
    env = _confined(path)
    scrubbed = _marked_clean(admin)
    ready = scrubbed and branch is not None and _ready_at(admin) == start
    if not scrubbed:
        _check_flags(path, admin)
    _forget_operations(path, admin)  # the CLEAN mark goes too: this owner may leave anything
    if ready and _branch_here(path, admin, branch or "", start):
        return
    target = ["--ignore-other-worktrees", "-B", branch, start] if branch else ["--detach", start]
    git.run(*NO_REFLOG, "checkout", "--force", "--quiet", "--no-recurse-submodules", *target,
            cwd=path, env=env)
    if not scrubbed:
        git.run("clean", "-ffdxq", cwd=path, env=env)


def _check_flags(path: Path, admin: str) -> objects.Index | None:
    """No index entry is marked assume-unchanged or skip-worktree (checkout would trust such
    an entry's file as it is): read here for a small index (which is returned), by
    `git ls-files -v` else."""
    index = objects.parse_index(os.path.join(admin, "index"))
    flagged = index.flagged if index else None
    if flagged is None:
        tags = {line[:1] for line in git.out("ls-files", "-v", cwd=path,
                                             env=_confined(path)).splitlines()}
        flagged = bool(tags - {"H", "M"})
    if flagged:
        raise _Unsound(f"{path}: index entries marked assume-unchanged or skip-worktree")
    return index


def _untracked(top: Path, paths: set[bytes]) -> bool:
    """Whether the worktree holds anything its index does not (what `git clean -ffdx` would
    delete: untracked or ignored files, empty directories), or a directory where the index
    has a file. Stops at the first one."""
    dirs, base, pending = _parents(paths), os.fsencode(top) + b"/", [b""]
    while pending:
        rel = pending.pop()
        try:
            with os.scandir(base + rel) as entries:
                for entry in entries:
                    name = rel + entry.name
                    if name == b".git":  # the top's link to its git dir
                        continue
                    if not entry.is_dir(follow_symlinks=False):
                        if name not in paths:
                            return True
                    elif name not in dirs:
                        return True
                    else:
                        pending.append(name + b"/")
        except OSError:
            return True
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


def _scrub(path: Path, admin: str) -> None:
    """Every untracked and ignored file deleted and the index checked now; CLEAN says so to
    the next owner (a kill before the mark leaves a worktree the next owner scrubs itself).
    A worktree holding only what its index lists (looked at here when the index is small)
    needs no `git clean`. `admin` is its admin dir."""
    index = _check_flags(path, admin)
    if index is None or _untracked(path, index.paths):
        git.run("clean", "-ffdxq", cwd=path, env=_confined(path))
    _write(os.path.join(admin, CLEAN), b"clean\n")


def _marked_clean(admin: str) -> bool:
    return _mark(admin) is not None


def _ready_at(admin: str) -> str | None:
    """The commit a prepare() checked this scrubbed worktree out at, detached, if one did."""
    mark = _mark(admin)
    return mark[6:-1].decode("ascii") if mark and mark != b"clean\n" else None


def _mark(admin: str) -> bytes | None:
    """The CLEAN mark: "clean", or "clean <commit>" after prepare()."""
    try:
        mark = git.read_bytes(os.path.join(admin, CLEAN), 128)
    except OSError:
        return None
    if mark == b"clean\n" or (mark.startswith(b"clean ") and mark.endswith(b"\n")
                              and len(mark) in (47, 71)):
        return mark
    return None


def _forget_operations(path: Path, admin: str) -> None:
    """What forget_operations() does, to the worktree `path` whose admin dir is `admin`;
    refused with a submodule checked out in it."""
    if os.path.exists(os.path.join(admin, "modules")):  # git clean does not empty them
        raise _Unsound(f"{path}: submodules checked out")
    _clear_admin(admin)


def forget_operations(path: Path) -> None:
    """No merge, rebase, cherry-pick or bisect in progress in the linked worktree `path` any
    more (what `git merge --abort` and friends would end, in one go and without a process)."""
    links = _links(path)
    if links is not None:
        _clear_admin(links.admin)


def _clear_admin(admin: str | Path) -> None:
    with os.scandir(admin) as entries:
        items = list(entries)
    for item in items:
        if item.name in _ADMIN_KEEP or item.name.startswith("sharedindex."):
            continue
        if item.name in _ADMIN_EMPTIED and item.is_file(follow_symlinks=False):
            os.truncate(item.path, 0)
        elif item.is_dir(follow_symlinks=False):
            _rmtree(item.path, ignore_errors=False)
        else:
            os.unlink(item.path)


def _to_pool(root: Path, path: Path, keep: int | None) -> bool:
    links = _sound_links(root, path)  # read once: no step below changes them
    if links is None or not _detach(path, links.admin):
        return False
    _forget_operations(path, links.admin)  # a rebase in progress would still hold its branch
    slot = _free_slot(root, keep)  # held while it is scrubbed
    if slot is None:
        return False  # full: not worth scrubbing
    try:
        _scrub(path, links.admin)
        with _admin.shared():
            return _move(root, path, slot, links)
    finally:
        with _pool_lock:
            _arriving.discard(str(slot))


def _detach(path: Path, admin: str) -> bool:
    """HEAD at the commit it is at, on no branch (what `update-ref --no-deref HEAD HEAD` does,
    without a process when HEAD and its branch are loose ref files): a pooled worktree holds
    no branch. False when HEAD is at no commit. `admin` is its admin dir."""
    common = git.common_of(admin)
    commit = git.ref_in("HEAD", admin, common) if common is not None else None
    if commit is None:
        return git.run("update-ref", "--no-deref", "HEAD", "HEAD", cwd=path,
                       env=_confined(path), check=False).returncode == 0
    _replace(os.path.join(admin, "HEAD"), commit)
    return True


def _take(root: Path, start: str | None = None) -> Path | None:
    """A pooled worktree no other thread is claiming, now this thread's to claim: one
    prepare() checked out at `start` if there is one; while the only ones left are being
    prepared, one of those once it is."""
    with _pool_changed:
        while True:
            pool = pool_dir(root)
            busy = _in_pool(pool, _claiming | _arriving | _preparing)
            names = [name for name in _pool_names(root) or () if name not in busy]
            if names:
                name = next((n for n in names if _prepared.get(str(pool / n)) == start),
                            names[0])
                _claiming.add(str(entry := pool / name))
                _prepared.pop(str(entry), None)
                return entry
            if not _in_pool(pool, _preparing):
                return None
            _pool_changed.wait()


def prepare(root: Path, start: str, count: int) -> threading.Thread:
    """Check out up to `count` scrubbed pooled worktrees at `start` (detached) on a thread of
    its own, one after the other, ahead of the beads that will claim them: a bead starting
    from `start` that claims one then only puts it on its branch, with no git process. Its
    mark says at which commit (a later change to the worktree, or a claim, clears it)."""
    thread = threading.Thread(target=_prepare, args=(root, start, count), daemon=True,
                              name="pool-prepare")
    thread.start()
    return thread


def _prepare(root: Path, start: str, count: int) -> None:
    for _ in range(count):
        with _pool_changed:
            pool = pool_dir(root)
            busy = _in_pool(pool, _claiming | _arriving | _preparing)
            name = next((n for n in _pool_names(root) or () if n not in busy
                         and str(pool / n) not in _prepared), None)
            if name is None:
                return
            _preparing.add(str(entry := pool / name))
        try:
            if _checked_out_ahead(root, entry, start):
                _prepared[str(entry)] = start
        except (git.GitError, OSError, _Unsound):
            pass  # its claimer checks it out, or deletes it, itself
        finally:
            with _pool_changed:
                _preparing.discard(str(entry))
                _pool_changed.notify_all()


def _checked_out_ahead(root: Path, entry: Path, start: str) -> bool:
    links = _sound_links(root, entry)
    if links is None or not _marked_clean(links.admin) or not git.hooks_absent(
            root, ("post-checkout", "reference-transaction")):
        return False
    git.run(*NO_REFLOG, "checkout", "--force", "--quiet", "--no-recurse-submodules",
            "--detach", start, cwd=entry, env=_confined(entry))
    _write(os.path.join(links.admin, CLEAN), b"clean %s\n" % start.encode("ascii"))
    return True


def _branch_here(path: Path, admin: str, branch: str, start: str) -> bool:
    """What `git checkout -B <branch> <start>` does in a clean worktree already at `start`
    (detached, index fresh): the branch made or reset at `start` (git.write_loose_ref) and
    HEAD on it. False, with HEAD unchanged, where git must do it."""
    common = git.common_of(admin)
    if common is None or git.ref_in("HEAD", admin, common) != start or \
            not git.write_loose_ref(common, f"refs/heads/{branch}", start):
        return False
    _replace(Path(admin) / "HEAD", f"ref: refs/heads/{branch}")
    return True


def _free_slot(root: Path, keep: int | None) -> Path | None:
    """A new name in the pool (never one a killed move may have left registered), held for
    this thread's scrub and move; None when the pool is full."""
    with _pool_lock:
        pool, names = pool_dir(root), _pool_names(root)
        # a slot arriving counts once: it may be in the pool already, its move ending
        filling = len(_in_pool(pool, _arriving) - set(names or ()))
        if len(names or ()) + filling >= max(POOL_SIZE, keep or 0):
            return None
        if names is None:  # no pool yet
            pool.mkdir(parents=True, exist_ok=True)
        slot = pool / os.urandom(6).hex()
        _arriving.add(str(slot))
        return slot


def _in_pool(pool: Path, paths: set[str]) -> set[str]:
    """The names of those of `paths` that are in `pool`."""
    return {name for parent, name in map(os.path.split, paths) if parent == str(pool)}


def _move(root: Path, src: Path, dst: Path, links: _Links | None = None) -> bool:
    """What `git worktree move` does, without a process: the directory renamed, then the
    admin dir's `gitdir` (and a relative `.git` link, whose depth may change) pointed at the
    new place, each file replaced atomically so that a git listing the worktrees meanwhile
    reads the old path or the new one, never half a file. A kill between the two leaves a
    worktree that is not _sound(), which is discarded. The caller holds the locks, and has
    checked that no submodule is checked out in it (it would come back unclean). `links`:
    as _sound_links() read them (read here when not given)."""
    if links is None:
        links = _links(src)
    if links is None:
        return False
    admin = links.admin
    try:
        link = links.gitdir
        if link is None:
            link = git.read_text(os.path.join(admin, "gitdir")).strip()
        os.rename(src, dst)
    except OSError:
        return False
    target = dst.absolute() / ".git"
    _replace(os.path.join(admin, "gitdir"), str(target) if os.path.isabs(link) else
             os.path.relpath(target, admin))
    if not os.path.isabs(links.dotgit):
        _replace(dst / ".git", f"gitdir: {os.path.relpath(admin, dst.absolute())}")
    return True


def _replace(path: str | Path, line: str) -> None:
    """`path` holds `line` now: written beside it, then renamed over it."""
    temp = f"{path}.gas-{os.urandom(4).hex()}"
    _write(temp, (line + "\n").encode(locale.getpreferredencoding(False)))
    os.replace(temp, path)


def _write(path: str, data: bytes) -> None:
    """What `Path(path).write_bytes(data)` does, with no file object."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    try:
        git.write_all(fd, data)
    finally:
        os.close(fd)


def _pool_entries(root: Path) -> list[Path]:
    pool = pool_dir(root)
    return [pool / name for name in _pool_names(root) or ()]


def _pool_names(root: Path) -> list[str] | None:
    """The names of the pool's entries, sorted; None when there is no pool."""
    try:
        with os.scandir(pool_dir(root)) as entries:
            return sorted(e.name for e in entries if e.is_dir(follow_symlinks=False))
    except FileNotFoundError:
        return None


def _discard(root: Path, path: Path) -> None:
    """Delete a worktree: renamed into the trash and unregistered under the lock (cheap), its
    files deleted outside it."""
    gone = _to_trash(root, path)
    with _admin.exclusive():
        _prune(root)
    _rmtree(gone)


def _rmtree(path: str | Path, *, ignore_errors: bool = True) -> None:
    import shutil  # here, not for every build: 2-5 ms of imports (compression libraries too)

    shutil.rmtree(path, ignore_errors=ignore_errors)


def _to_trash(root: Path, path: Path) -> Path:
    """Out of the way at once; where it is now (itself when it could not be moved)."""
    trash = state_dir(root) / TRASH / os.urandom(16).hex()
    try:
        trash.parent.mkdir(parents=True, exist_ok=True)
        path.rename(trash)
    except OSError:
        return path
    return trash


@dataclass(frozen=True)
class _Links:
    """A linked worktree's own git dir (its admin dir, resolved), and what its links say:
    `.git` (after "gitdir: ") and the admin dir's `gitdir`, when read."""
    admin: str
    dotgit: str
    gitdir: str | None = None


def _sound(root: Path, path: Path) -> bool:
    """A worktree of this repository whose registration points back at it (a kill in the
    middle of a move, or an agent's `rm -rf .git`, leaves one that is not)."""
    return _sound_links(root, path) is not None


def _sound_links(root: Path, path: Path) -> _Links | None:
    """The links of `path`, `gitdir` included, when it is _sound(); else None."""
    links = _links(path)
    if links is None or os.path.dirname(links.admin) != str(_admin_root(root)):
        return None
    try:
        back = git.read_text(os.path.join(links.admin, "gitdir")).strip()
    except OSError:
        return None
    there, here = os.path.join(links.admin, back), os.path.join(path, ".git")
    # the same text resolves the same: the usual case (gitdir is written as this path)
    if there != here and os.path.realpath(there) != os.path.realpath(here):
        return None
    return _Links(links.admin, links.dotgit, back)


def _links(path: Path) -> _Links | None:
    """Read from the worktree's `.git` file; None when it is not a linked worktree."""
    try:
        text = git.read_text(os.path.join(path, ".git")).strip()
    except OSError:  # missing, or a directory: not a linked worktree
        return None
    if not text.startswith("gitdir: "):
        return None
    dotgit = text.removeprefix("gitdir: ")
    admin = os.path.realpath(os.path.join(path, dotgit))
    return _Links(admin, dotgit) if os.path.isdir(admin) else None


@cache
def _admin_root(root: Path) -> Path:
    return (common_dir(root) / "worktrees").resolve()


def _confined(path: Path) -> dict[str, str]:
    """git run in `path` must find the repository there: without its `.git` it would walk up
    to the main checkout (which holds .gastown/) and reset or clean that instead."""
    return {"GIT_CEILING_DIRECTORIES": os.path.dirname(os.path.realpath(path))}


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
    """Bead ids that have a gas/<id> branch (read from the branches' files when they are
    plain, else listed by git)."""
    found = _loose_bead_branches(common_dir(root))
    if found is not None:
        return found
    out = git.out("for-each-ref", "--format=%(refname)", "refs/heads/gas/", cwd=root)
    return [ref.removeprefix("refs/heads/gas/") for ref in out.split()]


_REF_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*(\.[A-Za-z0-9_-]+)*")
_LOOSE_OID = re.compile(rb"([0-9a-f]{40}|[0-9a-f]{64})\n?")


def _loose_bead_branches(common: Path) -> list[str] | None:
    """What `git for-each-ref refs/heads/gas/` lists, in its order, when each of these refs
    is a loose ref file (packed-refs names none) holding an id whose object is there as a
    loose object (whether a ref to a missing object is listed depends on git's version);
    None when git must say."""
    if (common / "reftable").exists() or _mentions(common / "packed-refs", b"refs/heads/gas/"):
        return None
    top = common / "refs" / "heads" / "gas"
    names = _ref_files(top)
    for name in names or ():
        match = _LOOSE_OID.fullmatch(_file_bytes(top / name) or b"")
        oid = match[1].decode() if match else ""
        if not oid or not (common / "objects" / oid[:2] / oid[2:]).is_file():
            return None
    return sorted(names) if names is not None else None


def _ref_files(top: Path) -> list[str] | None:
    """The paths, relative to `top`, of the files below it as git reads loose refs (lock files
    aside; [] without a directory `top`); None when there is more than plain names, plain
    files and directories."""
    names: list[str] = []
    pending = [""]
    while pending:
        rel = pending.pop()
        try:
            with os.scandir(top / rel) as found:
                entries = list(found)
        except (FileNotFoundError, NotADirectoryError):
            if rel:
                return None
            return [] if not top.is_symlink() else None
        for entry in entries:
            if entry.name.endswith(".lock"):  # as git: a ref being written, or a stale lock
                continue
            if not _REF_PART.fullmatch(entry.name):
                return None
            if entry.is_dir(follow_symlinks=False):
                pending.append(f"{rel}{entry.name}/")
            elif entry.is_file(follow_symlinks=False):
                names.append(rel + entry.name)
            else:
                return None
    return names


def _file_bytes(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def _mentions(path: Path, text: bytes) -> bool:
    """Whether the file `path` holds `text` (False when there is no such file)."""
    try:
        return text in path.read_bytes()
    except FileNotFoundError:
        return False
    except OSError:
        return True


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
        _rmtree(gone)


def _prune(root: Path) -> None:
    """`git worktree prune`, our half-made registrations included, when it has anything to
    do; the caller holds `_admin` exclusively (no add of ours is under way)."""
    _unlock_missing(root)
    if _prunable(root):
        git.run("worktree", "prune", cwd=root, check=False)


def _prunable(root: Path) -> bool:
    """False only when `git worktree prune` would certainly do nothing (should_prune_worktree
    in git's worktree.c, prune_worktrees and prune_dups in builtin/worktree.c): every
    registration is locked or a directory whose `gitdir` names, as an absolute path, a file
    that is there, and no two of them, nor one and the main repository, name the same path
    (compared ignoring case); and worktrees/ is not an empty directory (git removes that).
    Any doubt leaves it to git."""
    try:
        with os.scandir(_admin_root(root)) as found:
            entries = list(found)
    except FileNotFoundError:
        return False
    except OSError:
        return True
    seen = {os.path.join(path, ".git").casefold() for path in (
        str(root), os.path.realpath(root), os.environ.get("PWD", ""))}
    seen.add(str(common_dir(root)).casefold())
    for entry in entries:
        if os.path.lexists(os.path.join(entry.path, "locked")):
            continue
        path = _live_gitdir(entry)
        if path is None or path.casefold() in seen:
            return True
        seen.add(path.casefold())
    return not entries


def _live_gitdir(entry: os.DirEntry[str]) -> str | None:
    """The path the registration `entry` names in its `gitdir` file, as git reads it, when
    that is an absolute path to a file that is there; None when git would prune it (or
    might: any other case)."""
    if not entry.is_dir(follow_symlinks=False):
        return None
    text = _file_bytes(Path(entry.path) / "gitdir")
    path = (text or b"").rstrip(b"\r\n")
    if not path.startswith(b"/") or b"\0" in path:
        return None
    try:
        regular = S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return None
    return os.fsdecode(path) if regular else None


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
    head = git.rev("HEAD", cwd=worktree)
    on_base = base is None or head == base
    git.run("add", "-A", cwd=worktree, env=env)
    if on_base and head is not None and (stat := _commit_here(worktree, message, head)):
        return stat
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


def _commit_here(worktree: Path, message: str, head: str) -> tuple[int, int, int] | None:
    """The index committed onto `head` without a git process (gastown.objects): the tree and
    commit written here, the branch moved as git moves it, the stat from the long-lived
    `git diff-tree`; None, with the branch where it was, when git must do it."""
    found = git.dirs(worktree)
    if found is None:
        return None
    gitdir, common = found
    top = _top(worktree)
    maker = objects.committer(top, identity_env(top), common.resolve())
    text = objects.cleanup_message(message)
    entries = objects.read_index(gitdir / "index", len(head) // 2)
    if maker.native or maker.hooked or not text or entries is None:
        return None
    tree = objects.write_index_tree(entries, common / "objects", len(head))
    commit = maker.make(tree, [head], text)
    diff = objects.differ(top).diff(head, commit)
    if diff is None:
        return None
    if not diff.changes:
        return 0, 0, 0  # nothing to commit (the commit made is left to gc)
    if not objects.move_branch(worktree, head, commit):
        return None
    objects.remember(commit, head, diff)
    return diff.stat


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
