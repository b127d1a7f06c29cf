"""`gas`: parse the command line, dispatch to a command module, map outcomes to exit codes."""
from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from gastown import __version__, readahead
from gastown.errors import EXIT_FAILED, EXIT_INTERRUPTED, GasError

GC_THRESHOLD = 20_000
COMMANDS = ("init", "build", "graph", "status", "log", "show", "validate", "doctor", "demo")


class _Formatter(argparse.HelpFormatter):
    """argparse's own, given the terminal's width as shutil.get_terminal_size() tells it:
    argparse makes one for every option it adds, and its own would import shutil for the
    width (1.5-5 ms of imports, with three compression libraries) in every command."""

    def __init__(self, prog: str, *args: Any, **kwargs: Any) -> None:
        if len(args) < 3 and kwargs.get("width") is None:  # width: the third after prog
            kwargs["width"] = _columns() - 2
        super().__init__(prog, *args, **kwargs)


def _columns() -> int:
    """What shutil.get_terminal_size() gives: $COLUMNS, else stdout's terminal, else 80."""
    with contextlib.suppress(KeyError, ValueError):
        if (columns := int(os.environ["COLUMNS"])) > 0:
            return columns
    try:
        return os.get_terminal_size(sys.__stdout__.fileno()).columns or 80  # type: ignore[union-attr]
    except (AttributeError, ValueError, OSError):
        return 80


class _Parser(argparse.ArgumentParser):
    """Every parser of gas, its commands' too (a subparser is of its parent's class)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)


def parser(only: str | None = None) -> argparse.ArgumentParser:
    """The command line; with `only`, just that command's (its module alone is imported:
    `gas status` never pays for the build's or the demo's imports)."""
    p = _Parser(prog="gas", description="Run a swarm of coding agents over one repository "
                "the way make runs recipes.")
    p.add_argument("--version", action="version", version=f"gas {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in (only,) if only in COMMANDS else COMMANDS:
        importlib.import_module(f"gastown.commands.{name}").add_parser(sub)
    return p


def _command(argv: Sequence[str]) -> str | None:
    """The command `argv` names, when it is the first word (so no top-level option needs the
    other commands' parsers); None sends parsing through every command, for help and errors."""
    return argv[0] if argv and argv[0] in COMMANDS else None


def main(argv: Sequence[str] | None = None) -> int:
    # Compiling 10,000 beads and reading their records makes some 10^5 objects that all live
    # on: at the default threshold (700) the collector walks them over and over, for nothing.
    gc.set_threshold(max(gc.get_threshold()[0], GC_THRESHOLD))
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv == ["--version"]:  # what argparse would print, without every command's imports
        print(f"gas {__version__}")
        return 0
    command = _command(argv)
    if command == "build":  # the files of its imports read ahead, before they start
        readahead.start()
    try:
        return _run(command, argv)
    finally:
        readahead.stop()


def _run(command: str | None, argv: list[str]) -> int:
    args = parser(command).parse_args(argv)
    try:
        return int(args.run(args))
    except GasError as exc:
        print(exc.format(), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("gas: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `gas status | head`: the reader has gone; nothing to report
        _drop_stdout()
        return EXIT_FAILED
    except Exception:
        import traceback  # only for a crash

        path = _crash_log(traceback.format_exc())
        print(f"gas: internal error; details in {path}", file=sys.stderr)
        return EXIT_FAILED


def entry(after: Callable[[], object] | None = None) -> None:
    """`gas` in this process (gastown.server.entry decides): main(), then out as the
    interpreter would leave (finish()) but without freeing each of a build's objects one by
    one, which costs tens of milliseconds at every exit and saves nothing. `after` is called
    last (a build server started for the next commands)."""
    code = finish(main())
    if after is not None:
        after()
    os._exit(code)


def finish(code: int) -> int:
    """What the interpreter does as it leaves: threads joined, exit handlers run, output
    flushed; the exit code (failed when the output could not be written)."""
    import atexit
    import threading

    for thread in threading.enumerate():
        if not thread.daemon and thread is not threading.current_thread():
            thread.join()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a reader gone, or a stream closed: nothing to lose
            code = code or EXIT_FAILED
    return code


def exit_code(value: object) -> int:
    """The exit code the interpreter gives for SystemExit(value), saying a message as it
    does."""
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    print(value, file=sys.stderr)
    return 1


def _drop_stdout() -> None:
    """Output from now on (the interpreter flushes stdout as it exits) goes nowhere, rather
    than raising again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _crash_log(trace: str) -> Path:
    logs = Path.cwd() / ".gastown" / "logs"
    try:
        logs.mkdir(parents=True, exist_ok=True)
    except OSError:
        logs = Path("/tmp")
    path = logs / f"crash-{time.strftime('%Y%m%d-%H%M%S')}.log"
    path.write_text(f"gas {__version__}\npython {sys.version.split()[0]}\n"
                    f"argv {sys.argv}\n\n{trace}")
    return path


if __name__ == "__main__":
    entry()
