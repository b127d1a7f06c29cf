from __future__ import annotations

import fcntl
import json
import os
import re
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from gastown.ledger import SCHEMA, Ledger, LedgerError, now, record_path, transition
from tests.conftest import git, git_calls


def rec(bead_id: str, state: str = "running", **fields: Any) -> dict[str, Any]:
    return transition(None, bead_id=bead_id, state=state, **fields)


def commits(repo: Path, ref: str = "gt-ledger") -> int:
    return int(git(repo, "rev-list", "--count", ref))


def test_record_path_and_now() -> None:
    path = record_path("sec-3")
    assert re.fullmatch(r"beads/[0-9a-f]{2}/sec-3\.json", path)
    assert path == record_path("sec-3")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", now())
    with pytest.raises(ValueError):
        record_path("a/b")


def test_ensure_creates_branch_and_leaves_checkout_alone(repo: Path) -> None:
    (repo / "staged.txt").write_text("staged\n")
    git(repo, "add", "staged.txt")
    (repo / "README.md").write_text("dirty\n")
    before = (git(repo, "rev-parse", "HEAD"), git(repo, "status", "--porcelain"),
              (repo / ".git" / "index").read_bytes())
    ledger = Ledger(repo)
    assert not ledger.exists()
    ledger.ensure()
    tip = ledger.tip()
    ledger.ensure()
    assert ledger.tip() == tip
    assert json.loads(git(repo, "show", "gt-ledger:meta.json"))["schema"] == SCHEMA
    assert "git log gt-ledger" in git(repo, "show", "gt-ledger:README.md")
    assert git(repo, "rev-list", "--parents", "gt-ledger") == tip  # an orphan root commit
    ledger.put(rec("a"), "a: running")
    after = (git(repo, "rev-parse", "HEAD"), git(repo, "status", "--porcelain"),
             (repo / ".git" / "index").read_bytes())
    assert after == before
    assert git(repo, "symbolic-ref", "--short", "HEAD") == "main"


def test_put_reads_back_in_a_new_instance(repo: Path) -> None:
    ledger = Ledger(repo)
    first = rec("sec-1", title="Seç one", backlog="sec")
    second = transition(first, bead_id="sec-1", state="review", note="done")
    other = rec("sec-2")
    ledger.put(first, "sec-1: running (attempt 1)")
    ledger.put(other, "sec-2: running (attempt 1)")
    tip = ledger.put(second, "sec-1: review")
    assert ledger.tip() == tip
    assert Ledger(repo).load() == {"sec-1": second, "sec-2": other}
    assert Ledger(repo).get("sec-1") == second
    assert ledger.get("sec-1") == second
    assert commits(repo) == 1 + 3
    log = git(repo, "log", "--format=%s", "gt-ledger").splitlines()
    assert log[:3] == ["sec-1: review", "sec-2: running (attempt 1)", "sec-1: running (attempt 1)"]
    assert "Gas-Bead: sec-1" in git(repo, "log", "-1", "--format=%B", "gt-ledger")
    author = git(repo, "log", "-1", "--format=%an <%ae>", "gt-ledger")
    assert author == "gastown <gastown@localhost>"
    stored = git(repo, "show", f"gt-ledger:{record_path('sec-1')}") + "\n"
    assert stored == json.dumps(second, indent=2, sort_keys=True) + "\n"


def test_transition_builds_history_on_a_copy() -> None:
    first = transition(None, bead_id="b", state="running", title="B",
                       attempts=[{"n": 1, "started": now(), "ended": None}])
    assert first["schema"] == SCHEMA and first["id"] == "b" and first["title"] == "B"
    assert first["merge_commit"] is None and first["created"] == first["updated"]
    snapshot = json.dumps(first, sort_keys=True)
    second = transition(first, bead_id="b", state="merged", note="ok", merge_commit="abc")
    assert json.dumps(first, sort_keys=True) == snapshot
    second["attempts"][0]["ended"] = now()
    assert first["attempts"][0]["ended"] is None
    assert [h["state"] for h in second["history"]] == ["running", "merged"]
    assert second["history"][-1]["note"] == "ok" and second["merge_commit"] == "abc"
    assert second["created"] == first["created"]
    assert second["updated"] == second["history"][-1]["at"]
    with pytest.raises(ValueError):
        transition(first, bead_id="other", state="running")


