"""The `gas` program, and its build server: with GAS_SERVER=1, a gas process that has imported
what the commands need forks a child to run each command, in the caller's directory,
environment and terminal, and the caller (this module's client, which imports next to nothing)
relays signals to it and exits with its exit code.

A `gas build` spends 70-110 ms before its first agent starts on the interpreter's start and on
imports, more when the page cache has given up the interpreter's and the modules' files (this
project's machine, a VM, does within a minute); a forked child has them all in memory (README,
Performance). The server is started by the first command that finds none (after that command,
which runs in its own process), serves one installation (interpreter, gastown's files, the
installed packages: any change gets a new server) and user, and exits after GAS_SERVER_IDLE
seconds (default 900) without a command. Without GAS_SERVER=1, or where a server cannot be
reached, every command runs in its own process as always.
"""
from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator, Sequence

try:  # the C module: socket.py on top of it costs every command 3 ms (enums) for nothing here
    import _socket as sockets
except ImportError:  # pragma: no cover - not CPython
    import socket as sockets  # type: ignore[no-redef]

from gastown.digests import sha1

TYPE_CHECKING = False  # typing's own costs the caller 2-3 ms of imports
if TYPE_CHECKING:
    import socket

ENABLE = "GAS_SERVER"
IDLE = "GAS_SERVER_IDLE"
IDLE_DEFAULT = 900.0
MAGIC = b"gas-server-1"
# Relayed from the caller to the command: Ctrl-C (the terminal signals the caller's process
# group, not the server's child), kill, a closed terminal, a resized one (the live view).
RELAYED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGWINCH)
# Variables read as the interpreter starts (locale, stdio encoding, hashing): a server started
# under other values would run the command as an interpreter started under them would not.
STARTUP_VARIABLES = ("LANG", "LC_ALL", "LC_CTYPE", "PYTHONIOENCODING", "PYTHONUTF8",
                     "PYTHONHASHSEED", "PYTHONPATH", "PYTHONSAFEPATH", "PYTHONWARNINGS")


def entry() -> None:
    """The `gas` program."""
    if problem := _setting_problem():
        from gastown.errors import EXIT_BAD_INPUT, GasError

        sys.stderr.write(GasError(problem).format() + "\n")
        sys.stderr.flush()
        os._exit(EXIT_BAD_INPUT)
    wanted = os.environ.get(ENABLE) == "1"
    if wanted:
        code = ask(sys.argv[1:])
        if code is not None:
            sys.stderr.flush()
            os._exit(code)
    from gastown.main import entry as run_here

    run_here(after=start_server if wanted else None)


def _setting_problem() -> str | None:
    """What is wrong with GAS_SERVER or GAS_SERVER_IDLE, if anything."""
    value = os.environ.get(ENABLE, "")
    if value not in ("", "0", "1"):
        return f"{ENABLE}={value}: 1 runs commands through the build server; 0 or unset does not"
    idle = os.environ.get(IDLE)
    if value == "1" and idle is not None and _seconds(idle) is None:
        return f"{IDLE}={idle}: not a number of seconds above 0"
    return None


def _seconds(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if 0 < value < float("inf") else None


# -- the caller -------------------------------------------------------------------------------

def address() -> str:
    """The server's socket for this installation and user (a directory only the user can
    enter holds it)."""
    return os.path.join(_home(), _fingerprint() + ".sock")


def _home() -> str:
    base = os.environ.get("XDG_RUNTIME_DIR") or os.environ.get("TMPDIR") or "/tmp"
    return os.path.join(base, f"gastown-server-{os.getuid()}")


def _fingerprint() -> str:
    """What the server's imports depend on: the interpreter, its startup variables, every
    file of gastown (size and time), the directories packages are installed in (an install
    or an upgrade changes them)."""
    digest = sha1(MAGIC)
    for part in (sys.executable, sys.version, *(f"{name}={os.environ.get(name)}"
                                                for name in STARTUP_VARIABLES)):
        digest.update(part.encode(errors="surrogatepass") + b"\0")
    # sys.path[0] is the caller's own (the script's directory, or the current one for
    # `python -m`); the server has none (-P)
    for path in (*sys.path[0 if sys.flags.safe_path else 1:], *_package_files()):
        try:
            found = os.stat(path)
        except OSError:
            continue
        digest.update(f"{path}\0{found.st_size}\0{found.st_mtime_ns}\0".encode(
            errors="surrogatepass"))
    return digest.hexdigest()[:20]


def _package_files() -> Iterator[str]:
    stack = [os.path.dirname(os.path.abspath(__file__))]
    while stack:
        with os.scandir(stack.pop()) as entries:
            for item in entries:
                if item.is_dir(follow_symlinks=False) and item.name != "__pycache__":
                    stack.append(item.path)
                elif item.name.endswith(".py"):
                    yield item.path


def ask(argv: Sequence[str]) -> int | None:
    """Run the command through the server: its exit code; None when there is no server to
    run it (nothing was run). A signal that comes before the command has started waits for
    it, or is delivered here again when there is no server."""
    if not _private(_home()):  # the caller's environment (API keys) goes to no one else
        return None
    pending: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, _: pending.append(signum))
                for sig in RELAYED}
    conn = sockets.socket(sockets.AF_UNIX, sockets.SOCK_STREAM)
    try:
        here = os.getcwd()
        _connect(conn, address(), here)
        _send(conn, argv, here)
        pid = _read_int(conn)
    except OSError:
        pid = None
    if pid is None:  # no server, or it refused or ended before forking: run here
        conn.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for signum in pending:
            os.kill(os.getpid(), signum)
        return None
    return _relay(conn, pid, pending)


