from __future__ import annotations

import json
from pathlib import Path

import pytest

from gastown import backlogs
from gastown.backlogs import Item, load_items
from gastown.errors import GasError
from gastown.gasfile import Gasfile, load_gasfile


def write(root: Path, name: str, text: str) -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def gasfile_with(root: Path, backlog: str) -> Gasfile:
    """A Gasfile whose one backlog, `b`, is given as YAML lines under `b:` (line 2)."""
    body = "".join(f"    {line}\n" for line in backlog.splitlines())
    return load_gasfile(write(root, "Gasfile.yaml", f"backlogs:\n  b:\n{body}"))


def items_of(root: Path, backlog: str) -> list[Item]:
    gas = gasfile_with(root, backlog)
    return load_items(gas.backlogs["b"], gas)


SARIF = {
    "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
    "version": "2.1.0",
    "runs": [
        {"tool": {"driver": {"name": "semgrep"}},
         "results": [
             {"ruleId": "py.sqli", "level": "error", "message": {"text": "SQL injection"},
              "locations": [{"physicalLocation": {"artifactLocation": {"uri": "app/db.py"},
                                                  "region": {"startLine": 12}}}]},
             {"rule": {"id": "py.eval"}, "message": {"text": "eval"},
              "locations": [{"physicalLocation": {"artifactLocation": {"uri": "./x%20y.py"}}}]},
         ]},
        {"tool": {"driver": {"name": "bandit"}},
         "results": [
             {"ruleId": "B101", "message": {"text": "assert"},
              "locations": [{"physicalLocation": {
                  "artifactLocation": {"uri": "file:///ROOT/t/test_a.py"},
                  "region": {"startLine": 3}}}]},
         ]},
        {"tool": {"driver": {"name": "empty"}}},
    ],
}


# --- bad input -------------------------------------------------------------------------------

BAD = [
    ("missing-file", {}, "from: security_audit.json",
     "Gasfile.yaml:2: backlog 'b': file 'security_audit.json' not found\n"
     "  hint: 'from' paths are relative to the repository root"),
    ("not-a-list", {"security_audit.json": '{"a": 1}'}, "from: security_audit.json",
     "Gasfile.yaml:2: backlog 'b': security_audit.json holds a dict, not a list\n"
     '  hint: give a list, or {"items": [...]}'),
    ("yaml-scalar", {"x.yaml": "hello\n"}, "from: x.yaml",
     "Gasfile.yaml:2: backlog 'b': x.yaml holds a string, not a list\n"
     '  hint: give a list, or {"items": [...]}'),
    ("empty-yaml", {"x.yml": ""}, "from: x.yml",
     "Gasfile.yaml:2: backlog 'b': x.yml holds nothing, not a list\n"
     '  hint: give a list, or {"items": [...]}'),
    ("bad-json", {"data/a.json": '[\n  {"id": 1},\n  {"id": 2,}\n]\n'}, "from: data/a.json",
     "data/a.json:3: backlog 'b': invalid JSON: Expecting property name enclosed in double "
     "quotes"),
    ("bad-jsonl", {"a.jsonl": '{"id": 1}\n\n{"id": 2\n'}, "from: a.jsonl",
     "a.jsonl:3: backlog 'b': invalid JSON Lines: Expecting ',' delimiter"),
    ("bad-yaml", {"a.yaml": "- a\n- [b\n- c: d\n"}, "from: a.yaml",
     "a.yaml:3: backlog 'b': invalid YAML: expected ',' or ']', but got ':'"),
    ("unknown-format", {"a.txt": "x"}, "from: a.txt",
     "Gasfile.yaml:2: backlog 'b': cannot tell the format of 'a.txt'\n"
     "  hint: name it .json, .yaml, .jsonl or .sarif, or set format: json|yaml|jsonl|sarif"),
    ("sarif-without-runs", {"a.sarif": '{"version": "2.1.0"}'}, "from: a.sarif",
     "Gasfile.yaml:2: backlog 'b': a.sarif has no SARIF 'runs' list\n"
     "  hint: give a SARIF 2.1 log, or set format: json"),
    ("command-fails", {}, "from_command: 'echo one >&2; echo two >&2; exit 3'",
     "Gasfile.yaml:2: backlog 'b': command 'echo one >&2; echo two >&2; exit 3' exited 3: "
     "one | two\n  hint: run it in the repository root to see its whole output"),
    ("command-fails-quietly", {}, "from_command: 'false'",
     "Gasfile.yaml:2: backlog 'b': command 'false' exited 1\n"
     "  hint: run it in the repository root to see its whole output"),
    ("command-garbage", {}, "from_command: 'printf \"[1]\\nnope\\n\"'",
     "Gasfile.yaml:2: backlog 'b': command 'printf \"[1]\\nnope\\n\"' printed neither a JSON "
     "list nor JSON Lines (line 2: Expecting value)\n"
     '  hint: print a JSON list, {"items": [...]}, or one JSON value per line'),
]


@pytest.mark.parametrize(("files", "backlog", "expected"), [c[1:] for c in BAD],
                         ids=[c[0] for c in BAD])
def test_bad_backlog(tmp_path: Path, files: dict[str, str], backlog: str,
                     expected: str) -> None:
    for name, text in files.items():
        write(tmp_path, name, text)
    with pytest.raises(GasError) as caught:
        items_of(tmp_path, backlog)
    assert caught.value.format() == f"gas: error: {expected}"


