"""git objects gastown makes without a git process each: a bead's commit from its worktree's
index, and the merge of a bead whose files nothing else touched.

A wave of beads ends together and each needs its work committed and merged; one git process
per step costs 2-3 ms of CPU here and queues with the rest. So after `git add -A` the tree
and commit are written here (what `git commit` writes), the diff stat comes from one
long-lived `git diff-tree --stdin`, and a merge whose two sides only added or changed
different files is the tip's tree with the bead's files in it (what `git merge-tree` gives
then). Anything else, or anything this module does not follow exactly, goes to git.
"""
from __future__ import annotations

import atexit
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from gastown import git

TREE_MODE = 0o40000
GITLINK_MODE = 0o160000
INDEX_LIMIT = 256 * 1024  # bytes: a larger index is committed by git (faster there)
# Hooks `git commit --no-verify` still runs: with one of them, git makes the commit.
COMMIT_HOOKS = ("prepare-commit-msg", "post-commit", "post-index-change", "reference-transaction")

Tree = dict[bytes, tuple[int, bytes]]  # name -> (mode, raw id)


@dataclass(frozen=True)
class Change:
    """One path of a diff: `status` as `git diff-tree --raw` gives it (A, M, D, T, R...)."""

    status: str
    path: bytes
    mode: int  # the new side's
    oid: str  # the new side's


@dataclass(frozen=True)
class Diff:
    changes: tuple[Change, ...]
    stat: tuple[int, int, int]  # files, insertions, deletions


NONE = Diff((), (0, 0, 0))


# -- the index -------------------------------------------------------------------------------

@dataclass
class Index:
    """What a version 2 or 3 index holds (gitformat-index)."""

    entries: list[tuple[bytes, int, bytes]]  # (path, mode, raw id), in the index's order
    flagged: bool  # an entry is marked assume-valid or skip-worktree
    plain: bool  # no conflict (stage > 0), no entry with extended flags (intent-to-add...)

    @property
    def paths(self) -> set[bytes]:
        return {entry[0] for entry in self.entries}


def parse_index(path: str | Path, oid_size: int | None = None) -> Index | None:
    """The index at `path`; None where git should be asked: a large or newer index, an
    extension git requires readers to understand (a split or sparse index), or anything not
    followed to its end exactly. `oid_size` (20 or 32) when known, else whichever fits."""
    try:
        data = git.read_bytes(path, INDEX_LIMIT)
    except OSError:
        return None
    if len(data) < 12 or data[:4] != b"DIRC":
        return None
    version, count = struct.unpack(">II", data[4:12])
    if version not in (2, 3):
        return None
    for size in (oid_size,) if oid_size else (20, 32):
        found = _walk_index(data, count, size)
        if found is not None:
            return found
    return None


def read_index(path: Path, oid_size: int) -> list[tuple[bytes, int, bytes]] | None:
    """The entries of a plain index nothing in is flagged: what gastown commits itself."""
    index = parse_index(path, oid_size)
    return index.entries if index and index.plain and not index.flagged else None


_U16 = struct.Struct(">H").unpack_from
_U32 = struct.Struct(">I").unpack_from


def _walk_index(data: bytes, count: int, oid_size: int) -> Index | None:
    pos, size, entries, flagged, unplain = 12, len(data), [], 0, 0
    for _ in range(count):
        head = pos + 40 + oid_size  # ctime mtime dev ino mode uid gid size, then the id
        if head + 2 > size:
            return None
        flags = _U16(data, head)[0]
        name = head + 2
        if flags & 0x4000:  # extended flags (version 3): skip-worktree 0x4000, i-t-a 0x2000
            extended = _U16(data, name)[0]
            flagged |= extended & 0x4000
            unplain |= extended
            name += 2
        flagged |= flags & 0x8000  # assume-valid
        unplain |= flags & 0x3000  # stage
        end = data.find(b"\0", name)
        if end < 0 or (flags & 0xFFF) not in (end - name, 0xFFF):
            return None
        entries.append((data[name:end], _U32(data, pos + 24)[0], data[pos + 40:head]))
        pos += (end - pos + 8) // 8 * 8  # entries are NUL-padded to a multiple of 8 bytes
    if not _extensions_ok(data, pos, oid_size):
        return None
    return Index(entries, bool(flagged), not unplain)