def test_threads_writing_concurrently_lose_nothing(repo: Path) -> None:
    ledger = Ledger(repo)
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda i: ledger.put(rec(f"t-{i}"), f"t-{i}: running"), range(200)))
    assert set(Ledger(repo).load()) == {f"t-{i}" for i in range(200)}
    assert commits(repo) <= 200 + 1  # puts at the same moment share a commit
    assert [h["message"] for h in ledger.history("t-7")] == ["t-7: running"]


def test_two_writers_interleaving_keep_both(repo: Path) -> None:
    a, b = Ledger(repo), Ledger(repo)
    a.put(rec("a-1"), "a-1")
    b.put(rec("b-1"), "b-1")
    a.put(rec("a-2"), "a-2")
    assert set(a.load()) == set(b.load()) == {"a-1", "b-1", "a-2"}


def test_cas_retry_when_another_writer_moves_the_branch(repo: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = Ledger(repo), Ledger(repo)
    b._lock_path = tmp_path / "elsewhere.lock"  # b stands for a writer outside gastown's lock
    a.put(rec("a-1"), "a-1")
    real_cas = a._cas
    calls: list[str] = []

    def racing_cas(new: str, old: str | None, transitions: int = 0) -> str | None:
        if not calls:
            b.put(rec("b-1"), "b-1")  # lands between a reading the tip and moving it
        calls.append(new)
        return real_cas(new, old, transitions)

    monkeypatch.setattr(a, "_cas", racing_cas)
    a.put(rec("a-2"), "a-2")
    assert len(calls) == 2
    assert set(Ledger(repo).load()) == {"a-1", "b-1", "a-2"}
    assert commits(repo) == 1 + 3
    assert a.get("b-1") is not None  # the stale cache was dropped


def test_ensure_race_adopts_the_other_creator(repo: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = Ledger(repo), Ledger(repo)
    real_cas = a._cas

    def racing_cas(new: str, old: str | None, transitions: int = 0) -> str | None:
        b.ensure()
        return real_cas(new, old, transitions)

    monkeypatch.setattr(a, "_cas", racing_cas)
    a.ensure()
    assert a.tip() == b.tip() and commits(repo) == 1


def stuck_ledger_ref(repo: Path) -> Path:
    """A ref lock a killed git left on the ledger branch; git is told not to wait for it
    (core.filesRefLockTimeout, 100 ms by default, on each of the ledger's tries)."""
    git(repo, "config", "core.filesRefLockTimeout", "0")
    stuck = repo / ".git" / "refs" / "heads" / "gt-ledger.lock"
    stuck.write_text("")
    return stuck


def test_stuck_ref_is_an_error(repo: Path) -> None:
    ledger = Ledger(repo)
    ledger.ensure()
    stuck_ledger_ref(repo)
    with pytest.raises(LedgerError, match=r"gt-ledger\.lock"):
        ledger.put(rec("a"), "a")


def test_two_ledgers_from_threads(repo: Path) -> None:
    ledgers = [Ledger(repo), Ledger(repo)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda i: ledgers[i % 2].put(rec(f"x-{i}"), f"x-{i}"), range(40)))
    assert len(Ledger(repo).load()) == 40
    assert commits(repo) <= 40 + 1


def test_separate_processes_lose_nothing(repo: Path) -> None:
    script = textwrap.dedent("""
        import sys
        from pathlib import Path
        from gastown.ledger import Ledger, transition
        ledger, w = Ledger(Path(sys.argv[1])), sys.argv[2]
        for i in range(10):
            ledger.put(transition(None, bead_id=f"p{w}-{i}", state="running"), f"p{w}-{i}")
    """)
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(root)}
    procs = [subprocess.Popen([sys.executable, "-c", script, str(repo), str(w)], env=env)
             for w in range(4)]
    assert [p.wait() for p in procs] == [0] * 4
    assert len(Ledger(repo).load()) == 40
    assert commits(repo) == 40 + 1


