"""A no-op rebuild at scale: git processes per build not per bead, the compile memo, the DAG
without networkx, heavy imports only where needed."""
from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import textwrap
from functools import partial
from pathlib import Path
from typing import Any

import networkx as nx
import pytest

from gastown import git as gitmod
from gastown import templating
from gastown.bead import Bead
from gastown.commands.common import load
from gastown.errors import GasError
from gastown.graph import dag
from gastown.ledger import Ledger, transition
from gastown.mayor import Plan, memo_path
from tests.conftest import git, git_calls, make_repo

ROOT = Path(__file__).resolve().parent.parent
GASFILE = """\
version: 1
roles:
  polecat: {runner: command, prompt: prompts/polecat.md.j2}
  witness: {prompt: prompts/witness.md.j2}
backlogs:
  fix:
    from: fix.json
    title: "Fix {{ item.file }}"
    run: "fix {{ item.file }}"
    tags: [security]
  migrate:
    from: migrate.json
    run: "migrate {{ item.file }}"
    needs: ["fix-{{ item.after }}"]
  chores:
    items:
      - {id: changelog, title: Changelog, run: "true", needs: [migrate]}
"""
PROMPT = "Bead {{ bead.id }}: {{ bead.title }}\n{{ bead.item | tojson(indent=2) }}\n"


def backlog_files(n: int) -> dict[str, str]:
    """A Gasfile of n beads: fixes, migrations each needing one fix, and one chore."""
    fixes = (n - 1) // 2
    return {
        "Gasfile.yaml": GASFILE,
        "prompts/polecat.md.j2": PROMPT,
        "prompts/witness.md.j2": "Review {{ bead.id }} ({{ bead.run }})\n",
        "fix.json": json.dumps([{"id": f"{i:05d}", "file": f"src/m{i}.py"}
                                for i in range(fixes)]),
        "migrate.json": json.dumps([{"id": f"{i:05d}", "file": f"lib/p{i}.js",
                                     "after": f"{i % fixes:05d}"}
                                    for i in range(n - 1 - fixes)]),
    }


def merged_repo(path: Path, n: int) -> Path:
    """A repository whose n beads are all recorded merged with their fingerprints."""
    repo = make_repo(path, backlog_files(n))
    git(repo, "branch", "staging", "main")
    head = git(repo, "rev-parse", "main")
    records = [transition(None, bead_id=b.id, state="merged", fingerprint=b.fingerprint,
                          merge_commit=head, into="staging", backlog=b.backlog, title=b.title)
               for b in load(cwd=repo).plan.beads.values()]
    Ledger(repo).put_many(records, f"{n} beads merged")
    return repo


def counted(calls: Path, action: Any) -> int:
    before = len(calls.read_text().splitlines())
    action()
    return len(calls.read_text().splitlines()) - before


