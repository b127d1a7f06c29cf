"""The README shows real output: every line of its demo block appears in a real `gas demo` run."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def normal(line: str) -> str:
    """Drop what changes from run to run: clock, commit ids, wall time, paths, polecat slot."""
    line = re.sub(r"^\d\d:\d\d:\d\d ", "", line)
    line = re.sub(r"\b[0-9a-f]{10,40}\b", "<sha>", line)
    line = re.sub(r"Polecat-\d\d", "Polecat-NN", line)
    return re.sub(r"Wall clock time: .*", "Wall clock time: <t>", line)


def readme_demo_block() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = text.split("```\nDemo repository:", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines()[1:] if line and line != "…"]


def test_readme_demo_output_is_real(tmp_path: Path, gas) -> None:
    result = gas(tmp_path, "demo", "--dir", str(tmp_path / "demo"))
    assert result.code == 0, result
    real = {normal(line) for line in result.out.splitlines()}
    shown = readme_demo_block()
    assert len(shown) > 30
    missing = [line for line in shown if normal(line) not in real]
    assert missing == []
