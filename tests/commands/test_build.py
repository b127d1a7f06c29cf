"""`gas build` end to end on real repos: DAG, merges, cap, up to date, --only, failures."""
from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import git, make_repo, trailers

# A bead's work: write out/<id>.txt; log start/end events; optionally wait at a barrier.
WORK = textwrap.dedent('''
    import json, os, pathlib, time
    bead = os.environ["GAS_BEAD_ID"]
    events = pathlib.Path(os.environ["GAS_TEST_EVENTS"])
    def log(kind):
        with events.open("a") as f:
            f.write(json.dumps([kind, bead]) + "\\n")
    log("start")
    barrier = int(os.environ.get("GAS_TEST_BARRIER", "0"))
    total = int(os.environ.get("GAS_TEST_TOTAL", "0"))
    deadline = time.monotonic() + 20
    while barrier and time.monotonic() < deadline:
        rows = [json.loads(l) for l in events.read_text().splitlines()]
        starts = sum(1 for k, _ in rows if k == "start")
        running = starts - sum(1 for k, _ in rows if k == "end")
        if running >= barrier or starts >= total:
            break
        time.sleep(0.01)  # sleep-ok: the bead's own polling, not test synchronisation
    out = pathlib.Path("out") / (bead + ".txt")
    out.parent.mkdir(exist_ok=True)
    out.write_text(os.environ["GAS_BEAD_TITLE"] + "\\n" + os.environ.get("GAS_TEST_NONCE", ""))
    log("end")
''')

PY = sys.executable


def gasfile(backlogs: str, *, parallel: int = 4, ci: str | None = None,
            checks: str = "[]") -> str:
    ci_line = f"ci: {json.dumps(ci)}" if ci else "strategy: merge"
    return textwrap.dedent(f'''\
        version: 1
        project: {{base: main, into: staging, parallel: {parallel}}}
        roles:
          polecat: {{runner: command, checks: {checks}, max_attempts: 2}}
          witness: {{checks: {checks}}}
          refinery: {{{ci_line}}}
        backlogs:
        ''') + textwrap.indent(textwrap.dedent(backlogs), "  ")


DAG = f'''\
security:
  from: audit.json
  id: "sec-{{{{ item.id }}}}"
  title: "{{{{ item.title }}}}"
  run: "{PY} work.py"
  tags: [security]
typescript:
  glob: "src/*.js"
  id: "ts-{{{{ path | slug }}}}"
  run: "{PY} work.py"
  needs: [security]
chores:
  items:
    - {{id: bump, title: Bump deps, run: "{PY} work.py", needs: [sec-3]}}
    - {{id: notes, title: Release notes, run: "{PY} work.py", needs: [typescript, bump]}}
'''

AUDIT = json.dumps({"items": [{"id": n, "title": f"Finding {n}"} for n in range(1, 6)]})


@pytest.fixture
def dag_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    files = {"work.py": WORK, "audit.json": AUDIT, "Gasfile.yaml": gasfile(DAG, parallel=3),
             ".gitignore": "__pycache__/\n"}
    files.update({f"src/m{n}.js": f"// module {n}\n" for n in range(1, 6)})
    repo = make_repo(tmp_path / "repo", files)
    monkeypatch.setenv("GAS_TEST_EVENTS", str(tmp_path / "events.jsonl"))
    return repo


def events(path: Path) -> list[tuple[str, str]]:
    if not path.exists():
        return []
    return [tuple(json.loads(line)) for line in path.read_text().splitlines()]  # type: ignore[misc]


def peak(rows: list[tuple[str, str]]) -> int:
    running = top = 0
    for kind, _ in rows:
        running += 1 if kind == "start" else -1
        top = max(top, running)
    return top


