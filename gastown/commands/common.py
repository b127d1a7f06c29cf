"""What several commands do first: find the repo, load the Gasfile, compile the plan."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gastown.gasfile import Gasfile, Project, find_gasfile, load_gasfile
from gastown.ledger import Ledger
from gastown.mayor import Plan, compile_plan
from gastown.repo import find_root
from gastown.worktrees import state_dir


@dataclass
class Loaded:
    root: Path
    gasfile: Gasfile
    plan: Plan
    ledger: Ledger  # the project's ledger (read only when asked)


def load(cwd: Path | None = None, gasfile: str | None = None, *,
         read_ledger: bool = False, prefetch: Callable[[Path], object] | None = None) -> Loaded:
    """With `read_ledger`, git reads the ledger's records while the Mayor compiles;
    `prefetch` is called with the repository's root as soon as it is found (to have git read
    in the background what the command needs next)."""
    root = find_root(cwd or Path.cwd())
    if prefetch is not None:
        prefetch(root)
    # The default ledger branch is read while the Gasfile is parsed (the ledger a Gasfile
    # names is known only then): most Gasfiles keep the default.
    guess = Ledger(root, Project.ledger) if read_ledger else None
    if guess is not None:
        guess.prefetch()
    path = Path(gasfile) if gasfile else find_gasfile(root)
    if not path.is_absolute():
        path = root / path
    loaded = load_gasfile(path, root=root, memo_dir=state_dir(root) / "cache")
    ledger = guess if guess is not None and guess.branch == loaded.project.ledger else \
        Ledger(root, loaded.project.ledger)
    if read_ledger:
        ledger.prefetch()
    return Loaded(root, loaded, compile_plan(loaded), ledger)


def add_gasfile_option(parser: object) -> None:
    parser.add_argument("-f", "--gasfile", metavar="FILE",  # type: ignore[attr-defined]
                        help="the Gasfile to use (default: Gasfile.yaml/.toml at the repo root)")