def _connect(conn: sockets.socket, path: str, here: str) -> None:
    """Connected by the socket's name in its directory (then back `here`): a socket's path
    may have no more than 107 bytes, and a temporary directory's can be longer."""
    os.chdir(os.path.dirname(path))
    try:
        conn.connect(os.path.basename(path))
    finally:
        os.chdir(here)


def _send(conn: sockets.socket, argv: Sequence[str], cwd: str) -> None:
    mask = os.umask(0o22)
    os.umask(mask)
    fields = [MAGIC, os.fsencode(cwd), str(mask).encode(), str(len(argv)).encode(),
              *map(os.fsencode, argv), *(os.fsencode(k) + b"=" + os.fsencode(v)
                                         for k, v in os.environ.items())]
    body = b"\0".join(fields)
    fds = b"".join(fd.to_bytes(4, sys.byteorder, signed=True) for fd in (0, 1, 2))
    conn.sendmsg([len(body).to_bytes(8, "big")], [(sockets.SOL_SOCKET, sockets.SCM_RIGHTS, fds)])
    conn.sendall(body)


def _relay(conn: sockets.socket, pid: int, pending: list[int]) -> int:
    """Pass the caller's signals on to the command until it sends its exit code."""
    def forward(signum: int, frame: object = None) -> None:
        try:  # noqa: SIM105 - contextlib is one more import for every command
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    for sig in RELAYED:
        signal.signal(sig, forward)
    for signum in pending:
        forward(signum)
    try:
        code = _read_int(conn)  # a signal's handler runs, and the read goes on (PEP 475)
    except OSError:
        code = None
    if code is None:
        sys.stderr.write("gas: the build server's process for this command ended without an "
                         "exit code (killed?)\n")
        return 1
    return code


def _read_int(conn: sockets.socket) -> int | None:
    data = b""
    while len(data) < 8:
        chunk = conn.recv(8 - len(data))
        if not chunk:
            return None
        data += chunk
    return int.from_bytes(data, "big", signed=True)


def start_server() -> None:
    """A server for the next commands, started in a session of its own; it imports what they
    need once this process has gone, and leaves if another one is there already."""
    null = os.open(os.devnull, os.O_RDWR)
    try:
        os.posix_spawn(sys.executable, [sys.executable, "-P", "-m", "gastown.server", address()],
                       dict(os.environ), setsid=True,
                       file_actions=[(os.POSIX_SPAWN_DUP2, null, fd) for fd in (0, 1, 2)])
    except OSError:
        pass  # commands go on running in their own processes
    finally:
        os.close(null)


def _private(home: str) -> bool:
    """Whether `home` is a directory of this user's that no one else may enter."""
    try:
        found = os.stat(home)
    except OSError:
        return False
    return found.st_uid == os.getuid() and not found.st_mode & 0o077


# -- the server -------------------------------------------------------------------------------