def test_a_noop_build_and_status_start_as_many_git_processes_at_3000_beads_as_at_30(
        tmp_path: Path, gas: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    small, big = merged_repo(tmp_path / "small", 31), merged_repo(tmp_path / "big", 3001)
    for repo in (small, big):
        assert gas(repo, "build", "--plain").code == 0  # the first build makes .gastown/
    calls = git_calls(tmp_path, monkeypatch)
    gitmod.version()  # asked once per process: not by the first of these builds alone
    counts = {}
    for n, repo in ((31, small), (3001, big)):
        monkeypatch.chdir(repo)
        compiled = counted(calls, load)
        built = counted(calls, partial(_noop_build, gas, repo, n))
        status = counted(calls, partial(_status, gas, repo, n))
        counts[n] = (compiled, built, status)
    assert counts[31] == counts[3001], calls.read_text()
    compiled, built, status = counts[3001]
    assert compiled <= 4 and built <= 30 and status <= 8, counts


def _noop_build(gas: Any, repo: Path, n: int) -> None:
    result = gas(repo, "build", "--plain")
    assert result.code == 0, result
    assert f"Up to date: {n} Beads already merged, skipped" in result.out
    assert "Dispatching" not in result.out


def _status(gas: Any, repo: Path, n: int) -> None:
    result = gas(repo, "status")
    assert result.code == 0 and result.out.splitlines()[-1] == f"{n} merged", result


# --- the compile memo --------------------------------------------------------------------------

def made(plan: Plan) -> dict[str, tuple[Any, ...]]:
    """Everything a compile decides about each bead (prompts rendered if they were not)."""
    return {b.id: (b.title, b.run, b.needs, b.tags, b.item, b.path, b.roles, b.line,
                   b.fingerprint, b.prompts) for b in plan.beads.values()}


def fresh(repo: Path) -> Plan:
    shutil.rmtree(repo / ".gastown" / "cache", ignore_errors=True)
    return load(cwd=repo).plan


class Renders:
    """Counts what the Mayor renders."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        for name in ("render", "render_template"):
            real = getattr(templating, name)
            monkeypatch.setattr(templating, name, self._counting(real))

    def _counting(self, real: Any) -> Any:
        def render(*args: Any, **kwargs: Any) -> Any:
            self.count += 1
            return real(*args, **kwargs)
        return render


def test_a_remembered_compile_renders_only_what_changed_and_equals_a_fresh_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = make_repo(tmp_path / "repo", backlog_files(41))
    first = load(cwd=repo).plan
    first.remember()
    expected = made(first)
    renders = Renders(monkeypatch)
    again = load(cwd=repo).plan
    assert renders.count == 0 and all(b.rendered is None for b in again.beads.values())
    assert made(again) == expected  # prompts rendered on demand, as they were
    again.remember()

    fixes = json.loads((repo / "fix.json").read_text())
    fixes[3]["file"] = "src/changed.py"
    (repo / "fix.json").write_text(json.dumps(fixes))
    renders.count = 0
    edited = load(cwd=repo).plan
    assert renders.count == 1 + 1 + 2  # that bead's title, run and its two prompts
    changed = {b for b, view in made(edited).items() if view != expected[b]}
    assert changed == {"fix-00003"}
    assert made(edited) == made(fresh(repo))


@pytest.mark.parametrize("edit", ["prompt", "role", "template", "code"])
def test_what_a_fingerprint_is_made_of_invalidates_the_memo(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, edit: str) -> None:
    repo = make_repo(tmp_path / "repo", backlog_files(9))
    load(cwd=repo).plan.remember()
    if edit == "prompt":
        (repo / "prompts" / "witness.md.j2").write_text("Look hard at {{ bead.id }}\n")
    elif edit == "role":
        text = (repo / "Gasfile.yaml").read_text()
        (repo / "Gasfile.yaml").write_text(text.replace("runner: command,",
                                                        "runner: command, max_attempts: 3,"))
    elif edit == "template":
        text = (repo / "Gasfile.yaml").read_text()
        (repo / "Gasfile.yaml").write_text(text.replace('"fix {{', '"fix --all {{'))
    else:
        monkeypatch.setattr("gastown.mayor._code_digest", lambda: "another gastown")
    renders = Renders(monkeypatch)
    plan = load(cwd=repo).plan
    assert renders.count > 0
    assert made(plan) == made(fresh(repo))


def test_the_memo_tells_a_date_from_its_text(tmp_path: Path) -> None:
    gasfile = ('version: 1\nbacklogs:\n  b:\n    from: items.yaml\n'
               '    title: "{{ item.when is string }}"\n')
    repo = make_repo(tmp_path / "repo", {"Gasfile.yaml": gasfile,
                                         "items.yaml": "- {id: x, when: 2024-01-02}\n"})
    plan = load(cwd=repo).plan
    plan.remember()
    assert plan.beads["b-x"].title == "False"
    (repo / "items.yaml").write_text('- {id: x, when: "2024-01-02"}\n')
    assert load(cwd=repo).plan.beads["b-x"].title == "True"


@pytest.mark.parametrize("content", ["{not json", '{"schema": 1, "made": []}',
                                     '{"schema": 1, "made": {"k": [1, 2]}}', '{"schema": 99}'])
def test_a_broken_memo_is_ignored(tmp_path: Path, content: str) -> None:
    repo = make_repo(tmp_path / "repo", backlog_files(5))
    plan = load(cwd=repo).plan
    path = memo_path(plan.gasfile)
    path.parent.mkdir(parents=True)
    path.write_text(content)
    assert made(load(cwd=repo).plan) == made(plan)


def test_the_memo_is_lost_on_a_key_mismatch_not_wrong(tmp_path: Path) -> None:
    """Entries are found by the digest of their inputs: a forged entry under another key
    is never used, and a compile of other inputs does not find this one's."""
    repo = make_repo(tmp_path / "repo", backlog_files(5))
    plan = load(cwd=repo).plan
    plan.remember()
    path = memo_path(plan.gasfile)
    data = json.loads(path.read_text())
    data["made"] = {f"forged-{k}": [v[0], "forged", v[2], v[3], "sha256:0"]
                    for k, v in data["made"].items()}
    path.write_text(json.dumps(data))
    assert made(load(cwd=repo).plan) == made(plan)


def test_build_remembers_the_compile_status_and_validate_do_not(tmp_path: Path,
                                                                gas: Any) -> None:
    repo = merged_repo(tmp_path / "repo", 5)
    path = memo_path(load(cwd=repo).plan.gasfile)
    for command in (["status"], ["validate"], ["build", "--dry-run"]):
        assert gas(repo, *command).code == 0
        assert not path.exists(), command
    assert gas(repo, "build", "--plain").code == 0
    written = path.stat()
    assert gas(repo, "build", "--plain").code == 0  # the same compile: nothing to write
    assert (path.stat().st_ino, path.stat().st_mtime_ns) == (written.st_ino,
                                                           written.st_mtime_ns)


# --- the DAG without networkx ------------------------------------------------------------------

def random_beads(seed: int, n: int = 60) -> dict[str, Bead]:
    rng = random.Random(seed)
    ids = [f"b{i:02d}" for i in range(n)]
    rng.shuffle(ids)
    beads = {}
    for i, bead_id in enumerate(ids):
        needs = tuple(dict.fromkeys(rng.sample(ids[:i], min(i, rng.randint(0, 3)))))
        beads[bead_id] = Bead(id=bead_id, title=bead_id, backlog=rng.choice("xyz"),
                              item=None, needs=needs, tags=(rng.choice(["t1", "t2"]),))
    return beads


@pytest.mark.parametrize("seed", range(25))
def test_dispatch_order_and_selection_are_what_networkx_gives(seed: int) -> None:
    beads = random_beads(seed)
    graph = dag.build(beads)
    rng = random.Random(seed)
    keep = set(rng.sample(sorted(beads), 25))
    priority = dag.remaining_path(graph)
    expected = list(nx.lexicographical_topological_sort(
        graph.subgraph(keep), key=lambda n: (-priority[n], n)))
    assert dag.dispatch_order(beads, keep) == expected
    weight = {n: rng.uniform(0.5, 3.0) for n in keep}
    assert dag.remaining_paths(beads, keep, weight) == \
        pytest.approx(dag.remaining_path(graph.subgraph(keep), weight))
    order = dag.topological_order(beads)
    assert sorted(order) == sorted(beads)
    assert all(order.index(need) < order.index(b) for b in beads for need in beads[b].needs)
    for pattern in ("x", "t2", "b1*"):
        matched = {n for n, b in beads.items()
                   if pattern in (b.backlog, *b.tags) or (pattern == "b1*" and n[:2] == "b1")}
        expected_sel = matched.union(*(nx.ancestors(graph, n) for n in matched))
        assert dag.select_beads(beads, [pattern], file="G") == expected_sel
        assert dag.select(graph, [pattern], file="G") == expected_sel


def test_a_cycle_is_named_as_networkx_names_it() -> None:
    beads = random_beads(3)
    first, last = dag.topological_order(beads)[0], dag.topological_order(beads)[-1]
    beads[first].needs = (last,)
    with pytest.raises(GasError) as caught:
        dag.check_acyclic(beads, file="G")
    cycle = nx.find_cycle(dag.build(beads))
    path = [edge[0] for edge in cycle] + [cycle[0][0]]
    assert f"dependency cycle: {' -> '.join(path)}" in str(caught.value)


# --- templates and imports ---------------------------------------------------------------------

@pytest.mark.parametrize("text", ["plain", "a } b % c # d", "tab\tand\nnewline\n", "", "é ∑"])
@pytest.mark.parametrize("shell", [False, True])
def test_text_without_template_syntax_renders_as_itself(text: str, shell: bool) -> None:
    assert templating.render(text, {}, what="x", shell=shell) == text
    assert templating._compiled(text, shell).render() == text


HEAVY = ("networkx", "doit", "rich", "gastown.executor", "gastown.live")


@pytest.mark.parametrize("command", [["status"], ["build"], ["build", "--json"], ["--version"]])
def test_a_noop_command_imports_no_heavy_module(tmp_path: Path, command: list[str]) -> None:
    repo = merged_repo(tmp_path / "repo", 5)
    script = textwrap.dedent(f"""
        import contextlib, io, sys
        from gastown.main import main
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            code = main({command!r})
        print(code, sorted(m for m in {HEAVY!r} if m in sys.modules))
    """)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", script], cwd=repo, env=env, check=True,
                         capture_output=True, text=True).stdout
    assert out.split() == ["0", "[]"]


