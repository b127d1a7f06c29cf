"""The ledger: one JSON record per bead on a git branch, a commit per transition, or a line in
a group commit: transitions a build posts are committed by a writer thread, all that is queued
at once in one commit.

Written with plumbing only (objects built and stored as loose objects here, the branch moved by
`update-ref`), so the user's HEAD, index and working tree are never touched.
`git log gt-ledger` reads as the factory log.
"""
from __future__ import annotations

import copy
import fcntl
import json
import os
import re
import subprocess
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gastown import git, objects
from gastown.digests import sha1
from gastown.errors import GasError
from gastown.worktrees import common_dir, identity_env

SCHEMA = 1
LAYOUT = "beads/<first 2 hex of sha1(bead id)>/<bead id>.json"
MAX_TRIES = 20
# Seconds a group commit waits for more transitions after the first (unless someone waits for
# it): a wave of beads starting or ending together posts within a few hundred ms, and a bead's
# transitions in between (review, merging, merged) collapse into its last record. Fewer
# commits of more records: far fewer objects and update-ref processes on the ledger branch.
GATHER = 0.1
TRAILER = "Gas-Bead"
IDENTITY = {
    "GIT_AUTHOR_NAME": "gastown",
    "GIT_AUTHOR_EMAIL": "gastown@localhost",
    "GIT_COMMITTER_NAME": "gastown",
    "GIT_COMMITTER_EMAIL": "gastown@localhost",
}
README = """\
# gastown ledger

This branch is written by gastown, never checked out: one JSON record per bead,
a commit per state change (or a line in a commit that records several at once).
It is the truth an interrupted build resumes from.

    git log {branch}                           # the factory log, newest first
    git show {branch}:beads/ab/<bead id>.json  # one bead's record

The shard `ab` is the first two hex digits of sha1(<bead id>); see meta.json.
"""

Entries = dict[str, tuple[str, str]]  # tree entry name -> (mode, object id)
Fetched = tuple[list[tuple[str, str]], bytes | None, list[bytes | None]]  # see Ledger._fetch
_TREE = "40000"
_GROUP = re.compile(r"\d+ transitions: ")  # the subject of a group commit


