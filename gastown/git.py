"""The one way gastown calls git: a clean environment, text in and out, errors with stderr."""
from __future__ import annotations

import hashlib
import os
import re
import subprocess
import zlib
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path

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
    found = dirs(Path(cwd))
    if found is None or not _plain_ref(ref):
        return None
    gitdir, common = found
    if (common / "reftable").exists():
        return None
    for _ in range(2):  # HEAD, then the branch it names
        try:
            text = ((gitdir if ref == "HEAD" else common) / ref).read_text("ascii").strip()
        except (OSError, UnicodeDecodeError):
            return None
        if ref != "HEAD" or not text.startswith("ref: "):
            break
        ref = text.removeprefix("ref: ")
        if not _plain_ref(ref):
            return None
    return text if len(text) in (40, 64) and all(c in _HEX for c in text) else None


def _plain_ref(ref: str) -> bool:
    """A name whose file path is the name itself (nothing `..`, doubled or special in it)."""
    return bool(_LOOSE_REF.fullmatch(ref)) and not any(
        part in ref for part in ("..", "//", "/.", ".lock")) and not ref.endswith(("/", "."))


def dirs(cwd: Path) -> tuple[Path, Path] | None:
    """(git dir, common git dir) of the worktree whose top is `cwd`, read from its `.git`
    (no process); None when `cwd` has no `.git`."""
    dotgit = cwd / ".git"
    try:
        if dotgit.is_dir():
            return dotgit, dotgit
        text = dotgit.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None
    if not text.startswith("gitdir: "):
        return None
    gitdir = cwd / text.removeprefix("gitdir: ")
    try:
        return gitdir, gitdir / (gitdir / "commondir").read_text().strip()
    except FileNotFoundError:
        return gitdir, gitdir
    except (OSError, UnicodeDecodeError):
        return None


def object_id(kind: str, body: bytes, hex_size: int = 40) -> str:
    """The id git gives an object (sha1, or sha256 in a repository of 64-hex ids)."""
    digest = hashlib.sha1 if hex_size == 40 else hashlib.sha256
    return digest(_header(kind, body) + body).hexdigest()


def _header(kind: str, body: bytes) -> bytes:
    return b"%s %d\0" % (kind.encode(), len(body))


def store(objects: Sequence[tuple[str, bytes]], *, into: Path, hex_size: int = 40) -> list[str]:
    """Write (kind, body) objects as loose objects into the objects directory `into` the way
    git does (header and body deflated, written beside the final name, made read-only and
    renamed into place; one that exists already is kept), without a git process. Their ids."""
    ids = []
    for kind, body in objects:
        oid = object_id(kind, body, hex_size)
        ids.append(oid)
        final = into / oid[:2] / oid[2:]
        if final.exists():
            continue
        final.parent.mkdir(exist_ok=True)
        temp = final.parent / f"tmp_obj_gas_{os.urandom(6).hex()}"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
        with os.fdopen(fd, "wb") as out:
            out.write(zlib.compress(_header(kind, body) + body, 1))
        os.replace(temp, final)
    return ids


def maintain(cwd: str | Path) -> None:
    """What git would have done after the commits made with NO_AUTO_GC: `gc --auto` (usually
    nothing), in the foreground so that it has ended when gastown exits."""
    run("-c", "gc.autoDetach=false", "gc", "--auto", "--quiet", cwd=cwd, check=False)


def version() -> tuple[int, ...]:
    """The version of the git on PATH (asked once per PATH)."""
    return _version(os.environ.get("PATH", ""))


@cache
def _version(path: str) -> tuple[int, ...]:
    text = subprocess.run(["git", "--version"], capture_output=True, text=True).stdout
    numbers = text.split()[2].split(".")
    return tuple(int(n) for n in numbers[:3] if n.isdigit())