def test_load_uses_a_constant_number_of_git_processes(repo: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    Ledger(repo).put_many([rec(f"r-{i}") for i in range(500)], "500 records")
    calls = git_calls(tmp_path, monkeypatch)
    records = Ledger(repo).load()
    assert len(records) == 500
    assert 1 <= len(calls.read_text().splitlines()) <= 3


def test_put_many_is_one_commit_and_history_filters(repo: Path) -> None:
    ledger = Ledger(repo)
    ledger.put(rec("a"), "a: running")
    tip = ledger.put_many([rec(f"m-{i}", "blocked") for i in range(5)] + [rec("a", "blocked")],
                          "blocked: 6 beads")
    ledger.put(rec("z[1]"), "z: running")
    assert commits(repo) == 1 + 3
    assert len(ledger.history("z[1]")) == 1  # ids are literal paths, not globs
    assert {r["state"] for r in Ledger(repo).load().values()} == {"blocked", "running"}
    assert [h["message"] for h in ledger.history("a")] == ["blocked: 6 beads", "a: running"]
    assert [h["commit"] for h in ledger.history("m-3")] == [tip]
    everything = ledger.history()
    assert [h["message"] for h in everything][:3] == ["z: running", "blocked: 6 beads",
                                                      "a: running"]
    assert len(everything) == 4 and len(ledger.history(limit=2)) == 2
    assert ledger.put_many([], "nothing") == ledger.tip()
    with pytest.raises(ValueError):
        ledger.put_many([rec("d"), rec("d")], "twice")


def test_worktree_writes_to_the_common_repository(repo: Path, tmp_path: Path) -> None:
    tree = tmp_path / "wt"
    git(repo, "worktree", "add", "-q", "-b", "side", str(tree))
    Ledger(tree).put(rec("w"), "w: running")
    assert set(Ledger(repo).load()) == {"w"}
    assert git(tree, "status", "--porcelain") == ""


def test_absent_branch_and_foreign_branch(repo: Path) -> None:
    ledger = Ledger(repo, branch="other-ledger")
    assert ledger.load() == {} and ledger.get("x") is None and ledger.history() == []
    assert ledger.tip() is None
    git(repo, "branch", "not-a-ledger")
    with pytest.raises(LedgerError):
        Ledger(repo, branch="not-a-ledger").load()
    with pytest.raises(LedgerError):
        Ledger(repo, branch="not-a-ledger").put(rec("x"), "x")


def test_a_warm_write_needs_no_git_process_and_is_fsck_clean(
        repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Once this process wrote (or read) the trees on a record's path, a write needs no git
    process (blob, trees and commit are stored as loose objects by gastown, the branch moved
    and its reflog appended to as update-ref does); what it wrote passes git's own strict
    checks, reads back, and the reflog says what each move recorded."""
    ledger = Ledger(repo)
    records = {f"w-{i}": rec(f"w-{i}") for i in range(30)}
    ledger.put_many(list(records.values()), "start")
    ledger.put(transition(records["w-0"], bead_id="w-0", state="review"), "w-0: review")
    calls = git_calls(tmp_path, monkeypatch)
    for state in ("merging", "merged"):
        ledger.put(transition(records["w-0"], bead_id="w-0", state=state), f"w-0: {state}")
    commands = [line.split()[0] for line in calls.read_text().splitlines()]
    assert commands == []
    monkeypatch.undo()
    assert git(repo, "fsck", "--strict", "--no-dangling") == ""
    assert git(repo, "reflog", "show", "--format=%gs", "gt-ledger").splitlines()[:2] == \
        ["gastown ledger: 1 transition(s)"] * 2
    fresh = Ledger(repo).load()
    assert fresh["w-0"]["state"] == "merged" and len(fresh) == 30


def test_puts_waiting_on_the_lock_share_one_commit(repo: Path) -> None:
    """While one put holds the way (here: another gastown process holds the ledger lock),
    the puts queued behind it are written together, each bead's history showing its line."""
    ledger = Ledger(repo)
    ledger.ensure()
    lock = repo / ".git" / "gastown" / "ledger.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    pool = ThreadPoolExecutor(max_workers=5)
    first = pool.submit(ledger.put, rec("g-0"), "g-0: running")
    with ledger._group:
        assert ledger._group.wait_for(lambda: ledger._busy, timeout=10)
    rest = [pool.submit(ledger.put, rec(f"g-{i}"), f"g-{i}: running (note\nover lines)")
            for i in range(1, 5)]
    with ledger._group:
        assert ledger._group.wait_for(lambda: len(ledger._queue) == 4, timeout=10)
    os.close(fd)
    group = {future.result(timeout=10) for future in rest}
    assert len(group) == 1 and first.result(timeout=10) not in group
    pool.shutdown()
    assert commits(repo) == 1 + 2
    assert [h["message"] for h in ledger.history("g-3")] == ["g-3: running (note over lines)"]
    group = ledger.history(limit=1)[0]["message"].splitlines()
    assert group[0] == "4 transitions: g-1 running, g-2 running, g-3 running, g-4 running"
    assert group[2:] == [f"g-{i}: running (note over lines)" for i in range(1, 5)]
    assert set(Ledger(repo).load()) == {f"g-{i}" for i in range(5)}


def test_a_sha256_repository(tmp_path: Path) -> None:
    """Object ids gastown computes itself follow the repository's object format."""
    repo = tmp_path / "sha256"
    git(tmp_path, "init", "-q", "--object-format=sha256", str(repo))
    ledger = Ledger(repo)
    first = ledger.put(rec("a"), "a: running")
    ledger.put(transition(Ledger(repo).get("a"), bead_id="a", state="review"), "a: review")
    assert len(first) == 64
    assert git(repo, "fsck", "--strict", "--no-dangling") == ""
    assert Ledger(repo).load()["a"]["state"] == "review"


def hold_ledger_lock(repo: Path) -> int:
    """Another gastown process writing: the ledger's lock held until the fd is closed."""
    lock = repo / ".git" / "gastown" / "ledger.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def test_posted_transitions_are_seen_at_once_and_coalesce(repo: Path) -> None:
    """post() returns before the commit; what was posted meanwhile goes into one commit, a
    bead's successive transitions too (its record keeps every step in its history)."""
    ledger = Ledger(repo)
    ledger.ensure()
    fd = hold_ledger_lock(repo)
    first = rec("p")
    ledger.post(first, "p: running")
    with ledger._group:
        assert ledger._group.wait_for(lambda: ledger._busy, timeout=10)
    review = transition(first, bead_id="p", state="review")
    merging = transition(review, bead_id="p", state="merging", note="approved")
    for record, message in ((review, "p: review"), (merging, "p: merging (approved)"),
                            (rec("q"), "q: running")):
        ledger.post(record, message)
    assert ledger.get("p") == merging and set(ledger.load()) == {"p", "q"}
    assert commits(repo) == 1  # nothing written yet
    os.close(fd)
    ledger.flush()

    assert commits(repo) == 1 + 2
    assert git(repo, "reflog", "--format=%gs", "gt-ledger").splitlines() == [
        "gastown ledger: 3 transition(s)", "gastown ledger: 1 transition(s)",
        "gastown ledger: start"]
    group = ledger.history(limit=1)[0]["message"].splitlines()
    assert group == ["3 transitions: p review, p merging, q running", "",
                     "p: review", "p: merging (approved)", "q: running"]
    assert [h["message"] for h in ledger.history("p")] == [
        "p: review\np: merging (approved)", "p: running"]
    stored = Ledger(repo).load()
    assert stored["p"] == merging and stored["q"]["state"] == "running"
    assert [h["state"] for h in stored["p"]["history"]] == ["running", "review", "merging"]


def test_a_failed_posted_write_is_raised_not_lost(repo: Path) -> None:
    """Nobody waits on a post(): a write that fails is raised by flush(), then once by the
    next post(); the records it held are not shown as if written."""
    ledger = Ledger(repo)
    ledger.ensure()
    stuck = stuck_ledger_ref(repo)
    ledger.post(rec("a"), "a: running")
    with pytest.raises(LedgerError, match=r"gt-ledger\.lock"):
        ledger.flush()
    assert ledger.get("a") is None
    stuck.unlink()
    with pytest.raises(LedgerError, match=r"gt-ledger\.lock"):
        ledger.post(rec("b"), "b: running")
    ledger.post(rec("c"), "c: running")
    ledger.flush()
    assert set(Ledger(repo).load()) == {"c"}