def test_dag_builds_each_bead_merged_exactly_once_in_need_order(dag_repo: Path, gas, tmp_path):
    result = gas(dag_repo, "build")
    assert result.code == 0, result
    merged = trailers(dag_repo)
    assert sorted(merged) == sorted(
        [f"sec-{n}" for n in range(1, 6)] + [f"ts-src-m{n}-js" for n in range(1, 6)]
        + ["bump", "notes"])
    assert len(merged) == len(set(merged)) == 12
    # every bead started from a tip that already held the merges of what it needs
    for bead, need in [("bump", "sec-3"), ("notes", "bump"), ("notes", "ts-src-m1-js"),
                       ("ts-src-m2-js", "sec-5")]:
        bead_commit = _merge_commit(dag_repo, bead)
        need_commit = _merge_commit(dag_repo, need)
        git(dag_repo, "merge-base", "--is-ancestor", need_commit, f"{bead_commit}^2")
    assert "[Mayor] Ingested 5 security + 5 typescript + 2 chores = 12 Beads total" in result.out
    assert "[Mayor] Dependency analysis: 7 Beads have sequencing constraints" in result.out
    assert "[Mayor] Independent Beads available for immediate parallel dispatch: 5" in result.out
    assert "Beads merged: 12 (100.0%)" in result.out
    assert peak(events(tmp_path / "events.jsonl")) <= 3
    assert git(dag_repo, "for-each-ref", "refs/heads/gas/") == ""  # merged: branches deleted


def _merge_commit(repo: Path, bead: str) -> str:
    record = json.loads(git(repo, "show", f"gt-ledger:{_record_path(bead)}"))
    assert record["state"] == "merged"
    return record["merge_commit"]


def _record_path(bead: str) -> str:
    from gastown.ledger import record_path

    return record_path(bead)


def test_user_checkout_is_never_touched(dag_repo: Path, gas):
    (dag_repo / "scratch.txt").write_text("uncommitted work\n")
    head = git(dag_repo, "rev-parse", "HEAD")
    assert gas(dag_repo, "build").code == 0
    assert git(dag_repo, "rev-parse", "HEAD") == head
    assert git(dag_repo, "rev-parse", "--abbrev-ref", "HEAD") == "main"
    assert git(dag_repo, "status", "--porcelain") == "?? scratch.txt"


def test_cap_is_reached_and_never_exceeded(tmp_path: Path, gas, monkeypatch):
    backlog = f'''\
        work:
          items: [{", ".join(f"{{id: w{n}, run: '{PY} work.py'}}" for n in range(8))}]
        '''
    repo = make_repo(tmp_path / "repo", {"work.py": WORK,
                                         "Gasfile.yaml": gasfile(backlog, parallel=3)})
    monkeypatch.setenv("GAS_TEST_EVENTS", str(tmp_path / "events.jsonl"))
    monkeypatch.setenv("GAS_TEST_BARRIER", "3")
    monkeypatch.setenv("GAS_TEST_TOTAL", "8")
    assert gas(repo, "build").code == 0
    assert peak(events(tmp_path / "events.jsonl")) == 3


def test_rerun_executes_nothing_and_writes_nothing(dag_repo: Path, gas, tmp_path):
    assert gas(dag_repo, "build").code == 0
    before = (git(dag_repo, "rev-parse", "staging"), git(dag_repo, "rev-parse", "gt-ledger"))
    (tmp_path / "events.jsonl").unlink()
    again = gas(dag_repo, "build")
    assert again.code == 0, again
    assert "Beads dispatched: 0" in again.out
    assert "Up to date: 12 Beads already merged, skipped" in again.out
    assert not (tmp_path / "events.jsonl").exists()
    assert (git(dag_repo, "rev-parse", "staging"), git(dag_repo, "rev-parse", "gt-ledger")) \
        == before