def _extensions_ok(data: bytes, pos: int, oid_size: int) -> bool:
    """Whatever follows the entries is extensions readers may skip (an uppercase signature:
    not a split index's `link` or a sparse index's `sdir`), then the checksum."""
    while pos + 8 <= len(data) - oid_size:
        if not b"A" <= data[pos:pos + 1] <= b"Z":
            return False
        pos += 8 + _U32(data, pos + 4)[0]
    return pos == len(data) - oid_size


# -- trees -----------------------------------------------------------------------------------

def tree_body(tree: Tree) -> bytes:
    """A tree object's content: entries sorted as git sorts them (a subtree's name compares
    as if it ended in '/')."""
    def key(name: bytes) -> bytes:
        return name + b"/" if tree[name][0] == TREE_MODE else name

    return b"".join(b"%o %s\0%s" % (tree[name][0], name, tree[name][1])
                    for name in sorted(tree, key=key))


def parse_tree(body: bytes, oid_size: int) -> Tree:
    tree: Tree = {}
    pos = 0
    while pos < len(body):
        space = body.index(b" ", pos)
        nul = body.index(b"\0", space)
        tree[body[space + 1:nul]] = (int(body[pos:space], 8), body[nul + 1:nul + 1 + oid_size])
        pos = nul + 1 + oid_size
    return tree


def write_index_tree(entries: Iterable[tuple[bytes, int, bytes]], objects: Path,
                     hex_size: int) -> str:
    """What `git write-tree` writes for these index entries; the root tree's id."""
    root: dict[bytes, object] = {}
    for path, mode, oid in entries:
        *parents, name = path.split(b"/")
        node = root
        for part in parents:
            node = node.setdefault(part, {})  # type: ignore[assignment]
        node[name] = (mode, oid)
    written: list[tuple[str, bytes]] = []
    oid = _nested(root, written, hex_size)
    git.store(written, into=objects, hex_size=hex_size)
    return oid.hex()


def _nested(node: dict[bytes, object], written: list[tuple[str, bytes]], hex_size: int) -> bytes:
    tree: Tree = {}
    for name, value in node.items():
        if isinstance(value, dict):
            tree[name] = (TREE_MODE, _nested(value, written, hex_size))
        else:
            tree[name] = value  # type: ignore[assignment]
    body = tree_body(tree)
    written.append(("tree", body))
    return bytes.fromhex(git.object_id("tree", body, hex_size))


# -- commits ---------------------------------------------------------------------------------

class Committer:
    """Commits as `git commit-tree` makes them (the identity `git var` gives, the time now),
    written as loose objects. `native` when git must make them: signing
    (commit.gpgSign), another encoding (i18n.commitEncoding), a date fixed by
    GIT_AUTHOR_DATE/GIT_COMMITTER_DATE, per-worktree config."""

    def __init__(self, root: Path, env: Mapping[str, str], common: Path) -> None:
        self.root, self.env, self.common = root, dict(env), common
        self.config = dict(line.split("=", 1) for line in
                           git.out("var", "-l", cwd=root, env=self.env).splitlines()
                           if "=" in line)
        self.author = self.config.get("GIT_AUTHOR_IDENT", "").rsplit(" ", 2)
        self.committer = self.config.get("GIT_COMMITTER_IDENT", "").rsplit(" ", 2)
        self.native = (
            _true(self.config.get("commit.gpgsign", "false"))
            or self.config.get("i18n.commitencoding", "utf-8").lower() not in ("utf-8", "utf8")
            or _true(self.config.get("extensions.worktreeconfig", "false"))
            or any(key in {**git.clean_env(), **self.env}
                   for key in ("GIT_AUTHOR_DATE", "GIT_COMMITTER_DATE"))
            or len(self.author) != 3 or len(self.committer) != 3)

    def make(self, tree: str, parents: list[str], message: str) -> str:
        if self.native:
            flags = [arg for parent in parents for arg in ("-p", parent)]
            return git.out("commit-tree", tree, *flags, cwd=self.root, input=message,
                           env=self.env)
        when = str(int(time.time()))
        author = f"{self.author[0]} {when} {self.author[2]}"
        committer = f"{self.committer[0]} {when} {self.committer[2]}"
        body = "".join([f"tree {tree}\n", *(f"parent {oid}\n" for oid in parents),
                        f"author {author}\n", f"committer {committer}\n\n", message])
        [commit] = git.store([("commit", body.encode())], into=self.common / "objects",
                             hex_size=len(tree))
        return commit

    def reflog(self, message: str) -> str | None:
        """What git writes after the two ids in a reflog line for a ref moved now by this
        identity: "<ident> <time> <zone>\t<message>" (git.write_loose_ref); None when the
        identity is not known. (git's update-ref, run without gastown's identity fallback,
        would name the machine's user where none is configured.)"""
        if len(self.committer) != 3 or "\n" in message:
            return None
        return f"{self.committer[0]} {int(time.time())} {self.committer[2]}\t{message}"

    @property
    def hooked(self) -> bool:
        """A hook that `git commit --no-verify` would run exists: git must commit."""
        return not git.hooks_absent(self.root, COMMIT_HOOKS)


