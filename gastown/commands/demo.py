"""`gas demo`: a throwaway repo with a backlog, built with the command runner (no model)."""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path

from gastown import git
from gastown.commands import build
from gastown.errors import GasError
from gastown.ledger import Ledger


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("demo", help="build a throwaway demo repo with the command runner")
    p.add_argument("--dir", metavar="DIR", help="where to create it (default: a new temp dir)")
    p.add_argument("-j", "--jobs", type=int, metavar="N", help="concurrency cap")
    p.add_argument("--json", action="store_true",
                   help="print the result as JSON (the build's lines go to stderr)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    target = _target(args.dir)
    make_demo_repo(target)
    if args.json:
        # The build's own lines go to stderr so that stdout is one JSON document.
        with contextlib.redirect_stdout(sys.stderr):
            code = _build(target, args)
        states = {k: r.get("state") for k, r in sorted(Ledger(target).load().items())}
        print(json.dumps({"dir": str(target), "exit_code": code, "states": states}, indent=2))
        return code
    print(f"Demo repository: {target}\n")
    code = _build(target, args)
    print(f"\nLook around: cd {target} && gas status && git log --oneline --graph staging"
          " && git log --oneline gt-ledger")
    return code


def _build(target: Path, args: argparse.Namespace) -> int:
    os.chdir(target)
    # The demo's commands say `python3`: make that the interpreter running gas.
    os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent),
                                          os.environ.get("PATH", "")])
    from gastown.main import parser

    jobs = ["-j", str(args.jobs)] if args.jobs else []
    return build.run(parser().parse_args(["build", *jobs]))


def _target(given: str | None) -> Path:
    if given is None:
        return Path(tempfile.mkdtemp(prefix="gas-demo-"))
    path = Path(given).resolve()
    if path.exists() and any(path.iterdir()):
        raise GasError(f"{path} exists and is not empty", hint="give a new or empty directory")
    path.mkdir(parents=True, exist_ok=True)
    return path


def make_demo_repo(target: Path) -> None:
    _copy(resources.files("gastown") / "data" / "demo", target)
    (target / "gitignore").rename(target / ".gitignore")
    git.run("init", "-q", "-b", "main", cwd=target)
    git.run("config", "user.name", "gas demo", cwd=target)
    git.run("config", "user.email", "demo@gastown.invalid", cwd=target)
    git.run("add", "-A", cwd=target)
    git.run("commit", "-q", "--no-verify", "-m", "demo: a calculator with findings", cwd=target)


def _copy(source: Traversable, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for entry in source.iterdir():
        if entry.name == "__pycache__":
            continue
        if entry.is_dir():
            _copy(entry, target / entry.name)
        else:
            (target / entry.name).write_bytes(entry.read_bytes())
