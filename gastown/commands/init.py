"""`gas init`: a starter Gasfile.yaml, default role prompts, and the ledger branch."""
from __future__ import annotations

import argparse
import json
from importlib import resources
from pathlib import Path

from gastown import git
from gastown.errors import GasError
from gastown.gasfile import GASFILE_NAMES
from gastown.ledger import Ledger
from gastown.repo import find_root

PROMPTS = ("polecat.md.j2", "witness.md.j2")


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("init", help="write a starter Gasfile.yaml and prompts, create the ledger")
    p.add_argument("--force", action="store_true", help="overwrite an existing Gasfile")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    root = find_root(Path.cwd())
    existing = [name for name in GASFILE_NAMES if (root / name).exists()]
    if existing and not args.force:
        raise GasError(f"{existing[0]} already exists", file=existing[0],
                       hint="edit it, or `gas init --force` to start over")
    written = [_write_gasfile(root), *_write_prompts(root)]
    Ledger(root).ensure()
    if args.json:
        print(json.dumps({"written": written, "ledger": "gt-ledger"}, indent=2))
        return 0
    for path in written:
        print(f"wrote {path}")
    print("created branch gt-ledger (the ledger); next: edit Gasfile.yaml, then `gas build`")
    return 0


def _data(name: str) -> str:
    return (resources.files("gastown") / "data" / name).read_text()


def _write_gasfile(root: Path) -> str:
    branch = git.run("symbolic-ref", "--short", "HEAD", cwd=root, check=False).stdout.strip()
    (root / "Gasfile.yaml").write_text(_data("Gasfile.starter.yaml").replace("{base}",
                                                                               branch or "main"))
    return "Gasfile.yaml"


def _write_prompts(root: Path) -> list[str]:
    folder = root / "templates" / "prompts"
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name in PROMPTS:
        target = folder / name
        if not target.exists():
            target.write_text(_data(f"prompts/{name}"))
            written.append(f"templates/prompts/{name}")
    return written