def _true(value: str) -> bool:
    return value.lower() in ("true", "yes", "on", "1")


_committers: dict[tuple[Path, tuple[tuple[str, str], ...]], Committer] = {}
_committers_lock = threading.Lock()
# What of the environment `git var -l` and `git commit-tree` read: identities and dates
# (GIT_*, and EMAIL for a fallback address) and where global config is.
_IDENTITY_ENV = ("EMAIL", "HOME", "XDG_CONFIG_HOME")


def committer(top: Path, env: Mapping[str, str], common: Path) -> Committer:
    """One Committer per repository and identity per process: a build's bead commits and its
    merges share one (one `git var -l`), however many threads ask for it first at once."""
    full = {**git.clean_env(), **env}
    seen = tuple(sorted((key, value) for key, value in full.items()
                        if key.startswith("GIT_") or key in _IDENTITY_ENV))
    with _committers_lock:
        made = _committers.get((common, seen))
        if made is None:
            made = _committers[(common, seen)] = Committer(top, dict(env), common)
        return made


def cleanup_message(message: str) -> str:
    """The message as `git commit -m` stores it (--cleanup=whitespace): trailing whitespace
    and leading, trailing and repeated blank lines gone, one newline at the end."""
    lines: list[str] = []
    blank = False
    for line in message.splitlines():
        line = line.rstrip()
        if not line:
            blank = bool(lines)
            continue
        if blank:
            lines.append("")
        lines.append(line)
        blank = False
    return "\n".join(lines) + "\n" if lines else ""


def move_ref(root: Path, common: Path, env: Mapping[str, str], ref: str, new: str, old: str,
             message: str, deleting: Sequence[str] = ()) -> bool:
    """What `git update-ref -m message` does to move the branch `ref` from `old` to `new` and
    delete the branches `deleting` in the same transaction, without a process, where git
    would only rewrite loose refs: those to delete locked first, `ref` moved (its reflog line
    appended with the identity of `env`'s commits), then those deleted. False, with nothing
    changed, where git must (a reference-transaction hook, packed or reftable refs, `ref` not
    at `old`: git then says why)."""
    if not git.hooks_absent(root, ("reference-transaction",)):
        return False
    log = committer(root, env, common).reflog(message)
    end = git.locked_for_deletion(common, deleting) if log is not None else None
    if end is None:
        return False
    moved = git.write_loose_ref(common, ref, new, old, log=log)
    end(moved)
    return moved


def move_branch(worktree: Path, old: str, new: str) -> bool:
    """The branch checked out in `worktree` moved from `old` to `new` as git moves a loose
    ref (git.write_loose_ref); False, with nothing changed, where git must do it: HEAD
    detached, a reflog of HEAD to append to, or anything write_loose_ref leaves to git."""
    found = git.dirs(worktree)
    if found is None:
        return False
    gitdir, common = found
    try:
        ref = (gitdir / "HEAD").read_text("ascii").strip().removeprefix("ref: ")
    except (OSError, UnicodeDecodeError):
        return False
    return not (gitdir / "logs" / "HEAD").exists() and \
        git.write_loose_ref(common, ref, new, old)


