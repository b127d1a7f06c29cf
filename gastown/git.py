"""The one way gastown calls git: a clean environment, text in and out, errors with stderr."""
from __future__ import annotations

import contextlib
import locale
import os
import re
import subprocess
import threading
import zlib
from collections.abc import Callable, Mapping, Sequence
from functools import cache, lru_cache
from pathlib import Path
from typing import Any, Generic, NamedTuple, TypeVar

from gastown.digests import sha1, sha256

# Inherited GIT_* variables (from a hook, say) would point our git calls at another repo.
_ALLOWED_GIT_ENV = frozenset(
    {
        "GIT_EXEC_PATH",
        "GIT_SSH",
        "GIT_SSH_COMMAND",
        "GIT_SSL_CAINFO",
        "GIT_SSL_NO_VERIFY",
        "GIT_CONFIG_NOSYSTEM",
        "GIT_CONFIG_GLOBAL",
        "GIT_CONFIG_SYSTEM",
        "GIT_AUTHOR_NAME",
        "GIT_AUTHOR_EMAIL",
        "GIT_AUTHOR_DATE",
        "GIT_COMMITTER_NAME",
        "GIT_COMMITTER_EMAIL",
        "GIT_COMMITTER_DATE",
        "GIT_TEMPLATE_DIR",
        "GIT_TRACE",
    }
)


_LOOSE_REF = re.compile(r"HEAD|refs/heads/[A-Za-z0-9_][A-Za-z0-9_./-]*")
_HEX = frozenset("0123456789abcdef")

# A build makes many commits in a row; git's automatic gc check after each one costs a third of
# the commit, and a gc it starts would run in the middle of the build. The build runs it once,
# at its end (maintain()).
NO_AUTO_GC = ("-c", "gc.auto=0", "-c", "maintenance.auto=false")


class GitError(RuntimeError):
    def __init__(self, args: Sequence[str], returncode: int, stderr: str) -> None:
        self.args_ = list(args)
        self.returncode = returncode
        self.stderr = stderr.strip()
        super().__init__(f"git {' '.join(args)} failed ({returncode}): {self.stderr}")


def clean_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """A copy of the environment with GIT_* variables removed except an allowlist."""
    env = dict(os.environ if base is None else base)
    for key in [k for k in env if k.startswith("GIT_") and k not in _ALLOWED_GIT_ENV]:
        del env[key]
    env["GIT_TERMINAL_PROMPT"] = "0"
    return env