# Standard modules whose imports (and compression or crypto libraries) a build used to pay for
# before its first agent started: for a temporary file's name, a rare retry's jitter, sha1 and
# sha256 through OpenSSL (gastown.digests), or what doit does with them and gastown never asks.
START_UP = ("tempfile", "shutil", "random", "_hashlib", "configparser", "pickle")


def test_a_build_that_runs_beads_imports_only_what_it_uses(tmp_path: Path) -> None:
    def gasfile(first: int) -> str:
        items = [{"id": f"b{n}", "run": f"echo {n} > out{n}.txt"} for n in range(first, first + 3)]
        return json.dumps({"version": 1, "backlogs": {"work": {"items": items}}})

    repo = make_repo(tmp_path / "repo", {"Gasfile.yaml": gasfile(0)})
    script = textwrap.dedent(f"""
        import contextlib, io, sys
        from gastown.main import main
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            code = main(["build", "--plain"])
        print(code, sorted(m for m in {START_UP!r} if m in sys.modules))
    """)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for first in (0, 3):  # a first build, then one that claims pooled worktrees
        (repo / "Gasfile.yaml").write_text(gasfile(first))
        out = subprocess.run([sys.executable, "-c", script], cwd=repo, env=env, check=True,
                             capture_output=True, text=True).stdout
        assert out.split() == ["0", "[]"]


def test_the_gasfile_knows_the_builtin_runners_without_importing_them() -> None:
    from gastown.gasfile import FALLBACK_RUNNERS
    from gastown.runners import BUILTIN

    assert sorted(FALLBACK_RUNNERS) == sorted(BUILTIN)