def test_command_timeout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backlogs, "COMMAND_TIMEOUT", 0.2)
    with pytest.raises(GasError) as caught:
        items_of(tmp_path, "from_command: 'sleep 5 & sleep 5'")
    assert caught.value.format() == (
        "gas: error: Gasfile.yaml:2: backlog 'b': command 'sleep 5 & sleep 5' timed out "
        "after 0.2 s")


# --- sources ---------------------------------------------------------------------------------

def test_json_list(tmp_path: Path) -> None:
    write(tmp_path, "a.json", json.dumps([{"id": 1}, "two"]))
    assert items_of(tmp_path, "from: a.json") == [
        Item(data={"id": 1}, file="a.json"), Item(data="two", file="a.json")]


def test_json_items_wrapper(tmp_path: Path) -> None:
    write(tmp_path, "a.json", json.dumps({"items": [{"id": 1}], "meta": {}}))
    assert items_of(tmp_path, "from: a.json") == [Item(data={"id": 1}, file="a.json")]


def test_yaml_items_with_lines(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "# header\n- id: 1\n  title: one\n- id: 2\n")
    assert items_of(tmp_path, "from: a.yaml") == [
        Item(data={"id": 1, "title": "one"}, line=2, file="a.yaml"),
        Item(data={"id": 2}, line=4, file="a.yaml")]


def test_yaml_items_wrapper_with_lines(tmp_path: Path) -> None:
    write(tmp_path, "a.yml", "items:\n  - a\n  - b\n")
    assert [(i.data, i.line) for i in items_of(tmp_path, "from: a.yml")] == [("a", 2), ("b", 3)]


def test_jsonl(tmp_path: Path) -> None:
    write(tmp_path, "a.ndjson", '{"id": 1}\n\n"x\u2028y"\n')
    assert items_of(tmp_path, "from: a.ndjson") == [
        Item(data={"id": 1}, line=1, file="a.ndjson"),
        Item(data="x\u2028y", line=3, file="a.ndjson")]


def test_explicit_format(tmp_path: Path) -> None:
    write(tmp_path, "list.txt", "[1, 2]")
    assert [i.data for i in items_of(tmp_path, "from: list.txt\nformat: json")] == [1, 2]


@pytest.mark.parametrize("name", ["scan.sarif", "scan.sarif.json", "scan.json"])
def test_sarif(tmp_path: Path, name: str) -> None:
    text = json.dumps(SARIF).replace("/ROOT", str(tmp_path))
    write(tmp_path, name, text)
    assert items_of(tmp_path, f"from: {name}") == [
        Item(data={"rule": "py.sqli", "message": "SQL injection", "file": "app/db.py",
                   "line": 12, "level": "error", "tool": "semgrep",
                   "id": "py.sqli-app/db.py-12"}, path="app/db.py", file=name),
        Item(data={"rule": "py.eval", "message": "eval", "file": "x y.py", "line": None,
                   "level": "warning", "tool": "semgrep", "id": "py.eval-x y.py"},
             path="x y.py", file=name),
        Item(data={"rule": "B101", "message": "assert", "file": "t/test_a.py", "line": 3,
                   "level": "warning", "tool": "bandit", "id": "B101-t/test_a.py-3"},
             path="t/test_a.py", file=name),
    ]


def test_plain_json_with_runs_is_not_sarif(tmp_path: Path) -> None:
    write(tmp_path, "a.json", json.dumps({"runs": [], "items": [1]}))
    assert [i.data for i in items_of(tmp_path, "from: a.json")] == [1]


def test_glob(tmp_path: Path) -> None:
    for name in ["src/b.js", "src/a.js", "src/deep/c.js", "src/d.ts", ".git/x.js",
                 ".gastown/w/src/e.js", "src/.git/f.js"]:
        write(tmp_path, name, "")
    (tmp_path / "src" / "dir.js").mkdir()
    assert items_of(tmp_path, "glob: 'src/**/*.js'") == [
        Item(data={"path": p}, path=p) for p in ["src/a.js", "src/b.js", "src/deep/c.js"]]
    assert [i.path for i in items_of(tmp_path, "glob: '**/*.js'")] == [
        "src/a.js", "src/b.js", "src/deep/c.js"]


def test_inline_items_keep_gasfile_lines(tmp_path: Path) -> None:
    assert items_of(tmp_path, "items:\n  - a\n  - {id: b}") == [
        Item(data="a", line=4), Item(data={"id": "b"}, line=5)]


@pytest.mark.parametrize(("command", "expected"), [
    ("echo '[{\"file\": \"a.py\"}, 2]'", [{"file": "a.py"}, 2]),
    ("echo '{\"items\": [1, 2]}'", [1, 2]),
    ("printf '{\"a\": 1}\\n\\n{\"a\": 2}\\n'", [{"a": 1}, {"a": 2}]),
    ("echo '{\"a\": 1}'", [{"a": 1}]),
    ("true", []),
    ("cat", []),
])
def test_from_command(tmp_path: Path, command: str, expected: list[object]) -> None:
    backlog = "from_command: " + json.dumps(command)
    assert items_of(tmp_path, backlog) == [Item(data=value) for value in expected]


def test_from_command_runs_in_root_with_clean_env(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIT_DIR", "/elsewhere")
    write(tmp_path, "here.txt", "")
    command = ('python3 -c "import json,os; '
               "print(json.dumps([sorted(os.listdir()), os.environ.get('GIT_DIR')]))\"")
    items = items_of(tmp_path, "from_command: " + json.dumps(command))
    assert [i.data for i in items] == [["Gasfile.yaml", "here.txt"], None]
