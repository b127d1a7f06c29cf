from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from gastown import gasfile
from gastown.bead import RoleSpec
from gastown.errors import GasError
from gastown.gasfile import (
    Backlog,
    Project,
    find_gasfile,
    load_gasfile,
    validate_gasfile,
)

EXAMPLE_YAML = """\
version: 1
project:
  base: main          # default "main"
  into: staging
  ledger: gt-ledger
  parallel: 4
roles:
  polecat:  {runner: command, checks: ["python -m pytest -q"], max_attempts: 2}
  witness:  {checks: ["python -m pytest -q"]}
  refinery: {ci: "python -m pytest -q", strategy: merge}   # merge | squash | rebase
budget: {usd: 150, per_bead_usd: 4}
backlogs:
  security:
    from: security_audit.json
    id: "sec-{{ item.id }}"
    title: "{{ item.title }}"
    run: "python fix.py"
    tags: [security]
  typescript:
    glob: "src/**/*.js"
    id: "ts-{{ path | slug }}"
    run: "python ts_strict.py"
    needs: [security]
    roles: {polecat: {model: claude-sonnet-4-5}}
  chores:
    items:
      - {id: bump, title: Bump deps, run: "./bump.sh", needs: [sec-3]}
  lint:
    from_command: "python list_lint.py"
    id: "lint-{{ item.file | slug }}"
    run: "python fixlint.py"
"""

EXAMPLE_TOML = """\
version = 1

[project]
base = "main"
into = "staging"
ledger = "gt-ledger"
parallel = 4

[roles.polecat]
runner = "command"
checks = ["python -m pytest -q"]
max_attempts = 2

[roles.witness]
checks = ["python -m pytest -q"]

[roles.refinery]
ci = "python -m pytest -q"
strategy = "merge"

[budget]
usd = 150
per_bead_usd = 4

[backlogs.security]
from = "security_audit.json"
id = "sec-{{ item.id }}"
title = "{{ item.title }}"
run = "python fix.py"
tags = ["security"]

[backlogs.typescript]
glob = "src/**/*.js"
id = "ts-{{ path | slug }}"
run = "python ts_strict.py"
needs = ["security"]

[backlogs.typescript.roles.polecat]
model = "claude-sonnet-4-5"

[backlogs.chores]

[[backlogs.chores.items]]
id = "bump"
title = "Bump deps"
run = "./bump.sh"
needs = ["sec-3"]

[backlogs.lint]
from_command = "python list_lint.py"
id = "lint-{{ item.file | slug }}"
run = "python fixlint.py"
"""

MINIMAL = "backlogs:\n  b:\n    items: []\n"


