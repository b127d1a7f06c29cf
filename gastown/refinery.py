"""The refinery: merges approved beads into the integration branch, then CI.

With `batch: 1` each bead is merged and tested on its own. With `batch: N` approved beads
queue up; whichever bead thread finds no batch running takes up to N of them, merges them onto
the tip one after the other (each bead keeps its own merge commit and trailer), runs CI once on
the result and moves `into` once. When that CI fails it bisects: the first half is tested on
its own and lands if it passes, the culprit is searched for in whichever half failed, and the
beads that were merged on top of a culprit go back to the front of the queue, for the next
batch. `into` only ever moves to a commit whose CI passed; every batch settles at least one
bead, so every bead is settled (merged once, or failed) in the end.
"""
from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, partial
from pathlib import Path

from gastown import desk, git, objects, spawn, worktrees
from gastown.bead import Bead

TRAILER = "Gas-Bead"
FINGERPRINT_TRAILER = "Gas-Fingerprint"
REFLOG = "gas: refinery merge"  # the reflog message of each move of `into`
WORKTREE = "_refinery"


@dataclass
class MergeResult:
    ok: bool
    commit: str | None = None
    reason: str | None = None
    ci_seconds: float = 0.0


@dataclass(eq=False)
class _Ticket:
    """One approved bead waiting for the refinery; its thread waits until `result` is set."""

    bead: Bead
    branch: str
    result: MergeResult | None = None
    error: Exception | None = None
    ci_seconds: float = 0.0  # every CI run this bead was part of

    @property
    def settled(self) -> bool:
        return self.result is not None or self.error is not None


@dataclass
class _Link:
    """A bead merged onto the refinery's chain: the commit carrying its trailer."""

    ticket: _Ticket
    commit: str