def test_edited_bead_alone_reruns(dag_repo: Path, gas, tmp_path):
    assert gas(dag_repo, "build").code == 0
    text = (dag_repo / "Gasfile.yaml").read_text().replace("Bump deps", "Bump all deps")
    (dag_repo / "Gasfile.yaml").write_text(text)
    (tmp_path / "events.jsonl").unlink()
    dry = gas(dag_repo, "build", "--dry-run")
    assert dry.code == 0
    assert dry.out.splitlines()[0].split() == ["would", "run", "bump", "definition", "changed"]
    result = gas(dag_repo, "build")
    assert result.code == 0, result
    assert [b for kind, b in events(tmp_path / "events.jsonl") if kind == "start"] == ["bump"]
    assert trailers(dag_repo).count("bump") == 2


def test_force_reruns_one_bead(dag_repo: Path, gas, tmp_path, monkeypatch):
    assert gas(dag_repo, "build").code == 0
    (tmp_path / "events.jsonl").unlink()
    monkeypatch.setenv("GAS_TEST_NONCE", "second run")
    assert gas(dag_repo, "build", "--force", "sec-2").code == 0
    assert [b for kind, b in events(tmp_path / "events.jsonl") if kind == "start"] == ["sec-2"]


def test_only_builds_selection_and_its_unmerged_needs(dag_repo: Path, gas):
    result = gas(dag_repo, "build", "--only", "bump")
    assert result.code == 0, result
    assert sorted(trailers(dag_repo)) == ["bump", "sec-3"]
    result = gas(dag_repo, "build", "--only", "ts-*")
    assert sorted(trailers(dag_repo)) == sorted(
        ["bump", "sec-3", "sec-1", "sec-2", "sec-4", "sec-5"]
        + [f"ts-src-m{n}-js" for n in range(1, 6)])
    assert "Up to date: 1 Beads already merged, skipped" in result.out


def test_dry_run_says_why_and_writes_nothing(dag_repo: Path, gas):
    result = gas(dag_repo, "build", "--dry-run")
    assert result.code == 0
    assert "would run sec-1" in result.out and "never built" in result.out
    assert result.out.splitlines()[-1] == "12 to run, 0 up to date (of 12 selected)"
    assert git(dag_repo, "branch", "--list", "staging", "gt-ledger") == ""


CONFLICT_WORK = textwrap.dedent('''
    import os, pathlib, time
    bead = os.environ["GAS_BEAD_ID"]
    gate = pathlib.Path(os.environ["GAS_TEST_GATE"])
    gate.mkdir(exist_ok=True)
    (gate / bead).touch()
    deadline = time.monotonic() + 20
    while len(list(gate.iterdir())) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)  # sleep-ok: the bead's own polling, not test synchronisation
    pathlib.Path("shared.txt").write_text(bead + "\\n")
''')


def test_merge_conflict_fails_bead_and_leaves_integration_branch(tmp_path: Path, gas,
                                                                  monkeypatch):
    backlog = f'''\
        edits:
          items:
            - {{id: left, run: "{PY} edit.py"}}
            - {{id: right, run: "{PY} edit.py"}}
        '''
    repo = make_repo(tmp_path / "repo", {"edit.py": CONFLICT_WORK, "shared.txt": "base\n",
                                         "Gasfile.yaml": gasfile(backlog, parallel=2)})
    monkeypatch.setenv("GAS_TEST_GATE", str(tmp_path / "gate"))
    result = gas(repo, "build")
    assert result.code == 1
    merged = trailers(repo)
    assert len(merged) == 1
    loser = ({"left", "right"} - set(merged)).pop()
    assert f"[Refinery] FAIL {loser}: merge conflict with staging in shared.txt" in result.out
    assert git(repo, "rev-parse", "staging") == _merge_commit(repo, merged[0])
    record = json.loads(git(repo, "show", f"gt-ledger:{_record_path(loser)}"))
    assert record["state"] == "failed"
    assert record["reason"] == "merge conflict with staging in shared.txt"