def serve(path: str) -> None:
    """Listen at `path` until GAS_SERVER_IDLE seconds pass without a command; run each command
    in a child of its own. Leaves at once where another server holds the place."""
    import fcntl
    import gc
    import threading

    home = os.path.dirname(path)
    os.makedirs(home, mode=0o700, exist_ok=True)
    if not _private(home):
        return
    lock = os.open(path + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return  # another server serves this installation
    os.ftruncate(lock, 0)
    os.write(lock, f"{os.getpid()}\n".encode())
    _preload()
    if threading.active_count() != 1:  # a fork keeps only the forking thread: unsafe
        return
    listener = _listen(path, _idle())
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps the children
        gc.collect()
        gc.freeze()  # the children's collections leave the imported objects' pages shared
        while True:
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                return
            if os.fork() == 0:
                listener.close()
                os.close(lock)  # the server's, not the command's
                _child(conn)  # never returns
            conn.close()
    finally:
        if os.path.lexists(path):
            os.unlink(path)
        listener.close()


def _idle() -> float:
    """GAS_SERVER_IDLE (the caller that started the server has checked it)."""
    return _seconds(os.environ.get(IDLE, "")) or IDLE_DEFAULT


def _listen(path: str, idle: float) -> socket.socket:
    import socket

    if os.path.lexists(path):
        os.unlink(path)  # a server that died left it; this one holds the lock
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    os.chdir(os.path.dirname(path))  # bound by name: see _connect()
    listener.bind(os.path.basename(path))
    listener.listen(64)
    listener.settimeout(idle)
    return listener


def _preload() -> None:
    """What commands import, imported once here: every command's module, doit, PyYAML, the
    build's steps (rich for the live view, where it is installed)."""
    import importlib

    from gastown import main

    main.parser()
    for name in ("gastown.executor", "gastown.lifecycle", "gastown.yamlwalk",
                 "gastown.graph.priority", "gastown.witness", "gastown.refinery",
                 "gastown.live"):
        try:
            importlib.import_module(name)
        except ImportError:
            continue


def _child(conn: socket.socket) -> None:
    """Run the command the caller sent on `conn`, as the caller's own process would, and send
    back its exit code."""
    code = 1
    try:
        argv = _take_over(conn)
        code = _run(argv)
    except BaseException:  # nothing may escape into the server's loop in this process
        import traceback

        traceback.print_exc()
    finally:
        try:
            conn.sendall(code.to_bytes(8, "big", signed=True))
        finally:
            os._exit(code)


def _take_over(conn: socket.socket) -> list[str]:
    """The caller's terminal, directory, umask, environment and arguments made this process's;
    its pid sent back (signals come to it), and a watch on the caller (gone: stop as a killed
    gas stops). The command's arguments."""
    import threading

    fds, fields = _request(conn)
    if fields[0] != MAGIC or len(fds) != 3:
        raise ValueError("not a gas request")
    cwd, mask, argc = fields[1], int(fields[2]), int(fields[3])
    argv = [os.fsdecode(arg) for arg in fields[4:4 + argc]]
    env = dict(os.fsdecode(item).partition("=")[::2] for item in fields[4 + argc:])
    os.setpgid(0, 0)
    for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGWINCH):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
    for fd in set(fds) - {0, 1, 2}:
        os.close(fd)
    os.chdir(cwd)
    os.umask(mask)
    os.environ.clear()
    os.environ.update(env)
    sys.argv = ["gas", *argv]
    for stream in (sys.stdout, sys.stderr):  # as an interpreter started on these would set them
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(line_buffering=stream is sys.stderr or stream.isatty())
    conn.sendall(os.getpid().to_bytes(8, "big", signed=True))
    threading.Thread(target=_watch, args=(conn,), daemon=True, name="caller").start()
    return argv


def _run(argv: list[str]) -> int:
    from gastown import main, readahead

    readahead.disable()  # the modules are in memory
    try:
        code = main.main(argv)
    except SystemExit as stop:  # argparse's --help and usage errors
        code = main.exit_code(stop.code)
    return main.finish(code)


def _request(conn: socket.socket) -> tuple[list[int], list[bytes]]:
    import socket

    head, ancillary, _, _ = conn.recvmsg(8, socket.CMSG_SPACE(3 * 4))
    fds: list[int] = []
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            usable = len(data) - len(data) % 4
            fds += [int.from_bytes(data[i:i + 4], sys.byteorder, signed=True)
                    for i in range(0, usable, 4)]
    size = int.from_bytes(head, "big") if len(head) == 8 else 0
    body = bytearray()
    while len(body) < size:
        chunk = conn.recv(min(1 << 20, size - len(body)))
        if not chunk:
            break
        body += chunk
    return fds, bytes(body).split(b"\0")


def _watch(conn: socket.socket) -> None:
    """The caller closes its end once it has the exit code; before that, it has gone (killed
    with SIGKILL, say): this command stops as gas stops on SIGTERM."""
    import contextlib

    with contextlib.suppress(OSError):
        conn.recv(1)
    os.kill(os.getpid(), signal.SIGTERM)


if __name__ == "__main__":
    serve(sys.argv[1])
