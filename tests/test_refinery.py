"""The refinery's merge strategies on a real repo: one trailer per bead, first-parent history."""
from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest

from gastown import refinery
from tests.conftest import git, git_calls, git_command, make_repo, trailers

GASFILE = '''\
version: 1
project: {{base: main, into: staging}}
roles:
  refinery: {{strategy: {strategy}, ci: "test -e a.txt"}}
backlogs:
  work:
    items:
      - {{id: one, run: "echo one > a.txt && echo more > b.txt"}}
      - {{id: two, run: "echo two > c.txt", needs: [one]}}
'''


@pytest.mark.parametrize("old_git", [False, True], ids=["merge-tree", "worktree"])
@pytest.mark.parametrize("strategy", ["merge", "squash", "rebase"])
def test_strategy_lands_each_bead_once(tmp_path: Path, gas, strategy: str, old_git: bool,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Merges are computed in the object store (here without a git process: nothing else
    touched the beads' files; tests/test_objects.py has merge-tree's part); with a git older
    than 2.38 (no `merge-tree --write-tree`), in the refinery's worktree."""
    if old_git:
        monkeypatch.setattr(refinery, "merge_tree_writes", lambda: False)
    repo = make_repo(tmp_path / "repo", {"Gasfile.yaml": GASFILE.format(strategy=strategy)})
    calls = git_calls(tmp_path, monkeypatch)
    result = gas(repo, "build")
    assert result.code == 0, result
    used = {git_command(line) for line in calls.read_text().splitlines() if line.strip()}
    in_objects = strategy != "rebase" and not old_git
    assert bool(used & {"merge", "cherry-pick"}) == (not in_objects)
    assert trailers(repo) == ["two", "one"]
    assert git(repo, "show", "staging:c.txt") == "two"
    parents = git(repo, "log", "--format=%P", "-1", "staging").split()
    assert len(parents) == (2 if strategy == "merge" else 1)
    status = json.loads(gas(repo, "status", "--json").out)
    assert {b["id"]: b["state"] for b in status["beads"]} == {"one": "merged", "two": "merged"}


def test_merge_commits_are_what_commit_tree_would_make(tmp_path: Path, gas) -> None:
    """The refinery writes merge commits itself: the identity git gives, the time now, the
    objects fsck-clean; with a date fixed in the environment `git commit-tree` makes them."""
    repo = make_repo(tmp_path / "repo", {"Gasfile.yaml": GASFILE.format(strategy="merge")})
    assert gas(repo, "build").code == 0
    assert git(repo, "fsck", "--strict", "--no-dangling") == ""
    who = git(repo, "log", "-1", "--format=%an <%ae>|%cn <%ce>", "staging")
    assert who == "Test Author <author@example.com>|Test Committer <committer@example.com>"
    merged = git(repo, "log", "-1", "--format=%ct", "staging")
    bead = git(repo, "log", "-1", "--format=%ct", "staging^2")
    assert 0 <= int(merged) - int(bead) < 600

    fixed = make_repo(tmp_path / "fixed", {"Gasfile.yaml": GASFILE.format(strategy="merge")})
    with pytest.MonkeyPatch.context() as env:
        env.setenv("GIT_COMMITTER_DATE", "2001-02-03T04:05:06+00:00")
        assert gas(fixed, "build").code == 0
    assert git(fixed, "log", "-1", "--format=%cI", "staging") == "2001-02-03T04:05:06+00:00"
    assert git(fixed, "fsck", "--strict", "--no-dangling") == ""


TOGETHER = """\
version: 1
project: {{base: main, into: staging, parallel: 2}}
backlogs:
  work:
    items:
      - {{id: one, run: "{one} && touch $GAS_TEST_SYNC/one && {wait} two"}}
      - {{id: two, run: "{two} && touch $GAS_TEST_SYNC/two && {wait} one"}}
"""
WAIT = "while [ ! -e $GAS_TEST_SYNC/$0 ]; do sleep 0.01; done; :"


@pytest.mark.parametrize(("one", "two", "merge_tree"), [
    ("mkdir -p x && echo 1 > x/one", "mkdir -p y && echo 2 > y/two", False),
    ("sed -i 1s/.*/ONE/ shared.txt", "sed -i 9s/.*/NINE/ shared.txt", True),
], ids=["different-files", "same-file"])
def test_beads_started_together_merge_onto_each_other(tmp_path: Path, gas, one: str, two: str,
                                                      merge_tree: bool,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Both beads start from one base (each waits for the other before it ends), so the
    second merges onto a tip the first moved. Beads that changed different files merge
    without a git process (gastown.objects); the same file goes to `git merge-tree`, which
    merges its two changes."""
    gasfile = TOGETHER.format(one=one, two=two, wait="sh -c '" + WAIT + "'")
    shared = "".join(f"line {n}\n" for n in range(1, 10))
    repo = make_repo(tmp_path / "repo", {"Gasfile.yaml": gasfile, "shared.txt": shared})
    (tmp_path / "sync").mkdir()
    monkeypatch.setenv("GAS_TEST_SYNC", str(tmp_path / "sync"))
    calls = git_calls(tmp_path, monkeypatch)
    result = gas(repo, "build")
    assert result.code == 0, result
    used = {git_command(line) for line in calls.read_text().splitlines() if line.strip()}
    assert ("merge-tree" in used) is merge_tree
    assert sorted(trailers(repo)) == ["one", "two"]
    # the second merge's bead started where the first merge's did, not on it
    assert git(repo, "rev-parse", "staging^2^") == git(repo, "rev-parse", "staging~1^2^")
    if merge_tree:
        text = git(repo, "show", "staging:shared.txt").splitlines()
        assert (text[0], text[8]) == ("ONE", "NINE")
    else:
        assert git(repo, "show", "staging:x/one") == "1"
        assert git(repo, "show", "staging:y/two") == "2"
    assert git(repo, "fsck", "--strict", "--no-dangling") == ""


THREE = """\
version: 1
project: {base: main, into: staging, parallel: 3}
backlogs:
  work:
    items:
      - {id: one, run: "sed -i 1s/.*/ONE/ shared.txt && touch $S/one && sh -c 'WAIT' two"}
      - {id: two, run: "sed -i 9s/.*/NINE/ shared.txt && touch $S/two && sh -c 'WAIT' three"}
      - {id: three, run: "echo 3 > three.txt && touch $S/three && sh -c 'WAIT' one"}
"""


def test_merges_by_git_and_without_it_follow_each_other(tmp_path: Path, gas,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Three beads from one base, two of them on the same file: whatever order they merge
    in, some merges made by git and some without it, every change lands once."""
    shared = "".join(f"line {n}\n" for n in range(1, 10))
    repo = make_repo(tmp_path / "repo", {"Gasfile.yaml": THREE.replace("WAIT", WAIT).replace(
                                             "$S/", "$GAS_TEST_SYNC/"),
                                         "shared.txt": shared})
    (tmp_path / "sync").mkdir()
    monkeypatch.setenv("GAS_TEST_SYNC", str(tmp_path / "sync"))
    assert gas(repo, "build").code == 0
    assert sorted(trailers(repo)) == ["one", "three", "two"]
    text = git(repo, "show", "staging:shared.txt").splitlines()
    assert (text[0], text[8]) == ("ONE", "NINE")
    assert git(repo, "show", "staging:three.txt") == "3"
    assert git(repo, "fsck", "--strict", "--no-dangling") == ""


# -- batch: N ---------------------------------------------------------------------------------
# The CI script records each run (the beads it tested, from GAS_BEADS) and fails when the
# planted bead's file is in the tree. Its first run holds on until every bead is approved (it
# reads the ledger), so the other beads queue up behind it: what batches form is then fixed.
CI = textwrap.dedent('''
    import os, pathlib, subprocess, sys, time
    with open(os.environ["GAS_TEST_CI_RUNS"], "a") as runs:
        runs.write(os.environ["GAS_BEADS"] + "\\n")
    total = int(os.environ["GAS_TEST_TOTAL"])
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        subjects = subprocess.run(["git", "log", "--format=%B", "gt-ledger"], text=True,
                                  capture_output=True).stdout.splitlines()
        if len({s.split(":")[0] for s in subjects if ": merging" in s}) >= total:
            break
        time.sleep(0.01)  # sleep-ok: the CI's own polling, not test synchronisation
    if pathlib.Path("out/bad.txt").exists():
        print("out/bad.txt breaks the build")
        sys.exit(3)
''')
# A bead that starts its work only once `first` is approved (so `first` is alone in batch 1).
AFTER_FIRST = textwrap.dedent('''
    import os, pathlib, subprocess, sys, time
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        log = subprocess.run(["git", "log", "--format=%B", "gt-ledger"], text=True,
                             capture_output=True).stdout
        if "first: merging" in log:
            break
        time.sleep(0.01)  # sleep-ok: the bead's own polling, not test synchronisation
    pathlib.Path(sys.argv[1]).write_text(os.environ["GAS_BEAD_ID"] + "\\n")
''')
PY = sys.executable


def batch_gasfile(items: str, *, batch: int = 4, strategy: str = "merge") -> str:
    return textwrap.dedent(f'''\
        version: 1
        project: {{base: main, into: staging, parallel: 12}}
        roles:
          refinery: {{ci: "{PY} ci.py", strategy: {strategy}, batch: {batch}}}
        backlogs:
          work:
            run: "mkdir -p out && echo $GAS_BEAD_ID > out/$GAS_BEAD_ID.txt"
            items: [{items}]
        ''')


def batch_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gasfile: str,
               total: int) -> Path:
    monkeypatch.setenv("GAS_TEST_CI_RUNS", str(tmp_path / "ci-runs"))
    monkeypatch.setenv("GAS_TEST_TOTAL", str(total))
    return make_repo(tmp_path / "repo", {"Gasfile.yaml": gasfile, "ci.py": CI,
                                         "after_first.py": AFTER_FIRST,
                                         "shared.txt": "base\n"})


def ci_runs(tmp_path: Path) -> list[list[str]]:
    return [line.split() for line in (tmp_path / "ci-runs").read_text().splitlines()]


def ledger_record(repo: Path, bead: str) -> dict:
    from gastown.ledger import record_path

    return json.loads(git(repo, "show", f"gt-ledger:{record_path(bead)}"))


def assert_merged_on_staging(repo: Path, beads: list[str]) -> None:
    """Each bead once on staging, recorded with its own merge commit, which carries its
    trailer and is on staging's first-parent history."""
    assert sorted(trailers(repo)) == sorted(beads)
    first_parent = git(repo, "log", "--first-parent", "--format=%H", "staging").split()
    for bead in beads:
        commit = ledger_record(repo, bead)["merge_commit"]
        assert commit in first_parent
        assert git(repo, "log", "-1", "--format=%(trailers:key=Gas-Bead,valueonly)",
                   commit) == bead


def test_batch_merges_every_bead_once_with_fewer_ci_runs(tmp_path: Path, gas, monkeypatch):
    beads = [f"w{n}" for n in range(10)]
    items = ", ".join(f"{{id: {b}}}" for b in beads)
    repo = batch_repo(tmp_path, monkeypatch, batch_gasfile(items), total=len(beads))
    result = gas(repo, "build")
    assert result.code == 0, result
    assert_merged_on_staging(repo, beads)
    runs = ci_runs(tmp_path)
    assert len(runs) < len(beads)
    assert max(len(run) for run in runs) == 4  # batches fill up to the cap, never past it
    assert sorted(b for run in runs for b in run) == sorted(beads)  # no bead tested twice


@pytest.mark.parametrize("strategy", ["merge", "squash", "rebase"])
def test_batch_bisects_to_the_bad_bead(tmp_path: Path, gas, monkeypatch, strategy: str):
    beads = [f"w{n}" for n in range(9)]
    items = ", ".join(f"{{id: {b}}}" for b in [*beads[:5], "bad", *beads[5:]])
    repo = batch_repo(tmp_path, monkeypatch, batch_gasfile(items, strategy=strategy),
                      total=len(beads) + 1)
    result = gas(repo, "build")
    assert result.code == 1, result
    assert_merged_on_staging(repo, beads)
    record = ledger_record(repo, "bad")
    assert record["state"] == "failed"
    assert record["reason"] == (f"CI failed: `{PY} ci.py` exit 3: out/bad.txt breaks the build")
    assert "Beads failed: 1" in result.out
    # staging never pointed at a commit with the bad bead in it (CI failed on all of those)
    for commit in git(repo, "log", "--first-parent", "--format=%H", "staging").split():
        assert "out/bad.txt" not in git(repo, "ls-tree", "-r", "--name-only", commit)
    reflog = git(repo, "reflog", "--format=%H", "staging").split()
    assert all("out/bad.txt" not in git(repo, "ls-tree", "-r", "--name-only", c)
               for c in reflog)
    assert len(ci_runs(tmp_path)) < len(beads) + 1
    assert_kept_for_inspection(repo, "bad", beads)


def test_conflict_inside_a_batch_fails_only_that_bead(tmp_path: Path, gas, monkeypatch):
    items = ", ".join([
        "{id: first}",
        *(f"{{id: {b}, run: '{PY} after_first.py shared.txt'}}" for b in ("left", "right")),
        *(f"{{id: {b}, run: '{PY} after_first.py {b}.txt'}}" for b in ("o1", "o2")),
    ])
    repo = batch_repo(tmp_path, monkeypatch, batch_gasfile(items), total=5)
    result = gas(repo, "build")
    assert result.code == 1, result
    merged = trailers(repo)
    loser = ({"left", "right"} - set(merged)).pop()
    assert_merged_on_staging(repo, sorted({"first", "left", "right", "o1", "o2"} - {loser}))
    assert f"[Refinery] WAIT {loser}: conflicts with " in result.out
    assert f"[Refinery] FAIL {loser}: merge conflict with staging in shared.txt" in result.out
    assert ledger_record(repo, loser)["reason"] == "merge conflict with staging in shared.txt"
    assert [run for run in ci_runs(tmp_path) if loser in run] == []
    assert_kept_for_inspection(repo, loser, merged)


def assert_kept_for_inspection(repo: Path, failed: str, merged: list[str]) -> None:
    """A bead whose merge failed has its worktree back (pooled as it went to merge), on its
    branch with its work; a merged bead's is gone, and so is its branch."""
    tree = repo / ".gastown" / "worktrees" / failed
    assert git(tree, "symbolic-ref", "HEAD") == f"refs/heads/gas/{failed}"
    assert git(tree, "rev-parse", "HEAD") == git(repo, "rev-parse", f"gas/{failed}")
    assert git(tree, "status", "--porcelain") == ""
    for bead in merged:
        assert not (repo / ".gastown" / "worktrees" / bead).exists()
        assert git(repo, "branch", "--list", f"gas/{bead}") == ""