def test_ci_failure_fails_bead_and_leaves_integration_branch(dag_repo: Path, gas, tmp_path):
    text = (dag_repo / "Gasfile.yaml").read_text().replace(
        "strategy: merge", "ci: \"test ! -e out/sec-2.txt || (echo sec-2 breaks CI; exit 3)\"")
    (dag_repo / "Gasfile.yaml").write_text(text)
    git(dag_repo, "commit", "-qam", "ci")
    result = gas(dag_repo, "build", "--only", "security")
    assert result.code == 1
    assert sorted(trailers(dag_repo)) == ["sec-1", "sec-3", "sec-4", "sec-5"]
    assert "[Refinery] FAIL sec-2: CI failed: `test ! -e out/sec-2.txt || (echo sec-2 breaks CI;" \
           " exit 3)` exit 3: sec-2 breaks CI; staging unchanged" in result.out
    assert "out/sec-2.txt" not in git(dag_repo, "ls-tree", "-r", "--name-only", "staging")
    status = gas(dag_repo, "status", "--json")
    states = {b["id"]: b["state"] for b in json.loads(status.out)["beads"]}
    assert states["sec-2"] == "failed"
    assert states["bump"] == "pending"


def test_failed_bead_blocks_dependents_but_not_independent_beads(dag_repo: Path, gas):
    text = (dag_repo / "Gasfile.yaml").read_text().replace(
        "- {id: bump, title: Bump deps, run:", "- {id: bump, title: Bump deps, run: \"exit 4\", x:")
    (dag_repo / "Gasfile.yaml").write_text(text)
    result = gas(dag_repo, "build")
    assert result.code == 1, result
    assert "bump" not in trailers(dag_repo) and "notes" not in trailers(dag_repo)
    assert len(trailers(dag_repo)) == 10
    assert "[Mayor] BLOCKED notes: needs bump (not merged)" in result.out
    assert "Beads failed: 1" in result.out and "Beads blocked: 1" in result.out
    rerun = gas(dag_repo, "build", "--dry-run")
    assert "would run bump" in rerun.out and "failed before: gave up after 2 attempt(s)" \
        in rerun.out


def test_retry_gets_the_failure_output(tmp_path: Path, gas):
    script = textwrap.dedent('''
        import os, pathlib
        feedback = os.environ.get("GAS_FEEDBACK_FILE")
        if not feedback:
            print("first try: something is off")
            raise SystemExit(1)
        pathlib.Path("fixed.txt").write_text(pathlib.Path(feedback).read_text())
    ''')
    backlog = f'''\
        work:
          items: [{{id: flaky, run: "{PY} flaky.py"}}]
        '''
    repo = make_repo(tmp_path / "repo", {"flaky.py": script, "Gasfile.yaml": gasfile(backlog)})
    result = gas(repo, "build")
    assert result.code == 0, result
    fixed = git(repo, "show", "staging:fixed.txt")
    assert "exit 1" in fixed and "first try: something is off" in fixed
    assert "Beads retried: 1 attempts" in result.out


def test_empty_diff_is_a_rejection(tmp_path: Path, gas):
    backlog = '''\
        work:
          items: [{id: noop, run: "true"}]
        '''
    repo = make_repo(tmp_path / "repo", {"Gasfile.yaml": gasfile(backlog)})
    result = gas(repo, "build")
    assert result.code == 1
    assert '[Witness] REJECT noop "empty diff: the polecat changed nothing"' in result.out
    assert trailers(repo) == []


def test_item_text_stays_data_in_shell_and_templates(tmp_path: Path, gas):
    hostile = "x'; touch pwned; echo '{{ 7*7 }} $(touch pwned2) `touch pwned3` ../../etc"
    backlog = '''\
        work:
          from: items.json
          title: "{{ item.title }}"
          run: "printf '%s' {{ item.title }} > title.txt"
        '''
    repo = make_repo(tmp_path / "repo", {"items.json": json.dumps([{"id": 1, "title": hostile}]),
                                         "Gasfile.yaml": gasfile(backlog)})
    result = gas(repo, "build")
    assert result.code == 0, result
    assert git(repo, "show", "staging:title.txt") == hostile
    assert not any((repo / ".gastown" / "worktrees").rglob("pwned*"))
    assert not list(repo.rglob("pwned*"))