def run(
    *args: str,
    cwd: str | Path,
    input: str | bytes | None = None,
    env: Mapping[str, str] | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run git; return the completed process (stdout/stderr as text)."""
    data = input.decode() if isinstance(input, bytes) else input
    proc = subprocess.run(
        ["git", *args],
        cwd=cwd,
        input=data,
        capture_output=True,
        text=True,
        env={**clean_env(), **env} if env else clean_env(),
        stdin=None if data is not None else subprocess.DEVNULL,
    )
    if check and proc.returncode != 0:
        raise GitError(args, proc.returncode, proc.stderr or proc.stdout)
    return proc


def out(*args: str, cwd: str | Path, input: str | None = None,
        env: Mapping[str, str] | None = None) -> str:
    """Run git and return its stdout without the trailing newline."""
    return run(*args, cwd=cwd, input=input, env=env).stdout.rstrip("\n")


def ok(*args: str, cwd: str | Path) -> bool:
    """True when git exits 0."""
    return run(*args, cwd=cwd, check=False).returncode == 0


def rev(ref: str, *, cwd: str | Path) -> str | None:
    """The commit a ref names, or None when it does not exist."""
    found = read_ref(ref, cwd)
    if found is not None:
        return found
    proc = run("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", cwd=cwd, check=False)
    return proc.stdout.strip() or None


def read_ref(ref: str, cwd: str | Path) -> str | None:
    """HEAD or a branch (`refs/heads/...`) read from its loose ref file, as git reads it, with
    no process; None when git must be asked: another kind of ref, a packed or missing one, a
    reftable repository, a directory that is not a worktree's top."""
    found = _plain_ref(ref) and _dirs(os.fspath(cwd))
    return ref_in(ref, *found) if found else None


def ref_in(ref: str, gitdir: str, common: str) -> str | None:
    """read_ref() in the worktree whose git dir and common git dir are these."""
    if not _plain_ref(ref) or os.path.exists(os.path.join(common, "reftable")):
        return None
    for _ in range(2):  # HEAD, then the branch it names
        try:
            text = read_text(os.path.join(gitdir if ref == "HEAD" else common, ref),
                             "ascii").strip()
        except (OSError, UnicodeDecodeError):
            return None
        if ref != "HEAD" or not text.startswith("ref: "):
            break
        ref = text.removeprefix("ref: ")
        if not _plain_ref(ref):
            return None
    return text if len(text) in (40, 64) and _HEX.issuperset(text) else None


@lru_cache(maxsize=4096)
def _plain_ref(ref: str) -> bool:
    """A name whose file path is the name itself (nothing `..`, doubled or special in it)."""
    return bool(_LOOSE_REF.fullmatch(ref)) and not any(
        part in ref for part in ("..", "//", "/.", ".lock")) and not ref.endswith(("/", "."))


def write_loose_ref(common: str | Path, ref: str, new: str, old: str | None = None, *,
                    log: str | None = None) -> bool:
    """The branch `ref` set to `new` as git sets a loose ref: its lock file made exclusively,
    the value checked under it when `old` is given, renamed into place. With `log` (the
    reflog line's "<ident> <time> <zone>\t<message>"), a reflog it has is appended to first,
    as git appends. False, with nothing changed, where git must do it: a name that is not a
    plain branch, reftable, a reflog and no `log` (or the other way round), the lock taken,
    another value than `old` (or a packed one)."""
    if log is not None and _head_names(common, ref):
        return False  # git would log the move in HEAD's reflog too
    held = _lock_loose(common, ref, log is not None)
    if held is None:
        return False
    target, lock, fd = held
    try:
        try:
            was = read_text(target, "ascii").strip() if old is not None or log else None
            if old is not None and was != old:
                return False
            write_all(fd, f"{new}\n".encode("ascii"))
        finally:
            os.close(fd)
        if log is not None:
            _append(os.path.join(common, "logs", ref), f"{was} {new} {log}\n")
        os.replace(lock, target)
        return True
    except (OSError, UnicodeDecodeError):
        return False
    finally:
        if os.path.lexists(lock):
            os.unlink(lock)


def locked_for_deletion(common: str | Path, refs: Sequence[str]) -> Callable[[bool], None] | None:
    """These branches locked to be deleted as git deletes loose refs without a reflog (each
    one's lock file made exclusively): the function that ends it, deleting them (True) or
    not (False), the locks going either way; None, with nothing changed, where git must
    delete them (one is packed too, has a reflog, or is not a plain loose branch)."""
    held: list[tuple[str, str]] = []
    packed = _packed_names(common)
    for ref in refs:
        found = _lock_loose(common, ref, False) if packed is not None and \
            ref.encode() not in packed else None
        if found is None:
            for _, lock in held:
                os.unlink(lock)
            return None
        os.close(found[2])
        held.append(found[:2])

    def end(delete: bool) -> None:
        for target, lock in held:
            if delete:
                with contextlib.suppress(OSError):
                    os.unlink(target)
            with contextlib.suppress(OSError):
                os.unlink(lock)
            if delete:
                _prune_empty_parents(common, os.path.dirname(target))

    return end


def _lock_loose(common: str | Path, ref: str, logged: bool) -> tuple[str, str, int] | None:
    """(ref file, lock file, the lock's descriptor) for a plain loose branch whose reflog
    exists exactly when `logged`; None where git must write it."""
    target = os.path.join(common, ref)
    if not ref.startswith("refs/heads/") or not _plain_ref(ref) or \
            os.path.exists(os.path.join(common, "reftable")) or \
            os.path.isfile(os.path.join(common, "logs", ref)) != logged:
        return None
    lock = target + ".lock"
    try:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        return target, lock, os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError:
        return None


def _head_names(common: str | Path, ref: str) -> bool:
    """Whether the main worktree's HEAD is on `ref` (or cannot be read)."""
    try:
        return read_text(os.path.join(common, "HEAD")).strip() == f"ref: {ref}"
    except (OSError, UnicodeDecodeError):
        return True


def _append(path: str, line: str) -> None:
    """One reflog line, in one write (git opens reflogs to append, as here)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        write_all(fd, line.encode())
    finally:
        os.close(fd)


PACKED_LIMIT = 1 << 22  # bytes of packed-refs searched for a name; git reads a bigger one


def _packed_names(common: str | Path) -> bytes | None:
    """The packed-refs file's bytes (b"" without one; None when too big to search): a name
    found in it may be packed too."""
    path = os.path.join(common, "packed-refs")
    try:
        if os.stat(path).st_size > PACKED_LIMIT:
            return None
        return read_bytes(path)
    except FileNotFoundError:
        return b""
    except OSError:
        return None


def _prune_empty_parents(common: str | Path, directory: str) -> None:
    """Empty directories left under refs/heads/ by a deletion go, as git removes them."""
    stop = os.path.join(common, "refs", "heads")
    while directory.startswith(stop + os.sep):
        try:
            os.rmdir(directory)
        except OSError:
            return
        directory = os.path.dirname(directory)


def write_atomically(path: Path, text: str) -> None:
    """`path` holds `text` (UTF-8): readers see the old file or the new one, never half of
    one. Its directory is made if missing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _new_file(path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _new_file(directory: Path) -> tuple[int, str]:
    """A new empty file in `directory`, made exclusively (as tempfile.mkstemp does; tempfile
    would cost every build 2-7 ms of imports: shutil, random and their compression libraries):
    (its open descriptor, its path)."""
    while True:
        tmp = os.path.join(directory, f".tmp-{os.urandom(6).hex()}")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), tmp
        except FileExistsError:
            continue


def hooks_absent(root: str | Path, names: tuple[str, ...]) -> bool:
    """None of these hooks exists for the repository at `root` (in its core.hooksPath when
    that is an absolute path, else in its hooks dir); False when that cannot be told."""
    configured = [value for key, value in settings(root).entries if key == "core.hookspath"]
    found = _dirs(os.fspath(root))
    if found is None or (configured and (
            configured[-1] is None or not os.path.isabs(os.path.expanduser(configured[-1])))):
        return False
    hooks = os.path.expanduser(configured[-1]) if configured and configured[-1] else \
        os.path.join(found[1], "hooks")
    return not any(os.path.lexists(os.path.join(hooks, name)) for name in names)


def dirs(cwd: Path) -> tuple[Path, Path] | None:
    """(git dir, common git dir) of the worktree whose top is `cwd`, read from its `.git`
    (no process); None when `cwd` has no `.git`."""
    found = _dirs(os.fspath(cwd))
    return (Path(found[0]), Path(found[1])) if found else None


def _dirs(cwd: str) -> tuple[str, str] | None:
    dotgit = os.path.join(cwd, ".git")
    if os.path.isdir(dotgit):
        return dotgit, dotgit
    try:
        text = read_text(dotgit).strip()
    except (OSError, UnicodeDecodeError):
        return None
    if not text.startswith("gitdir: "):
        return None
    gitdir = os.path.join(cwd, text.removeprefix("gitdir: "))
    common = common_of(gitdir)
    return (gitdir, common) if common is not None else None


def common_of(gitdir: str) -> str | None:
    """The common git dir of the git dir `gitdir` (its `commondir` file says where, if it
    has one); None when that cannot be read."""
    try:
        return os.path.join(gitdir, read_text(os.path.join(gitdir, "commondir")).strip())
    except FileNotFoundError:
        return gitdir
    except (OSError, UnicodeDecodeError):
        return None


def read_text(path: str | Path, encoding: str | None = None) -> str:
    """What `Path(path).read_text(encoding)` returns, with os calls and no file objects: for
    the small files git keeps (refs, `.git` links, a worktree's admin files)."""
    text = read_bytes(path).decode(encoding or locale.getpreferredencoding(False))
    return text.replace("\r\n", "\n").replace("\r", "\n") if "\r" in text else text


def read_bytes(path: str | Path, limit: int | None = None) -> bytes:
    """The file's bytes, read with os calls and no file object; b"" when it is larger than
    `limit`."""
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        chunks = [os.read(fd, size + 1)] if limit is None or size <= limit else [b""]
        while chunks[-1]:
            chunks.append(os.read(fd, 65536))
    finally:
        os.close(fd)
    return b"".join(chunks)


def object_id(kind: str, body: bytes, hex_size: int = 40) -> str:
    """The id git gives an object (sha1, or sha256 in a repository of 64-hex ids)."""
    return _digest(hex_size)(_header(kind, body) + body).hexdigest()


def _digest(hex_size: int) -> Callable[[bytes], Any]:
    return sha1 if hex_size == 40 else sha256


def _header(kind: str, body: bytes) -> bytes:
    return b"%s %d\0" % (kind.encode(), len(body))


def store(objects: Sequence[tuple[str, bytes]], *, into: str | Path,
          hex_size: int = 40) -> list[str]:
    """Write (kind, body) objects as loose objects into the objects directory `into` the way
    git does (header and body deflated, written beside the final name, made read-only and
    renamed into place; one that exists already is kept), without a git process. Their ids."""
    ids = []
    for kind, body in objects:
        data = _header(kind, body) + body
        oid = _digest(hex_size)(data).hexdigest()
        ids.append(oid)
        _store_one(os.path.join(into, oid[:2]), oid[2:], data)
    return ids


def _store_one(fanout: str, name: str, data: bytes) -> None:
    final = os.path.join(fanout, name)
    if os.path.exists(final):
        return
    temp = os.path.join(fanout, f"tmp_obj_gas_{os.urandom(6).hex()}")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    try:
        fd = os.open(temp, flags, 0o444)
    except (FileNotFoundError, NotADirectoryError):
        _mkdir(fanout)  # only when missing: it mostly is there, and a mkdir is saved
        fd = os.open(temp, flags, 0o444)
    try:
        write_all(fd, zlib.compress(data, 1))
    finally:
        os.close(fd)
    os.replace(temp, final)


def _mkdir(path: str) -> None:
    """What `Path(path).mkdir(exist_ok=True)` does."""
    try:
        os.mkdir(path)
    except FileExistsError:
        if not os.path.isdir(path):
            raise


def write_all(fd: int, data: bytes) -> None:
    """All of `data` written to the file `fd`."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


T = TypeVar("T")


class Soon(Generic[T]):
    """`fn(*args)` called in a thread of its own from now on, so that what the caller does
    meanwhile overlaps it (a thread waiting for a git process leaves the interpreter to the
    others); get() waits for its result, or raises what it raised."""

    def __init__(self, fn: Callable[..., T], *args: Any) -> None:
        self._outcome: tuple[bool, Any] = (False, RuntimeError("not run"))
        self._thread = threading.Thread(target=self._call, args=(fn, args), daemon=True,
                                        name=f"soon-{getattr(fn, '__name__', 'call')}")
        self._thread.start()

    def _call(self, fn: Callable[..., T], args: tuple[Any, ...]) -> None:
        try:
            self._outcome = (True, fn(*args))
        except BaseException as exc:  # raised again by get(), in the caller's thread
            self._outcome = (False, exc)

    def get(self) -> T:
        self._thread.join()
        done, value = self._outcome
        if not done:
            raise value
        return value  # type: ignore[no-any-return]


# What a build reads of the repository's configuration, in one process: the committer
# identity (worktrees.identity_env), what decides `gc --auto` (maintain()) and where hooks are
# (hooks_absent).
SETTINGS = r"^(user\.(name|email)|gc\.(auto|autopacklimit)|core\.hookspath)$"


class Settings(NamedTuple):
    returncode: int  # of `git config`: 1 when none is set
    entries: tuple[tuple[str, str | None], ...]  # (key, value) in git's order; None: no value


_settings: dict[str, Soon[Settings]] = {}  # by the repository's real path
_settings_lock = threading.Lock()


def read_settings(cwd: str | Path) -> None:
    """Have git read the SETTINGS of the repository at `cwd` now, in the background:
    settings() takes this reading."""
    key = os.path.realpath(cwd)
    with _settings_lock:
        _settings[key] = Soon(_read_settings, key)


def settings(cwd: str | Path) -> Settings:
    """The SETTINGS the last read_settings() of `cwd` read (read now if none did)."""
    key = os.path.realpath(cwd)
    with _settings_lock:
        if key not in _settings:
            _settings[key] = Soon(_read_settings, key)
        soon = _settings[key]
    return soon.get()


def _read_settings(cwd: str) -> Settings:
    proc = run("config", "-z", "--get-regexp", SETTINGS, cwd=cwd, check=False)
    entries = []
    for item in proc.stdout.split("\0")[:-1]:  # key, newline, value, NUL (key, NUL: no value)
        key, newline, value = item.partition("\n")
        entries.append((key, value if newline else None))
    return Settings(proc.returncode, tuple(entries))


def maintain(cwd: str | Path) -> None:
    """What git would have done after the commits made with NO_AUTO_GC: `gc --auto`, in the
    foreground so that it has ended when gastown exits; not even started when it would
    certainly find nothing to do (as it mostly does)."""
    if _gc_may_work(Path(cwd)):
        run("-c", "gc.autoDetach=false", "gc", "--auto", "--quiet", cwd=cwd, check=False)


def _gc_may_work(cwd: Path) -> bool:
    """False only when git's own test (need_to_gc in builtin/gc.c) certainly finds nothing:
    gc.auto is 0 or less, or there are at most gc.autoPackLimit packs (those with a .keep
    aside; a limit of 0 or less counts none) and at most gc.auto/256, rounded up, loose
    objects in objects/17. Counted generously; any doubt leaves the decision to git."""
    found, read = dirs(cwd), settings(cwd)
    values = dict(read.entries)  # the last value of a key is the one git takes
    auto = _config_int(values.get("gc.auto", "6700"))
    limit = _config_int(values.get("gc.autopacklimit", "50"))
    if found is None or read.returncode not in (0, 1) or auto is None or limit is None:
        return True
    if auto <= 0:
        return False
    objects = found[1] / "objects"
    packs, loose = _listing(objects / "pack"), _listing(objects / "17")
    if packs is None or loose is None:
        return True
    return (limit > 0 and _packs(packs) > limit) or _loose(loose) > -(-auto // 256)


_CONFIG_INT = re.compile(r"([+-]?(?:0|[1-9][0-9]*))([kKmMgG]?)")
_UNIT = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def _config_int(text: str | None) -> int | None:
    """An int-valued setting as git reads it (decimal, k/m/g for 1024 and its powers, within
    an int's range); None for any other way of writing one (git is asked then)."""
    found = _CONFIG_INT.fullmatch(text) if text is not None else None
    if found is None:
        return None
    value = int(found[1]) * _UNIT[found[2].lower()]
    return value if -2**31 < value < 2**31 else None


def _listing(path: Path) -> list[str] | None:
    """The names in the directory `path` ([] when there is none); None when unreadable."""
    try:
        return os.listdir(path)
    except FileNotFoundError:
        return []
    except OSError:
        return None


def _packs(names: list[str]) -> int:
    """The packs git counts against gc.autoPackLimit, or more: every name with a .pack or
    .idx file but those with a .keep file."""
    packs = {name.rpartition(".")[0] for name in names if name.endswith((".pack", ".idx"))}
    return len(packs - {name[:-len(".keep")] for name in names if name.endswith(".keep")})


def _loose(names: list[str]) -> int:
    """The loose objects git counts in one fan-out directory, or more (sha1's and sha256's)."""
    return sum(1 for name in names if len(name) in (38, 62) and _HEX.issuperset(name))


def version() -> tuple[int, ...]:
    """The version of the git on PATH (asked once per PATH)."""
    return _version(os.environ.get("PATH", ""))


@cache
def _version(path: str) -> tuple[int, ...]:
    text = subprocess.run(["git", "--version"], capture_output=True, text=True).stdout
    numbers = text.split()[2].split(".")
    return tuple(int(n) for n in numbers[:3] if n.isdigit())
