"""Gasfile.example.yaml stays true: it validates and compiles to the beads it describes."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.conftest import make_repo

ROOT = Path(__file__).resolve().parent.parent


def test_example_gasfile_validates(tmp_path: Path, gas) -> None:
    repo = make_repo(tmp_path / "repo", {
        "security_audit.json": json.dumps([{"id": n, "title": f"Finding {n}"} for n in (1, 2, 3)]),
        "src/a.js": "", "src/lib/b c.js": "",
        "list_lint.py": "import json; print(json.dumps([{'file': 'src/a.js'}]))",
    })
    shutil.copy(ROOT / "Gasfile.example.yaml", repo / "Gasfile.yaml")
    shutil.copytree(ROOT / "templates", repo / "templates")
    result = gas(repo, "validate")
    assert result.code == 0, result
    assert result.out == ("Gasfile.yaml is valid: 7 beads (security: 3, typescript: 2, chores: 1,"
                          " lint: 1), 7 dependencies\n")
    graph = json.loads(gas(repo, "graph", "--format", "json").out)
    assert "ts-src-lib-b-c-js" in {n["id"] for n in graph["nodes"]}