class LedgerError(GasError):
    """The ledger branch cannot be read or written as gastown expects (exit 2)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, hint="`gas doctor` checks the ledger; `git log gt-ledger` "
                                       "shows what wrote it")


def record_path(bead_id: str) -> str:
    """Where a bead's record lives in the ledger's tree."""
    if not bead_id or bead_id in (".", "..") or any(c in bead_id for c in "/\0\n"):
        raise ValueError(f"not a usable bead id: {bead_id!r}")
    shard = sha1(bead_id.encode()).hexdigest()[:2]
    return f"beads/{shard}/{bead_id}.json"


def now() -> str:
    """UTC, to the millisecond: 2026-12-02T13:04:05.678Z (from time, not datetime: a build
    that parses no YAML imports no datetime)."""
    ms = time.time_ns() // 1_000_000
    return f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(ms // 1000))}.{ms % 1000:03d}Z"


def _iso(text: str) -> str:
    """An ISO 8601 time with an offset, as `now()` writes times."""
    from datetime import UTC, datetime  # for `gas log` only

    moment = datetime.fromisoformat(text).astimezone(UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def transition(record: dict[str, Any] | None, *, bead_id: str, state: str,
               note: str | None = None, **fields: Any) -> dict[str, Any]:
    """A new record: `record` (or a fresh one) moved to `state`, with `fields` set."""
    at = now()
    new = _fresh(bead_id, at) if record is None else copy.deepcopy(record)
    if new.get("id") != bead_id:
        raise ValueError(f"record of {new.get('id')!r} given for bead {bead_id!r}")
    new.update(copy.deepcopy(fields))
    new["state"] = str(state)
    new["history"].append({"at": at, "state": str(state), "note": note})
    new["updated"] = at
    return new


def _fresh(bead_id: str, at: str) -> dict[str, Any]:
    return {
        "schema": SCHEMA, "id": bead_id, "backlog": "", "title": "", "state": "",
        "fingerprint": "", "attempts": [], "merge_commit": None, "into": None,
        "reason": None, "history": [], "created": at, "updated": at,
    }


def _dump(value: Any) -> str:
    # ASCII-only, so the bytes git stores do not depend on the locale's encoding.
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=True) + "\n"


class Ledger:
    """The records on `branch` of `repo` (any worktree of it). Safe across threads and processes."""

    def __init__(self, repo: Path, branch: str = "gt-ledger") -> None:
        self.repo = Path(repo)
        self.branch = branch
        self.ref = f"refs/heads/{branch}"
        self._lock = threading.Lock()
        self._records: dict[str, dict[str, Any]] | None = None
        self._loaded_tip: str | None = None
        self._lock_path: Path | None = None  # serialises writers across gastown processes
        self._prefetched: _Prefetch | None = None
        # What the last write made: its commit and every tree on the paths it rewrote, so the
        # next write needs neither rev-parse nor cat-file (a stale guess fails the CAS).
        self._written: str | None = None
        self._trees = _TreeCache()
        self._group = threading.Condition()  # guards the five below
        self._queue: deque[_Pending] = deque()  # records waiting for the next group commit
        self._posted: dict[str, dict[str, Any]] = {}  # bead id -> its newest record not written
        self._busy = False  # the writer thread is writing a group commit
        self._failed: Exception | None = None  # what a write of posted records met
        self._writer: threading.Thread | None = None
        self._waiting = 0  # threads in put() or flush(): the writer gathers no longer
        self._writing = threading.Lock()  # one _write at a time in this process

    def tip(self) -> str | None:
        return git.rev(self.ref, cwd=self.repo)

    def exists(self) -> bool:
        return self.tip() is not None

    def ensure(self) -> None:
        """Create the branch as an orphan root commit unless it exists."""
        self._start()

    def _start(self) -> str:
        tip = self.tip()
        if tip is not None:
            return tip
        size = 64 if git.out("rev-parse", "--show-object-format", cwd=self.repo) == "sha256" \
            else 40
        meta = _dump({"schema": SCHEMA, "layout": LAYOUT}).encode()
        readme = README.format(branch=self.branch).encode()
        tree = {"README.md": ("100644", git.object_id("blob", readme, size)),
                "meta.json": ("100644", git.object_id("blob", meta, size))}
        body = _tree_body(tree)
        start = _commit_object(git.object_id("tree", body, size), None,
                               "gastown: start the ledger\n")
        *_, commit = git.store([("blob", meta), ("blob", readme), ("tree", body),
                                ("commit", start)], into=self._objects(), hex_size=size)
        if self._cas(commit, None) is None:
            return commit
        # Lost the race to another creator: theirs is as good as ours.
        return self._tip_or_fail(f"could not create {self.ref}")

    def _tip_or_fail(self, problem: str) -> str:
        tip = self.tip()
        if tip is None:
            raise LedgerError(f"{problem} in {self.repo}")
        return tip

    # -- reading -------------------------------------------------------------------------------

    def load(self, *, fresh: bool = True) -> dict[str, dict[str, Any]]:
        """All records by bead id ({} without a branch). Records are shared with the cache:
        change them only through transition(), which copies. `fresh=False` trusts the cache
        once loaded (no git process): for a build, which holds the lock every writer takes,
        and whose own writes keep the cache current."""
        with self._lock:
            cached = None if fresh else self._records
            records = dict(cached if cached is not None else self._refresh())
        with self._group:
            records.update(self._posted)
        return records

    def get(self, bead_id: str) -> dict[str, Any] | None:
        """One record from the cache, loading all of them on first use."""
        with self._group:
            posted = self._posted.get(bead_id)
        if posted is not None:
            return posted
        with self._lock:
            records = self._records if self._records is not None else self._refresh()
            return records.get(bead_id)

    def prefetch(self) -> None:
        """Have git read every record in the background while the caller computes (the Mayor
        compiles); the next load() or get() takes them if the branch has not moved since."""
        with self._lock:
            if self._records is None and self._prefetched is None:
                self._prefetched = _Prefetch(self)

    def _refresh(self) -> dict[str, dict[str, Any]]:
        """The cache, re-read when the branch moved since; the caller holds the lock."""
        tip = self.tip()
        if self._records is None or tip != self._loaded_tip:
            self._records = self._read(tip) if tip else {}
            self._loaded_tip = tip
        return self._records

    def _read(self, tip: str) -> dict[str, dict[str, Any]]:
        prefetched, self._prefetched = self._prefetched, None
        fetched = prefetched.take(tip) if prefetched else None
        blobs, meta, texts = fetched or self._fetch(tip)
        _check_meta(meta, self.ref)
        records = {}
        for (_, path), text in zip(blobs, texts, strict=True):
            record = _parse_record(text, path)
            records[record["id"]] = record
        return records

    def _fetch(self, tip: str) -> Fetched:
        """The records' (blob, path) pairs, meta.json and the records' bytes: two git calls."""
        listing = git.out("ls-tree", "-r", "-z", "--full-tree", tip, "beads/", cwd=self.repo)
        blobs = _json_blobs(listing)
        meta, *texts = self._cat([f"{tip}:meta.json", *(sha for sha, _ in blobs)])
        return blobs, meta, texts

    def history(self, bead_id: str | None = None, limit: int | None = None) -> list[dict[str, str]]:
        """Ledger commits, newest first; with `bead_id`, only those that touched its record."""
        tip = self.tip()
        if tip is None:
            return []
        args = ["log", "-z", "--format=%H%n%cI%n%B"]
        if limit is not None:
            args.append(f"--max-count={limit}")
        args.append(tip)
        if bead_id is not None:
            args += ["--", f":(top,literal){record_path(bead_id)}"]
        text = git.out(*args, cwd=self.repo)
        return [_log_entry(chunk, bead_id) for chunk in text.split("\0") if chunk.strip()]

    # -- writing -------------------------------------------------------------------------------

    def put(self, record: dict[str, Any], message: str) -> str:
        """Write one record; return the commit once it is on the branch. Records that threads
        of this process put at the same moment share one commit (see post())."""
        entry = self._enqueue(record, message)
        with self._waiter():
            self._group.wait_for(lambda: entry.done)
        if entry.error is not None:
            raise entry.error
        assert entry.commit is not None
        return entry.commit

    def post(self, record: dict[str, Any], message: str) -> None:
        """Queue one record and return at once: get() and load() show it from now on, and
        the ledger's writer thread commits it with whatever else is queued by then (a group
        commit: its message has one line per transition, so a burst of transitions from a
        wave of beads starting or merging together is a few commits, written while the beads
        go on). flush() waits until it is on the branch; a write that failed is raised by
        the next post() or flush()."""
        with self._group:
            failed, self._failed = self._failed, None
        if failed is not None:
            raise failed
        self._enqueue(record, message)

    def flush(self) -> None:
        """Wait until every queued record is on the branch; raise what a write met."""
        with self._waiter():
            self._group.wait_for(lambda: not self._queue and not self._busy)
            failed = self._failed
        if failed is not None:
            raise failed

    @contextmanager
    def _waiter(self) -> Iterator[None]:
        """The group lock, held by a thread that waits for the writer (who then writes what is
        queued at once)."""
        with self._group:
            self._waiting += 1
            self._group.notify_all()
            try:
                yield
            finally:
                self._waiting -= 1

    def _enqueue(self, record: dict[str, Any], message: str) -> _Pending:
        entry = _Pending(copy.deepcopy(record), message)
        with self._group:
            self._queue.append(entry)
            self._posted[record["id"]] = entry.record
            if self._writer is None:
                self._writer = threading.Thread(target=self._write_queued, daemon=True,
                                                name="ledger-writer")
                self._writer.start()
            self._group.notify_all()
        return entry

    def _write_queued(self) -> None:
        """The writer thread: everything queued, one commit at a time."""
        while True:
            with self._group:
                self._group.wait_for(lambda: bool(self._queue))
                self._group.wait_for(lambda: self._waiting > 0, timeout=GATHER)
                batch = list(self._queue)
                self._queue.clear()
                self._busy = True
                self._group.notify_all()  # lets observers (tests) see the queue change
            try:
                self._write_group(batch)
            finally:
                with self._group:
                    self._busy = False
                    for entry in batch:
                        if self._posted.get(entry.record["id"]) is entry.record:
                            del self._posted[entry.record["id"]]
                    if batch[0].error is not None and self._failed is None:
                        self._failed = batch[0].error
                    self._group.notify_all()

    def _write_group(self, batch: list[_Pending]) -> None:
        """One commit: each bead's last record; one message line per transition."""
        if len(batch) == 1:
            lines = batch[0].message.rstrip()
        else:  # a subject for `git log --oneline`, then one line per transition
            each = [" ".join(entry.message.split()) for entry in batch]
            subject = ", ".join(f"{e.record['id']} {e.record['state']}" for e in batch)
            if len(subject) > 100:
                subject = subject[:97] + "..."
            lines = "\n".join([f"{len(batch)} transitions: {subject}", "", *each])
        last = {entry.record["id"]: entry.record for entry in batch}
        trailers = "\n".join(f"{TRAILER}: {bead}" for bead in last)
        try:
            commit = self._write(list(last.values()), f"{lines}\n\n{trailers}\n",
                                 len(batch))
        except Exception as exc:
            for entry in batch:
                entry.error = exc
        else:
            for entry in batch:
                entry.commit = commit

    def put_many(self, records: list[dict[str, Any]], message: str) -> str:
        """Write several records as one commit; return it (the tip when there is nothing)."""
        ids = [r["id"] for r in records]
        if len(set(ids)) != len(ids):
            raise ValueError("put_many given the same bead twice")
        if not records:
            return self._start()
        return self._write(records, f"{message.rstrip()}\n", len(records))

    def _write(self, records: list[dict[str, Any]], message: str, transitions: int) -> str:
        texts = [_dump(r).encode() for r in records]
        with self._writing, _flocked(self._lock_file()):
            tip = self._written or self._start()
            for attempt in range(MAX_TRIES):
                commit, root = self._store(tip, records, texts, message)
                with self._lock:  # readers see the branch and the cache move together
                    refused = self._cas(commit, tip, transitions)
                    if refused is None:
                        self._remember(records, tip, commit)
                if refused is None:
                    self._written = commit
                    self._trees.tips[commit] = root
                    return commit
                # A writer outside our lock moved the branch: rebuild on its tip.
                self._written = None
                if attempt:
                    import random  # for a rare race only: not imported by every build

                    time.sleep(random.uniform(0, 0.002 * attempt))
                tip = self._start()
        raise LedgerError(f"could not move {self.ref} in {MAX_TRIES} tries: {refused}")

    def _store(self, tip: str, records: list[dict[str, Any]], texts: list[bytes],
               message: str) -> tuple[str, str]:
        """The records' blobs, the trees on their paths and a commit on `tip`, written as loose
        objects (no git process): (commit, root tree)."""
        size = len(tip)
        blobs = [git.object_id("blob", text, size) for text in texts]
        changes = {record_path(r["id"]): blob for r, blob in zip(records, blobs, strict=True)}
        trees = self._trees_with(tip, changes)
        root = trees[-1][0]
        commit = _commit_object(root, tip, message)
        objects = [*(("blob", text) for text in texts),
                   *(("tree", body) for _, body in trees), ("commit", commit)]
        ids = git.store(objects, into=self._objects(), hex_size=size)
        return ids[-1], root

    def _objects(self) -> Path:
        return common_dir(self.repo) / "objects"

    def _lock_file(self) -> Path:
        if self._lock_path is None:
            self._lock_path = common_dir(self.repo) / "gastown" / "ledger.lock"
        return self._lock_path

    def _remember(self, records: list[dict[str, Any]], parent: str, commit: str) -> None:
        """The cache after a write of ours; the caller holds the lock."""
        if self._records is None or self._loaded_tip != parent:
            self._records = None  # someone else wrote in between: reload on next use
            return
        self._records.update({r["id"]: copy.deepcopy(r) for r in records})
        self._loaded_tip = commit

    def _trees_with(self, tip: str, changes: dict[str, str]) -> list[tuple[str, bytes]]:
        """(id, body) of the trees that change when `changes` (path -> blob) go into the tip's
        tree: the shards on their paths, beads/, then the root (last)."""
        shards = _by_shard(changes)
        root, beads, old = self._old_trees(tip, list(shards))
        trees = [{**was, **new} for was, new in zip(old, shards.values(), strict=True)]
        bodies = [_tree_body(tree) for tree in trees]
        ids = [git.object_id("tree", body, len(tip)) for body in bodies]
        beads = {**beads, **{shard: (_TREE, oid) for shard, oid in zip(shards, ids, strict=True)}}
        bodies.append(_tree_body(beads))
        ids.append(git.object_id("tree", bodies[-1], len(tip)))
        root = {**root, "beads": (_TREE, ids[-1])}
        bodies.append(_tree_body(root))
        ids.append(git.object_id("tree", bodies[-1], len(tip)))
        trees += [beads, root]
        self._trees.keep(zip(ids, trees, strict=True))
        return list(zip(ids, bodies, strict=True))

    def _old_trees(self, tip: str, shards: list[str]) -> tuple[Entries, Entries, list[Entries]]:
        """`tip`'s root and beads/ trees and the named shard trees: from what this process
        wrote or read before where it can, the rest read by git (_few)."""
        root = self._trees.get(self._trees.tips.get(tip))
        beads = self._trees.get(root["beads"][1]) if root and "beads" in root else None
        if root is None or beads is None:
            meta, raw_root, raw_beads = self._few([f"{tip}:meta.json", f"{tip}^{{tree}}",
                                                   f"{tip}:beads"])
            _check_meta(meta, self.ref)
            root, beads = _entries(raw_root, len(tip) // 2), _entries(raw_beads, len(tip) // 2)
        unknown = [beads[s][1] for s in shards if s in beads and beads[s][1] not in self._trees]
        if unknown:
            raw = self._few(unknown)
            self._trees.keep((oid, _entries(tree, len(tip) // 2))
                             for oid, tree in zip(unknown, raw, strict=True))
        return root, beads, [self._trees.get(beads[s][1]) or {} if s in beads else {}
                             for s in shards]

    # -- git -----------------------------------------------------------------------------------

    def _few(self, specs: list[str]) -> list[bytes | None]:
        """A few objects a write needs, through the long-lived `git cat-file --batch` of a
        build (objects.reader: no process of their own); through _cat() if it fails. None
        for a missing object."""
        found = objects.reader(self.repo).contents(specs)
        if found is None:
            return self._cat(specs)
        return [got[1] if got is not None else None for got in found]

    def _cat(self, specs: list[str]) -> list[bytes | None]:
        """The contents of many objects in one git process (None for a missing one)."""
        proc = subprocess.run(
            ["git", "cat-file", "--batch", "--buffer"], cwd=self.repo, env=git.clean_env(),
            input="".join(f"{s}\n" for s in specs).encode(), capture_output=True)
        if proc.returncode != 0:
            raise git.GitError(["cat-file", "--batch"], proc.returncode, proc.stderr.decode())
        return _split_batch(proc.stdout, len(specs))

    def _cas(self, new: str, old: str | None, transitions: int = 0) -> str | None:
        """Move the branch from `old` (None: absent) to `new` unless someone moved it first.
        None when moved, else git's reason why not. The reflog entry says how many
        transitions the move records (`git reflog gt-ledger`; 0 is the ledger's creation)."""
        why = f"gastown ledger: {transitions} transition(s)" if transitions else \
            "gastown ledger: start"
        if old is not None and objects.move_ref(self.repo, common_dir(self.repo),
                                                identity_env(self.repo), self.ref, new, old, why):
            return None
        proc = git.run("update-ref", "-m", why, self.ref, new, old or "",
                       cwd=self.repo, check=False)
        return None if proc.returncode == 0 else proc.stderr.strip() or "update-ref failed"


@dataclass(eq=False)
class _Pending:
    """A put() waiting for its group commit."""

    record: dict[str, Any]
    message: str
    commit: str | None = None
    error: Exception | None = None

    @property
    def done(self) -> bool:
        return self.commit is not None or self.error is not None


class _TreeCache:
    """Ledger trees this process wrote or read, by id, and the root tree of each ledger commit
    it made (git objects never change, so an id's entries are good forever)."""

    LIMIT = 4096

    def __init__(self) -> None:
        self.tips: dict[str, str] = {}
        self.trees: dict[str, Entries] = {}

    def __contains__(self, oid: str) -> bool:
        return oid in self.trees

    def get(self, oid: str | None) -> Entries | None:
        return self.trees.get(oid) if oid else None

    def keep(self, trees: Iterable[tuple[str, Entries]]) -> None:
        if len(self.trees) > self.LIMIT:
            self.trees.clear()
            self.tips.clear()
        self.trees.update(trees)


def _tree_body(tree: Entries) -> bytes:
    """A tree object's content (objects.tree_body of these str entries)."""
    return objects.tree_body({name.encode(): (int(mode, 8), bytes.fromhex(oid))
                              for name, (mode, oid) in tree.items()})


def _commit_object(tree: str, parent: str | None, message: str) -> bytes:
    """A ledger commit, as `git commit-tree` with IDENTITY would write it now."""
    stamp = f"{int(time.time())} +0000"
    author = f"{IDENTITY['GIT_AUTHOR_NAME']} <{IDENTITY['GIT_AUTHOR_EMAIL']}> {stamp}"
    committer = f"{IDENTITY['GIT_COMMITTER_NAME']} <{IDENTITY['GIT_COMMITTER_EMAIL']}> {stamp}"
    parents = f"parent {parent}\n" if parent else ""
    return (f"tree {tree}\n{parents}author {author}\ncommitter {committer}\n\n"
            f"{message}").encode()


class _Prefetch:
    """Ledger._fetch of the tip of the moment, on a thread of its own."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.tip: str | None = None
        self.fetched: Fetched | None = None
        self.thread = threading.Thread(target=self._run, name="ledger-prefetch", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.tip = self.ledger.tip()
            self.fetched = self.ledger._fetch(self.tip) if self.tip else None
        except Exception:  # the caller's own read then says what is wrong
            self.fetched = None

    def take(self, tip: str) -> Fetched | None:
        """What was read, if it was read at `tip`."""
        self.thread.join()
        return self.fetched if self.tip == tip else None


@contextmanager
def _flocked(path: Path) -> Iterator[None]:
    """Hold an exclusive flock on `path`; the kernel drops it if the process dies."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _json_blobs(listing: str) -> list[tuple[str, str]]:
    """(blob id, path) of the JSON files in `git ls-tree -z` output."""
    blobs = []
    for line in filter(None, listing.split("\0")):
        head, path = line.split("\t", 1)
        _, kind, oid = head.split()
        if kind == "blob" and path.endswith(".json"):
            blobs.append((oid, path))
    return blobs


def _split_batch(data: bytes, count: int) -> list[bytes | None]:
    """Parse `git cat-file --batch` output for `count` requests."""
    found: list[bytes | None] = []
    pos = 0
    for _ in range(count):
        end = data.index(b"\n", pos)
        header = data[pos:end].split()
        if header[-1] in (b"missing", b"ambiguous"):
            found.append(None)
            pos = end + 1
            continue
        size = int(header[2])
        found.append(data[end + 1:end + 1 + size])
        pos = end + 1 + size + 1  # the content is followed by a newline
    return found


def _by_shard(changes: dict[str, str]) -> dict[str, Entries]:
    """`beads/xx/name` -> blob, grouped as shard -> new entries."""
    shards: dict[str, Entries] = {}
    for path, blob in changes.items():
        _, shard, name = path.split("/")
        shards.setdefault(shard, {})[name] = ("100644", blob)
    return shards


def _entries(tree: bytes | None, oid_size: int) -> Entries:
    """The entries of a raw tree object ({} for a missing tree), as str."""
    return {name.decode(): (f"{mode:o}", oid.hex())
            for name, (mode, oid) in objects.parse_tree(tree or b"", oid_size).items()}


def _check_meta(meta: bytes | None, ref: str) -> None:
    if meta is None:
        raise LedgerError(f"{ref} exists but is not a gastown ledger (no meta.json)")
    schema = _parse_record(meta, "meta.json").get("schema")
    if schema != SCHEMA:
        raise LedgerError(f"{ref} has ledger schema {schema}; this gastown reads {SCHEMA}")


def _parse_record(data: bytes | None, path: str) -> dict[str, Any]:
    try:
        value = json.loads(data or b"")
    except ValueError as exc:
        raise LedgerError(f"ledger file {path} is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise LedgerError(f"ledger file {path} is not a JSON object")
    return value


def _log_entry(chunk: str, bead_id: str | None = None) -> dict[str, str]:
    """One ledger commit, without its Gas-Bead trailers; for `bead_id`, of a group commit only
    the line about that bead."""
    commit, at, message = chunk.lstrip("\n").split("\n", 2)
    body, _, last = message.rstrip("\n").rpartition("\n\n")
    trailers = last.splitlines()
    if body and all(line.startswith(f"{TRAILER}: ") for line in trailers):
        message = body
        if bead_id is not None and (len(trailers) > 1 or _GROUP.match(body)):
            mine = [line for line in body.splitlines() if line.startswith(f"{bead_id}: ")]
            message = "\n".join(mine) or body
    return {"commit": commit, "at": _iso(at), "message": message.strip()}