@pytest.fixture(autouse=True)
def known_runners(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pin the runner list so the hints below do not depend on installed plugins."""
    monkeypatch.setattr(gasfile, "_known_runners", lambda: list(gasfile.FALLBACK_RUNNERS))


def write(root: Path, name: str, text: str) -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def failure(path: Path) -> str:
    with pytest.raises(GasError) as caught:
        load_gasfile(path)
    return caught.value.format()


def without_lines(backlog: Backlog) -> Backlog:
    return dataclasses.replace(backlog, line=None, item_lines=[])


# --- bad input -------------------------------------------------------------------------------

BAD_YAML = [
    ("malformed", "backlogs:\n  b: [1\n  c: 2\n",
     "Gasfile.yaml:3: invalid YAML: expected ',' or ']', but got ':'"),
    ("unknown-key", "backlogs:\n  security:\n    form: a.json\n",
     "Gasfile.yaml:3: unknown key 'backlogs.security.form'\n  hint: did you mean 'from'?"),
    ("unknown-key-no-match", "backlogs:\n  b:\n    items: []\n    zzz: 1\n",
     "Gasfile.yaml:4: unknown key 'backlogs.b.zzz'\n  hint: allowed keys: from, items, glob, "
     "from_command, id, title, run, tags, needs, roles, format, description"),
    ("unknown-top-key", "verison: 1\n" + MINIMAL,
     "Gasfile.yaml:1: unknown key 'verison'\n  hint: did you mean 'version'?"),
    ("unknown-role", "roles:\n  polecats: {}\n" + MINIMAL,
     "Gasfile.yaml:2: unknown key 'roles.polecats'\n  hint: did you mean 'polecat'?"),
    ("refinery-only-key", "roles:\n  polecat: {ci: x}\n" + MINIMAL,
     "Gasfile.yaml:2: unknown key 'roles.polecat.ci'\n  hint: allowed keys: runner, model, "
     "prompt, checks, max_attempts, env, timeout, stall, max_turns, args"),
    ("tags-type", "backlogs:\n  security:\n    from: a.json\n    tags: 5\n",
     "Gasfile.yaml:4: backlogs.security.tags: expected a list of strings, got int"),
    ("tag-item-type", "backlogs:\n  b:\n    items: []\n    tags:\n      - ok\n      - 3\n",
     "Gasfile.yaml:6: backlogs.b.tags.1: expected a non-empty string, got int"),
    ("parallel-zero", "project:\n  parallel: 0\n" + MINIMAL,
     "Gasfile.yaml:2: project.parallel: expected an integer >= 1, got 0"),
    ("parallel-str", "project:\n  parallel: four\n" + MINIMAL,
     "Gasfile.yaml:2: project.parallel: expected an integer >= 1, got str"),
    ("parallel-bool", "project:\n  parallel: true\n" + MINIMAL,
     "Gasfile.yaml:2: project.parallel: expected an integer >= 1, got bool"),
    ("project-list", "project: [main]\n" + MINIMAL,
     "Gasfile.yaml:1: project: expected a mapping, got list"),
    ("empty-base", "project: {base: ''}\n" + MINIMAL,
     "Gasfile.yaml:1: project.base: expected a non-empty string, got an empty string"),
    ("duplicate-key", "backlogs:\n  b:\n    items: []\n  b:\n    glob: x\n",
     "Gasfile.yaml:4: duplicate key 'backlogs.b'\n  hint: first given on line 2"),
    ("two-sources", "backlogs:\n  security:\n    from: a.json\n    glob: '*.py'\n",
     "Gasfile.yaml:4: backlogs.security: has both 'from' and 'glob'; pick one"),
    ("no-source", "backlogs:\n  security:\n    tags: [x]\n",
     "Gasfile.yaml:2: backlogs.security: needs one of from, items, glob, from_command\n"
     "  hint: from: a JSON/YAML/JSONL/SARIF file; items: an inline list; glob: a file pattern; "
     "from_command: a command printing JSON"),
    ("bad-name", "backlogs:\n  a b:\n    items: []\n",
     "Gasfile.yaml:2: backlog name 'a b' is not safe for branch names\n"
     "  hint: use letters, digits, '_', '.' and '-', starting with a letter or digit"),
    ("name-dot-lock", "backlogs:\n  b.lock:\n    items: []\n",
     "Gasfile.yaml:2: backlog name 'b.lock' is not safe for branch names\n"
     "  hint: use letters, digits, '_', '.' and '-', starting with a letter or digit"),
    ("bad-tag", "backlogs:\n  b:\n    items: []\n    tags: [ok, 'x..y']\n",
     "Gasfile.yaml:4: backlogs.b.tags: tag 'x..y' is not safe for branch names\n"
     "  hint: use letters, digits, '_', '.' and '-', starting with a letter or digit"),
    ("unknown-runner", "roles:\n  polecat:\n    runner: cluade\n" + MINIMAL,
     "Gasfile.yaml:3: roles.polecat.runner: unknown runner 'cluade'\n"
     "  hint: did you mean 'claude'? known: aider, claude, codex, command"),
    ("unknown-runner-far", "roles:\n  polecat:\n    runner: zzz\n" + MINIMAL,
     "Gasfile.yaml:3: roles.polecat.runner: unknown runner 'zzz'\n"
     "  hint: known: aider, claude, codex, command"),
    ("version-2", "version: 2\n" + MINIMAL,
     "Gasfile.yaml:1: version: unsupported version 2\n  hint: this gastown reads version 1"),
    ("version-str", "version: '1'\n" + MINIMAL,
     "Gasfile.yaml:1: version: expected an integer, got str"),
    ("items-not-list", "backlogs:\n  b:\n    items: {a: 1}\n",
     "Gasfile.yaml:3: backlogs.b.items: expected a list, got mapping"),
    ("no-backlogs", "version: 1\n",
     "Gasfile.yaml: missing required key 'backlogs'\n"
     "  hint: add a 'backlogs' mapping with at least one backlog"),
    ("empty-backlogs", "backlogs: {}\n",
     "Gasfile.yaml:1: backlogs: expected at least one backlog"),
    ("top-level-list", "- a\n", "Gasfile.yaml: top level: expected a mapping, got list"),
    ("bad-strategy", "roles:\n  refinery: {strategy: sqash}\n" + MINIMAL,
     "Gasfile.yaml:2: roles.refinery.strategy: expected one of merge, squash, rebase, "
     "got 'sqash'\n  hint: did you mean 'squash'?"),
    ("missing-prompt", "roles:\n  witness:\n    prompt: nope.md\n" + MINIMAL,
     "Gasfile.yaml:3: roles.witness.prompt: file 'nope.md' not found\n"
     "  hint: prompt paths are relative to the repository root"),
    ("bad-template", "backlogs:\n  b:\n    items: []\n    id: '{{ item.id '\n",
     "Gasfile.yaml:4: backlogs.b.id: bad template: unexpected end of template, "
     "expected 'end of print statement'."),
    ("negative-budget", "budget: {usd: -1}\n" + MINIMAL,
     "Gasfile.yaml:1: budget.usd: expected a number >= 0, got -1"),
    ("zero-timeout", "roles:\n  polecat: {timeout: 0}\n" + MINIMAL,
     "Gasfile.yaml:2: roles.polecat.timeout: expected a number > 0, got 0"),
    ("env-list", "roles:\n  polecat:\n    env:\n      A: [1]\n" + MINIMAL,
     "Gasfile.yaml:4: roles.polecat.env.A: expected a string, got list"),
    ("env-name", "roles:\n  polecat:\n    env:\n      A B: x\n" + MINIMAL,
     "Gasfile.yaml:4: roles.polecat.env: 'A B' is not a valid variable name"),
    ("format-on-glob", "backlogs:\n  b:\n    glob: x\n    format: json\n",
     "Gasfile.yaml:4: backlogs.b.format: only applies to 'from' backlogs"),
    ("recursive-alias", "backlogs:\n  b: &x\n    items: [*x]\n",
     "Gasfile.yaml:2: an alias refers to its own anchor"),
    ("backlog-role-key", "backlogs:\n  b:\n    items: []\n    roles:\n      polecat:\n"
     "        modle: x\n",
     "Gasfile.yaml:6: unknown key 'backlogs.b.roles.polecat.modle'\n"
     "  hint: did you mean 'model'?"),
]


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in BAD_YAML],
                         ids=[c[0] for c in BAD_YAML])
def test_bad_yaml_gasfile(tmp_path: Path, text: str, expected: str) -> None:
    assert failure(write(tmp_path, "Gasfile.yaml", text)) == f"gas: error: {expected}"


BAD_TOML = [
    ("malformed", "version = 1\n[backlogs.b]\nitems = [1,\n",
     "Gasfile.toml:3: invalid TOML: Invalid value"),
    ("malformed-mid", "[backlogs.b]\nitems = []\nglob = = 3\nrun = 'x'\n",
     "Gasfile.toml:3: invalid TOML: Invalid value"),
    ("duplicate", "[backlogs.b]\nitems = []\nitems = []\n",
     "Gasfile.toml:3: invalid TOML: Cannot overwrite a value"),
    ("unknown-key", "[backlogs.security]\nform = 'a.json'\n",
     "Gasfile.toml:2: unknown key 'backlogs.security.form'\n  hint: did you mean 'from'?"),
    ("role-type", "[backlogs.b]\nitems = []\n\n[backlogs.b.roles.polecat]\nmodel = 'x'\n"
     "max_attempts = 'two'\n",
     "Gasfile.toml:6: backlogs.b.roles.polecat.max_attempts: expected an integer >= 1, got str"),
    ("two-sources", "[backlogs.\"sec\"]\nfrom = 'a.json'\nglob = '*.py'\n",
     "Gasfile.toml:3: backlogs.sec: has both 'from' and 'glob'; pick one"),
    ("inline-table", "[backlogs]\nb = {items = [], tags = 5}\n",
     "Gasfile.toml:2: backlogs.b.tags: expected a list of strings, got int"),
]


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in BAD_TOML],
                         ids=[c[0] for c in BAD_TOML])
def test_bad_toml_gasfile(tmp_path: Path, text: str, expected: str) -> None:
    assert failure(write(tmp_path, "Gasfile.toml", text)) == f"gas: error: {expected}"


def test_toml_lines_skip_multiline_strings(tmp_path: Path) -> None:
    text = '[backlogs.b]\ndescription = """\n[backlogs.fake]\ntags = 2\n"""\nitems = []\ntags = 1\n'
    assert failure(write(tmp_path, "Gasfile.toml", text)) == (
        "gas: error: Gasfile.toml:7: backlogs.b.tags: expected a list of strings, got int")


# --- finding ---------------------------------------------------------------------------------

def test_find_gasfile(tmp_path: Path) -> None:
    path = write(tmp_path, "Gasfile.yml", MINIMAL)
    assert find_gasfile(tmp_path) == path


def test_find_gasfile_none(tmp_path: Path) -> None:
    with pytest.raises(GasError) as caught:
        find_gasfile(tmp_path)
    assert caught.value.format() == (
        f"gas: error: no Gasfile in {tmp_path} (looked for Gasfile.yaml, Gasfile.yml, "
        "Gasfile.toml)\n  hint: run `gas init` to create one")


def test_find_gasfile_two(tmp_path: Path) -> None:
    write(tmp_path, "Gasfile.yaml", MINIMAL)
    write(tmp_path, "Gasfile.toml", "")
    with pytest.raises(GasError) as caught:
        find_gasfile(tmp_path)
    assert caught.value.format() == (
        f"gas: error: more than one Gasfile in {tmp_path}: Gasfile.yaml, Gasfile.toml\n"
        "  hint: keep one of them and delete the others")


# --- good input ------------------------------------------------------------------------------

def test_example_loads(tmp_path: Path) -> None:
    gas = load_gasfile(write(tmp_path, "Gasfile.yaml", EXAMPLE_YAML))
    assert gas.version == 1
    assert gas.root == tmp_path
    assert gas.project == Project()
    assert gas.budget == {"usd": 150.0, "per_bead_usd": 4.0}
    assert list(gas.backlogs) == ["security", "typescript", "chores", "lint"]
    assert gas.backlogs["security"] == Backlog(
        name="security", kind="from", source="security_audit.json", id="sec-{{ item.id }}",
        title="{{ item.title }}", run="python fix.py", tags=["security"], line=13)
    assert gas.backlogs["typescript"].roles == {"polecat": {"model": "claude-sonnet-4-5"}}
    assert gas.backlogs["typescript"].needs == ["security"]
    chores = gas.backlogs["chores"]
    assert (chores.kind, chores.line, chores.item_lines) == ("items", 25, [27])
    assert chores.source == [{"id": "bump", "title": "Bump deps", "run": "./bump.sh",
                              "needs": ["sec-3"]}]
    assert gas.backlogs["lint"].kind == "from_command"


def test_yaml_and_toml_agree(tmp_path: Path) -> None:
    from_yaml = load_gasfile(write(tmp_path / "y", "Gasfile.yaml", EXAMPLE_YAML))
    from_toml = load_gasfile(write(tmp_path / "t", "Gasfile.toml", EXAMPLE_TOML))
    assert from_toml.project == from_yaml.project
    assert from_toml.roles == from_yaml.roles
    assert from_toml.budget == from_yaml.budget
    assert ({n: without_lines(b) for n, b in from_toml.backlogs.items()}
            == {n: without_lines(b) for n, b in from_yaml.backlogs.items()})
    assert list(from_toml.backlogs) == list(from_yaml.backlogs)


def test_toml_lines(tmp_path: Path) -> None:
    gas = load_gasfile(write(tmp_path, "Gasfile.toml", EXAMPLE_TOML))
    assert gas.backlogs["security"].line == 25
    assert gas.backlogs["chores"].item_lines == [43]
    assert gas.line_of("backlogs", "typescript", "roles", "polecat", "model") == 39
    assert gas.line_of("roles", "polecat", "checks") == 11


def test_toml_inline_item_lines(tmp_path: Path) -> None:
    text = "[backlogs.b]\nitems = [\n  {id = 'a'},\n  # note\n  {id = 'b'},\n]\n"
    gas = load_gasfile(write(tmp_path, "Gasfile.toml", text))
    assert gas.backlogs["b"].item_lines == [3, 5]


def test_defaults(tmp_path: Path) -> None:
    gas = validate_gasfile(write(tmp_path, "Gasfile.yaml", MINIMAL))
    assert gas.project == Project(base="main", into="staging", ledger="gt-ledger", parallel=4)
    assert gas.roles == {
        "polecat": {"runner": "command", "checks": [], "max_attempts": 2, "env": {},
                    "prompt": None},
        "witness": {"runner": None, "checks": [], "max_attempts": 1, "env": {}, "prompt": None},
        "refinery": {"ci": None, "strategy": "merge", "batch": 1},
    }
    assert gas.budget == {}
    assert gas.backlogs["b"] == Backlog(name="b", kind="items", source=[], line=2)


def test_default_prompts_when_present(tmp_path: Path) -> None:
    write(tmp_path, "templates/prompts/polecat.md.j2", "Fix {{ bead.title }}\n")
    gas = load_gasfile(write(tmp_path, "Gasfile.yaml", MINIMAL))
    assert gas.roles["polecat"]["prompt"] == "templates/prompts/polecat.md.j2"
    assert gas.roles["witness"]["prompt"] is None


def test_coercions(tmp_path: Path) -> None:
    write(tmp_path, "p.md", "x")
    text = ("roles:\n  polecat:\n    checks: make test\n    prompt: p.md\n    timeout: 90\n"
            "    env: {N: 3, F: 1.5, B: true, S: s}\n"
            "backlogs:\n  b:\n    items: [x]\n    tags: one\n    needs: other\n")
    gas = load_gasfile(write(tmp_path, "Gasfile.yaml", text))
    polecat = gas.roles["polecat"]
    assert polecat["checks"] == ["make test"]
    assert polecat["env"] == {"N": "3", "F": "1.5", "B": "true", "S": "s"}
    assert polecat["timeout"] == 90.0
    assert (gas.backlogs["b"].tags, gas.backlogs["b"].needs) == (["one"], ["other"])


def test_role_overlays_backlog_overrides(tmp_path: Path) -> None:
    text = ("roles:\n  polecat:\n    runner: claude\n    checks: [a]\n    env: {X: '1', Y: '2'}\n"
            "  refinery: {ci: make ci, strategy: squash, batch: 3}\n"
            "backlogs:\n  b:\n    items: []\n    roles:\n"
            "      polecat: {model: opus, max_attempts: 5, env: {Y: '3'}, stall: 30}\n")
    gas = load_gasfile(write(tmp_path, "Gasfile.yaml", text))
    assert gas.role("polecat", gas.backlogs["b"]) == RoleSpec(
        name="polecat", runner="claude", model="opus", checks=("a",), max_attempts=5,
        env=(("X", "1"), ("Y", "3")), stall=30.0)
    assert gas.role("polecat") == RoleSpec(
        name="polecat", runner="claude", checks=("a",), max_attempts=2,
        env=(("X", "1"), ("Y", "2")))
    assert gas.role("witness", gas.backlogs["b"]) == RoleSpec(name="witness", max_attempts=1)
    assert gas.role("refinery") == RoleSpec(name="refinery", ci="make ci", strategy="squash")


def test_line_of_walks_up(tmp_path: Path) -> None:
    gas = load_gasfile(write(tmp_path, "Gasfile.yaml", EXAMPLE_YAML))
    assert gas.line_of("backlogs", "chores", "items", 0) == 27
    assert gas.line_of("backlogs", "chores", "items", 0, "id") == 27
    assert gas.line_of("backlogs", "security", "nothing", "here") == 13
    assert gas.line_of("nowhere") is None


def test_yaml_merge_keys(tmp_path: Path) -> None:
    text = ("backlogs:\n  a: &base\n    items: [1]\n    tags: [t]\n"
            "  b:\n    <<: *base\n    tags: [u]\n")
    gas = load_gasfile(write(tmp_path, "Gasfile.yaml", text))
    assert (gas.backlogs["b"].source, gas.backlogs["b"].tags) == ([1], ["u"])


def test_keys_are_strings(tmp_path: Path) -> None:
    gas = load_gasfile(write(tmp_path, "Gasfile.yaml", "backlogs:\n  2024:\n    items: []\n"))
    assert list(gas.backlogs) == ["2024"]


def test_explicit_root(tmp_path: Path) -> None:
    write(tmp_path, "prompts/p.md", "x")
    path = write(tmp_path, "ci/Gasfile.yaml", "roles:\n  polecat: {prompt: prompts/p.md}\n"
                 + MINIMAL)
    gas = load_gasfile(path, root=tmp_path)
    assert (gas.root, gas.display) == (tmp_path, "ci/Gasfile.yaml")
    assert failure(path) == (
        "gas: error: Gasfile.yaml:2: roles.polecat.prompt: file 'prompts/p.md' not found\n"
        "  hint: prompt paths are relative to the repository root")


# -- the parse memo ----------------------------------------------------------------------------

def _memo_load(tmp_path: Path, text: str) -> gasfile.Gasfile:
    (tmp_path / "Gasfile.yaml").write_text(text)
    return load_gasfile(tmp_path / "Gasfile.yaml", root=tmp_path, memo_dir=tmp_path / "memo")


def test_a_remembered_parse_gives_the_same_gasfile_and_lines(tmp_path: Path) -> None:
    parsed = _memo_load(tmp_path, EXAMPLE_YAML)
    assert not (tmp_path / "memo").exists(), "remember() writes it, not load"
    parsed.remember()
    [kept] = (tmp_path / "memo").iterdir()
    recalled = _memo_load(tmp_path, EXAMPLE_YAML)
    assert recalled.lines == parsed.lines and recalled.lines
    assert recalled.backlogs == parsed.backlogs and recalled.project == parsed.project
    assert recalled.memo is not None and recalled.memo.kept is None, "recalled: nothing new"
    kept.write_text(kept.read_text().replace('"into":"staging"', '"into":"elsewhere"'))
    assert _memo_load(tmp_path, EXAMPLE_YAML).project.into == "elsewhere", \
        "the memo was not what the load used"


def test_a_changed_gasfile_is_parsed_again_with_its_own_lines(tmp_path: Path) -> None:
    _memo_load(tmp_path, EXAMPLE_YAML).remember()
    changed = EXAMPLE_YAML.replace("  parallel: 4", "  # four\n  parallel: zero")
    with pytest.raises(GasError) as caught:
        _memo_load(tmp_path, changed)
    assert caught.value.line == changed.splitlines().index("  parallel: zero") + 1


def test_a_broken_memo_is_ignored(tmp_path: Path) -> None:
    _memo_load(tmp_path, EXAMPLE_YAML).remember()
    [kept] = (tmp_path / "memo").iterdir()
    for broken in ("", "{", '{"schema": 1}', "[]", '{"schema":1,"key":"x","data":{},"lines":0}'):
        kept.write_text(broken.replace('"x"', '"' + gasfile.ParseMemo(
            tmp_path / "memo", tmp_path / "Gasfile.yaml", EXAMPLE_YAML).key + '"'))
        assert _memo_load(tmp_path, EXAMPLE_YAML).project.into == "staging"


def test_values_json_cannot_hold_are_parsed_every_time(tmp_path: Path) -> None:
    from gastown.yamlwalk import walk

    text = "version: 1\nwhen: 2024-01-01\n"  # a date: JSON would give back a string
    memo = gasfile.ParseMemo(tmp_path / "memo", tmp_path / "Gasfile.yaml", text)
    memo.keep(*walk(text, "Gasfile.yaml"))
    assert memo.kept is None
    memo.save()
    assert not (tmp_path / "memo").exists()


def test_a_build_whose_gasfile_did_not_change_never_imports_pyyaml(tmp_path: Path) -> None:
    """In a fresh interpreter, as `gas` runs: the first load parses (and imports PyYAML), the
    next one takes the memo."""
    import subprocess
    import sys

    (tmp_path / "Gasfile.yaml").write_text(EXAMPLE_YAML)
    script = ("import sys; from pathlib import Path; from gastown.gasfile import load_gasfile; "
              f"g = load_gasfile(Path({str(tmp_path / 'Gasfile.yaml')!r}), "
              f"memo_dir=Path({str(tmp_path / 'memo')!r})); g.remember(); "
              "print('yaml' in sys.modules, g.project.into)")
    runs = [subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                           check=True).stdout.split() for _ in range(2)]
    assert runs == [["True", "staging"], ["False", "staging"]]