# -- long-lived git readers ------------------------------------------------------------------

class _Batch:
    """A long-lived git process answering one request per line, under a lock; started on
    first use, ended by close()."""

    def __init__(self, root: Path, args: list[str]) -> None:
        self.root, self.args = root, args
        self.lock = threading.Lock()
        self.proc: subprocess.Popen[bytes] | None = None

    def _started(self) -> subprocess.Popen[bytes]:
        if self.proc is None or self.proc.poll() is not None:
            self.proc = subprocess.Popen(["git", *self.args], cwd=self.root, env=git.clean_env(),
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=subprocess.DEVNULL)
        return self.proc

    def close(self) -> None:
        with self.lock:
            if self.proc is not None:
                for stream in (self.proc.stdin, self.proc.stdout):
                    if stream is not None:
                        stream.close()
                self.proc.wait()
                self.proc = None

    def _kill(self) -> None:
        """After an answer not understood: the next request starts a new process."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


class Differ(_Batch):
    """`git diff-tree --stdin`: the changes and diff stat between two commits."""

    def __init__(self, root: Path) -> None:
        super().__init__(root, ["diff-tree", "--stdin", "-r", "-M", "--raw", "--numstat", "-z",
                                "--always"])

    def diff(self, old: str, new: str) -> Diff | None:
        """`old`..`new` (None when git could not tell)."""
        with self.lock:
            try:
                proc = self._started()
                assert proc.stdin is not None and proc.stdout is not None
                # The second line asks for `old` against itself: its header (--always prints
                # one even for no change) ends the first answer.
                proc.stdin.write(f"{new} {old}\n{old} {old}\n".encode())
                proc.stdin.flush()
                return _read_diff(_Tokens(proc.stdout), new, old)
            except (OSError, ValueError):
                self._kill()
                return None


class _Tokens:
    """NUL-terminated tokens from a stream, read as they arrive."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream
        self.buffer = b""

    def next(self) -> bytes:
        while (end := self.buffer.find(b"\0")) < 0:
            more = self.stream.read1(65536)  # type: ignore[attr-defined]
            if not more:
                raise ValueError("git diff-tree ended")
            self.buffer += more
        token, self.buffer = self.buffer[:end], self.buffer[end + 1:]
        return token


def _read_diff(tokens: _Tokens, new: str, old: str) -> Diff:
    """The answer to `new old`, up to the header of the `old old` that follows it."""
    if tokens.next() != new.encode():
        raise ValueError("unexpected diff-tree answer")
    changes: list[Change] = []
    files = ins = dels = 0
    while (token := tokens.next()) != old.encode():
        if token.startswith(b":"):
            meta = token[1:].split(b" ")
            status = meta[4].decode()[:1]
            path = tokens.next()
            if status in ("R", "C"):
                path = tokens.next()
            changes.append(Change(status, path, int(meta[1], 8), meta[3].decode()))
            continue
        added, deleted, name = token.split(b"\t", 2)
        if not name:  # a rename: the two paths follow
            tokens.next()
            tokens.next()
        files += 1
        ins += int(added) if added.isdigit() else 0
        dels += int(deleted) if deleted.isdigit() else 0
    return Diff(tuple(changes), (files, ins, dels))


class Reader(_Batch):
    """`git cat-file --batch`: objects by id."""

    def __init__(self, root: Path) -> None:
        super().__init__(root, ["cat-file", "--batch"])

    def read(self, oid: str) -> tuple[str, bytes] | None:
        """(type, content), or None when missing or git could not tell."""
        found = self.contents([oid])
        return found[0] if found else None

    def contents(self, specs: list[str]) -> list[tuple[str, bytes] | None] | None:
        """(type, content) of each object named (None for one that is missing); None when
        git could not tell."""
        with self.lock:
            try:
                proc = self._started()
                assert proc.stdin is not None and proc.stdout is not None
                found: list[tuple[str, bytes] | None] = []
                for spec in specs:
                    proc.stdin.write(f"{spec}\n".encode())
                    proc.stdin.flush()
                    header = proc.stdout.readline().split()
                    if len(header) == 2 and header[1] in (b"missing", b"ambiguous"):
                        found.append(None)
                        continue
                    if len(header) != 3:
                        self._kill()
                        return None
                    found.append((header[1].decode(), proc.stdout.read(int(header[2]) + 1)[:-1]))
                return found
            except (OSError, ValueError):
                self._kill()
                return None