class Refinery:
    """Owns the integration branch: it alone moves `into`, with compare-and-swap."""

    def __init__(self, root: Path, into: str, *, strategy: str, ci: str | None,
                 env: dict[str, str], logs: Path, say: Callable[[str, str], None],
                 batch: int = 1) -> None:
        self.root, self.into, self.strategy, self.ci = root, into, strategy, ci
        self.env = {**env, **worktrees.identity_env(root)}
        self.logs, self.say = logs, say
        self.batch = max(1, batch)
        self.cond = threading.Condition()
        self.queue: deque[_Ticket] = deque()
        self.running = False  # a bead thread is running a batch
        self.path: Path | None = None
        self.known: str | None = None  # the tip of `into` when last read or moved
        # The commit the refinery worktree is known to be exactly at (checked out, nothing
        # else in it): a cherry-pick that succeeded leaves it so, and then needs no reset.
        self.clean_at: str | None = None
        self.commits: objects.Committer | None = None  # made on the first merge
        # a merge made here -> (its tip, its tree, what it brought when made without git)
        self.lineage: dict[str, tuple[str, str, tuple[objects.Change, ...] | None]] = {}

    def tip(self) -> str:
        tip = git.rev(f"refs/heads/{self.into}", cwd=self.root)
        assert tip is not None, f"integration branch {self.into} vanished"
        self.known = tip
        return tip

    def base(self) -> str:
        """Where a bead starting now starts: the tip as the refinery last read or moved it
        (no git process; if someone else moved `into` since, the bead merges onto theirs)."""
        return self.known or self.tip()

    def merge(self, bead: Bead, branch: str) -> MergeResult:
        """Merge one approved bead (blocks until its fate is known). Its thread may run the
        batch that holds it, or other beads' batches, while it waits."""
        ticket = _Ticket(bead, branch)
        with self.cond:
            self.queue.append(ticket)
        while (batch := self._next_batch(ticket)) is not None:
            self._run(batch)
        if ticket.error is not None:
            raise ticket.error
        assert ticket.result is not None
        return ticket.result

    def _next_batch(self, ticket: _Ticket) -> list[_Ticket] | None:
        """None once `ticket` is settled; else the next batch, for this thread to run."""
        with desk.away(), self.cond:  # while another bead's thread merges
            self.cond.wait_for(lambda: ticket.settled or not self.running)
            if ticket.settled:
                return None
            self.running = True  # an unsettled ticket is queued while no batch runs
            # Without CI there is nothing to test together and nothing to bisect: everything
            # queued is merged in one pass (one reset, one move of `into`).
            limit = self.batch if self.ci else len(self.queue)
            return [self.queue.popleft() for _ in range(min(limit, len(self.queue)))]

    def _run(self, batch: list[_Ticket]) -> None:
        try:
            self._land(self.tip(), batch)
        except Exception as exc:  # the batch's beads fail with it (those queued again wait)
            with self.cond:
                for ticket in batch:
                    if not ticket.settled and ticket not in self.queue:
                        ticket.error = exc
        finally:
            with self.cond:
                self.running = False
                self.cond.notify_all()

    def _settle(self, ticket: _Ticket, result: MergeResult) -> None:
        result.ci_seconds = ticket.ci_seconds
        with self.cond:
            ticket.result = result
            self.cond.notify_all()

    def _requeue(self, tickets: list[_Ticket]) -> None:
        """Back to the front of the queue, in order: they go into the next batch."""
        with self.cond:
            self.queue.extendleft(reversed(tickets))

    # -- one batch -------------------------------------------------------------------------

    def _land(self, base: str, tickets: list[_Ticket]) -> None:
        """Merge the tickets onto `base`, run CI once, then move `into` or bisect."""
        chain = self._chain(base, tickets)
        if not chain:
            return
        ci = self._ci(chain)
        if ci is None or ci.ok:
            self._advance(base, chain)
        else:
            self._bisect(base, chain, ci)

    def _bisect(self, base: str, chain: list[_Link], failed: spawn.ProcResult) -> None:
        """CI `failed` on `base` + `chain`: the bead that breaks it fails, the beads before it
        land, the beads after it (merged on top of it) go back to the queue."""
        if len(chain) == 1 or failed.killed:
            reason = _ci_reason(self.ci or "", failed)
            for link in chain:
                self._settle(link.ticket, MergeResult(False, reason=reason))
            return
        left, right = chain[:len(chain) // 2], chain[len(chain) // 2:]
        self.say("Refinery", f"BISECT CI failed on {self.into} + {len(chain)} beads: "
                             f"testing the first {len(left)}")
        ci = self._ci(left)
        if ci is not None and not ci.ok:
            self._requeue([link.ticket for link in right])
            self._bisect(base, left, ci)
        elif (landed := self._advance(base, left)) is None:
            self._requeue([link.ticket for link in right])
        else:
            self._bisect(landed, right, failed)  # right's commits sit on it: CI failed there

    def _chain(self, base: str, tickets: list[_Ticket]) -> list[_Link]:
        """Each bead merged onto the one before, starting at `base`. A bead that conflicts
        with `base` itself fails; one that conflicts only with the beads before it in this
        batch (which may yet fail CI) waits for the next batch."""
        if self.strategy == "rebase" or not merge_tree_writes():
            combine = self._in_worktree(base)
        else:
            combine = partial(self._in_objects, self._heads(tickets))
        chain: list[_Link] = []
        later: list[_Ticket] = []
        for ticket in tickets:
            commit, conflict = combine(chain[-1].commit if chain else base, ticket)
            if commit is not None:
                chain.append(_Link(ticket, commit))
            elif chain:
                later.append(ticket)
                mates = ", ".join(link.ticket.bead.id for link in chain)
                self.say("Refinery", f"WAIT {ticket.bead.id}: conflicts with {mates} of this "
                                     f"batch; retried on the next {self.into} tip")
            else:
                self._settle(ticket, MergeResult(False, reason=conflict))
        self._requeue(later)
        return chain

    def _heads(self, tickets: list[_Ticket]) -> dict[str, str]:
        """branch -> the commit it is at: read from the ref files, else for the whole batch
        in one git process (a branch that cannot be read keeps its name, and merge-tree says
        what is wrong with it)."""
        names = [ticket.branch for ticket in tickets]
        read = {name: git.read_ref(f"refs/heads/{name}", self.root) for name in names}
        if all(read.values()):
            return {name: oid for name, oid in read.items() if oid}
        proc = git.run("rev-parse", *(f"refs/heads/{n}^{{commit}}" for n in names),
                       cwd=self.root, check=False)
        found = proc.stdout.split()
        return dict(zip(names, found, strict=True)) if proc.returncode == 0 and \
            len(found) == len(names) else {name: name for name in names}

    def _in_objects(self, heads: dict[str, str], tip: str,
                    ticket: _Ticket) -> tuple[str | None, str | None]:
        """(commit, None) or (None, why not): `merge` and `squash` computed by
        `git merge-tree` in the object store, with no checkout and no index (a third of the
        cost of `git merge` in a worktree; merge hooks do not run)."""
        head = heads[ticket.branch]
        if (tree := self._trivially(tip, head)) is not None:
            made = objects.made(head)
            return self._commit(tree, tip, head, ticket, made[1].changes if made else None), None
        proc = git.run("merge-tree", "--write-tree", "--name-only", "--no-messages", tip,
                       head, cwd=self.root, check=False)
        lines = proc.stdout.splitlines()
        if proc.returncode not in (0, 1) or not lines:
            why = (proc.stderr.strip().splitlines() or ["git merge-tree failed"])[-1]
            return None, f"merge into {self.into} failed: {why}"
        if proc.returncode == 1:
            names = [name for name in lines[1:] if name][:5]
            return None, f"merge conflict with {self.into} in {', '.join(names)}"
        return self._commit(lines[0], tip, head, ticket), None

    def _commit(self, tree: str, tip: str, head: str, ticket: _Ticket,
                changes: tuple[objects.Change, ...] | None = None) -> str:
        """The bead's merge (or squash) commit on `tip`, remembered as made on it."""
        merge = self.strategy == "merge"
        parents = [tip, head] if merge else [tip]
        if self.commits is None:
            self.commits = objects.committer(self.root, self.env,
                                             worktrees.common_dir(self.root))
        parents = [p if _is_oid(p, len(tree)) else git.rev(p, cwd=self.root) or p
                   for p in parents]
        commit = self.commits.make(tree, parents, merge_message(ticket.bead, "Merge " if merge
                                                                 else ""))
        self.lineage[commit] = (tip, tree, changes)
        return commit

    def _trivially(self, tip: str, head: str) -> str | None:
        """The merged tree without a git process when the bead (committed by gastown.objects
        on a base this refinery's merges lead from to `tip`) and what merged since its base
        changed different files (objects.disjoint); None to ask `git merge-tree`."""
        made = objects.made(head)
        if made is None:
            return None
        base, ours = made
        descends, theirs = self._merged_since(base, tip)
        if not descends:
            return None
        if theirs is None:  # a merge on the way was git's: ask git what changed
            found = objects.differ(self.root).diff(base, tip)
            theirs = list(found.changes) if found else None
        if theirs is None or not objects.disjoint(ours.changes, theirs):
            return None
        root = self._tree(tip)
        if root is None:
            return None
        return objects.apply(self._read_tree, bytes.fromhex(root), ours.changes,
                             worktrees.common_dir(self.root) / "objects", len(tip))

    def _merged_since(self, base: str, tip: str) -> tuple[bool, list[objects.Change] | None]:
        """Whether `tip` is `base` or reached from it by merge commits this refinery made,
        and what those merges brought when each was made here without git (every path they
        changed, as a diff from `base` to `tip` would list it or more)."""
        brought: list[objects.Change] | None = []
        for _ in range(len(self.lineage) + 1):
            if tip == base:
                return True, brought
            if tip not in self.lineage:
                return False, None
            tip, _, changes = self.lineage[tip]
            brought = None if brought is None or changes is None else [*brought, *changes]
        return False, None

    def _tree(self, commit: str) -> str | None:
        if commit in self.lineage:
            return self.lineage[commit][1]
        found = objects.reader(self.root).read(commit)
        if found is None or found[0] != "commit" or not found[1].startswith(b"tree "):
            return None
        return found[1][5:5 + len(commit)].decode()

    def _read_tree(self, oid: bytes) -> objects.Tree | None:
        found = objects.reader(self.root).read(oid.hex())
        return objects.parse_tree(found[1], len(oid)) if found and found[0] == "tree" else None

    def _in_worktree(self, base: str) -> Callable[[str, _Ticket], tuple[str | None, str | None]]:
        """In the refinery's worktree (checked out at `base` first): `rebase` (each of the
        bead's commits cherry-picked onto the tip, the last one reworded), and `merge` and
        `squash` with a git older than `merge-tree --write-tree` (2.38)."""
        path = self._worktree(base)

        def combine(tip: str, ticket: _Ticket) -> tuple[str | None, str | None]:
            self.clean_at = None
            conflict = self._combine(path, ticket.bead, ticket.branch)
            if conflict is None:
                self.clean_at = git.out("rev-parse", "HEAD", cwd=path)
                return self.clean_at, None
            self._reset(path, tip)
            self.clean_at = tip
            return None, conflict
        return combine

    def _worktree(self, tip: str) -> Path:
        """The refinery's worktree, at `tip` and clean."""
        if self.path is None or not self.path.exists():
            self.path = worktrees.add(self.root, WORKTREE, tip, branch=None)
        elif self.clean_at != tip:
            self._reset(self.path, tip)
        self.clean_at = tip
        return self.path

    def _reset(self, path: Path, tip: str) -> None:
        """At `tip`, clean, no merge or cherry-pick left half done."""
        worktrees.forget_operations(path)
        git.run("checkout", "--quiet", "--force", "--detach", tip, cwd=path)
        git.run("clean", "-ffdxq", cwd=path)

    def _combine(self, path: Path, bead: Bead, branch: str) -> str | None:
        """Put the bead's work on top of HEAD; a conflict comes back as a reason."""
        merged, single = merge_message(bead, "Merge "), merge_message(bead, "")
        steps: dict[str, list[tuple[str, ...]]] = {
            "merge": [("merge", "--no-ff", "--no-verify", "-q", "-m", merged, branch)],
            "squash": [("merge", "--squash", "-q", branch),
                       ("commit", "--no-verify", "-q", "-m", single)],
            "rebase": [("cherry-pick", "--allow-empty", f"HEAD..{branch}"),
                       ("commit", "--amend", "--no-verify", "-q", "-m", single)],
        }
        for args in steps[self.strategy]:
            proc = git.run(*git.NO_AUTO_GC, *args, cwd=path, env=self.env, check=False)
            if proc.returncode != 0:
                return self._conflict_reason(path, proc.stdout + proc.stderr)
        return None

    def _conflict_reason(self, path: Path, output: str) -> str:
        files = git.run("diff", "--name-only", "--diff-filter=U", cwd=path, check=False)
        names = files.stdout.split()
        if names:
            return f"merge conflict with {self.into} in {', '.join(names[:5])}"
        return f"merge into {self.into} failed: {output.strip().splitlines()[-1:]}"

    # -- CI --------------------------------------------------------------------------------

    def _ci(self, chain: list[_Link]) -> spawn.ProcResult | None:
        """CI once on the chain's last commit (the tip plus every bead of the chain)."""
        if not self.ci:
            return None
        beads = [link.ticket.bead for link in chain]
        ids = ", ".join(bead.id for bead in beads)
        path = self._worktree(chain[-1].commit)
        self.clean_at = None  # CI may leave anything behind
        self.say("Refinery", f"RUN CI {self.ci} on {self.into} + {ids}")
        env = {**self.env, **(beads[0].env() if len(beads) == 1 else {}),
               "GAS_INTO": self.into, "GAS_BEADS": " ".join(bead.id for bead in beads)}
        single = len(beads) == 1
        log = self.logs / (f"{beads[0].id}.log" if single else "_batch.log")
        if not single:
            log.unlink(missing_ok=True)
        proc = spawn.run(self.ci, cwd=path, env=env, log_file=log)
        if not single:
            self._share_log(log, beads, ids)
        for link in chain:
            link.ticket.ci_seconds += proc.duration
        return proc

    def _share_log(self, log: Path, beads: list[Bead], ids: str) -> None:
        """A batch's CI output goes into the CI log of every bead it tested."""
        text = log.read_text(errors="replace")
        log.unlink(missing_ok=True)
        for bead in beads:
            with (self.logs / f"{bead.id}.log").open("a") as out:
                out.write(f"# CI on {self.into} + {ids}\n{text}")

    # -- moving `into` ---------------------------------------------------------------------

    def _advance(self, old: str, chain: list[_Link]) -> str | None:
        """Move `into` from `old` to the chain's last commit; every bead of the chain merged
        (with its own commit) or failed with why. The new tip, or None if it did not move."""
        new = chain[-1].commit
        failure = self._move(old, new, [link.ticket.branch for link in chain])
        for link in chain:
            result = MergeResult(False, reason=failure) if failure else \
                MergeResult(True, commit=link.commit)
            self._settle(link.ticket, result)
        return None if failure else new

    def _move(self, old: str, new: str, merged: list[str]) -> str | None:
        """`into` from `old` to `new` and the merged beads' branches deleted, in one
        transaction: both happen, or neither."""
        if objects.move_ref(self.root, worktrees.common_dir(self.root), self.env,
                            f"refs/heads/{self.into}", new, old, REFLOG,
                            [f"refs/heads/{branch}" for branch in merged]):
            self.known = new
            return None
        commands = [f"update refs/heads/{self.into} {new} {old}\n",
                    *(f"delete refs/heads/{branch}\n" for branch in merged)]
        moved = git.run("update-ref", "-m", REFLOG, "--stdin", cwd=self.root,
                        input="".join(commands), check=False)
        if moved.returncode != 0 and self.tip() != old:
            return f"{self.into} moved during the merge; not merged"
        if moved.returncode != 0:
            why = (moved.stderr.strip().splitlines() or ["update-ref failed"])[0]
            return f"could not move {self.into}: {why}"
        self.known = new  # update-ref moved it from `old` to `new`, or failed
        return None

    def close(self) -> None:
        if self.path is not None:
            worktrees.remove(self.root, self.path)
            self.path = None
@cache
def merge_tree_writes() -> bool:
    """This git has `merge-tree --write-tree` (2.38)."""
    return git.version() >= (2, 38)


_HEX = frozenset("0123456789abcdefABCDEF")


def _is_oid(text: str, size: int) -> bool:
    return len(text) == size and all(c in _HEX for c in text)


def merge_message(bead: Bead, verb: str) -> str:
    return (f"{verb}{bead.id}: {bead.title}\n\n"
            f"{TRAILER}: {bead.id}\n{FINGERPRINT_TRAILER}: {bead.fingerprint}\n")


def _ci_reason(command: str, proc: spawn.ProcResult) -> str:
    last = proc.tail.strip().splitlines()[-1:] or [""]
    return f"CI failed: `{command}` exit {proc.exit_code}: {last[0][:200]}"


def merged_trailers(root: Path, into: str) -> dict[str, tuple[str, str]]:
    """bead id -> (fingerprint, commit) for every Gas-Bead trailer on the integration branch
    (the newest commit of a bead merged more than once)."""
    if git.rev(f"refs/heads/{into}", cwd=root) is None:
        return {}
    fmt = (f"%H%x00%(trailers:key={TRAILER},valueonly,separator=%x1f)%x00"
           f"%(trailers:key={FINGERPRINT_TRAILER},valueonly,separator=%x1f)%x1e")
    out = git.out("log", "--first-parent", f"--format={fmt}", f"refs/heads/{into}", cwd=root)
    found: dict[str, tuple[str, str]] = {}
    for entry in out.split("\x1e"):
        commit, _, rest = entry.strip().partition("\x00")
        ids, _, prints = rest.partition("\x00")
        if ids.strip():
            found.setdefault(ids.strip(), (prints.strip(), commit))
    return found