_lock = threading.Lock()
_open: dict[tuple[type[_Batch], Path], _Batch] = {}


def differ(root: Path) -> Differ:
    return _one(Differ, root)  # type: ignore[return-value]


def reader(root: Path) -> Reader:
    return _one(Reader, root)  # type: ignore[return-value]


def _one(kind: type[_Batch], root: Path) -> _Batch:
    with _lock:
        if (kind, root) not in _open:
            _open[(kind, root)] = kind(root)  # type: ignore[call-arg]
        return _open[(kind, root)]


def close_all() -> None:
    """End the long-lived git processes (a build does as it ends)."""
    with _lock:
        batches = list(_open.values())
        _open.clear()
    for batch in batches:
        batch.close()
    with _committers_lock:  # the next build reads the identity and config again
        _committers.clear()


atexit.register(close_all)


# -- merging what touched different files ----------------------------------------------------

_made: dict[str, tuple[str, Diff]] = {}  # a bead commit made here -> (its parent, its diff)
MADE_LIMIT = 4096


def remember(commit: str, parent: str, diff: Diff) -> None:
    """`commit` (made here on `parent`) may be merged by merge_onto()."""
    if len(_made) > MADE_LIMIT:
        _made.clear()
    _made[commit] = (parent, diff)


def made(commit: str) -> tuple[str, Diff] | None:
    return _made.get(commit)


def disjoint(ours: Iterable[Change], theirs: Iterable[Change]) -> bool:
    """Both sides only added or changed files (no deletion, hence no rename for a merge to
    follow; no submodule), and no path of one is a path, or a directory of a path, of the
    other: a three-way merge then takes each side's files as they are."""
    sides = [list(ours), list(theirs)]
    if any(c.status not in ("A", "M", "T") or c.mode == GITLINK_MODE for s in sides for c in s):
        return False
    paths = [{c.path for c in side} for side in sides]
    dirs = [{p[:i] for p in side for i, b in enumerate(p) if b == 0x2F} for side in paths]
    return not (paths[0] & paths[1] or paths[0] & dirs[1] or paths[1] & dirs[0])


def apply(read: Callable[[bytes], Tree | None], root: bytes, changes: Iterable[Change],
          objects: Path, hex_size: int) -> str | None:
    """The tree `root` (raw id) with `changes` (added or changed files) in it, written; its
    id. None when a tree on the way cannot be read or is not a tree."""
    trees: dict[bytes, Tree] = {}  # directory path (b"" the root) -> its entries, changed

    def tree_at(path: bytes, oid: bytes | None) -> Tree | None:
        if path not in trees:
            found = {} if oid is None else read(oid)
            if found is None:
                return None
            trees[path] = dict(found)
        return trees[path]

    if tree_at(b"", root) is None:
        return None
    for change in changes:
        *parents, name = change.path.split(b"/")
        where = b""
        for part in parents:
            entry = trees[where].get(part)
            if entry is not None and entry[0] != TREE_MODE:
                return None
            child = where + b"/" + part if where else part
            if tree_at(child, entry[1] if entry else None) is None:
                return None
            where = child
        trees[where][name] = (change.mode, bytes.fromhex(change.oid))
    return _write_up(trees, objects, hex_size)


def _write_up(trees: dict[bytes, Tree], objects: Path, hex_size: int) -> str:
    """Write the changed trees deepest first, each into its parent; the root's id."""
    written: list[tuple[str, bytes]] = []
    oid = b""
    for path in sorted(trees, key=lambda p: -p.count(b"/") - (p != b"")):
        body = tree_body(trees[path])
        written.append(("tree", body))
        oid = bytes.fromhex(git.object_id("tree", body, hex_size))
        if path:
            parent, _, name = path.rpartition(b"/")
            trees[parent][name] = (TREE_MODE, oid)
    git.store(written, into=objects, hex_size=hex_size)
    return oid.hex()
