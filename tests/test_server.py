"""The build server (GAS_SERVER=1): a command runs in a child the server forks, in the caller's
directory, environment and terminal, and ends as it would in its own process: same output,
same exit code, Ctrl-C and a killed caller stop it the same way."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gastown import server
from gastown.ledger import record_path
from tests.commands.test_interrupt import HANG, alive, read_until, wait_for
from tests.conftest import git, make_repo

# Each bead says which process started it (the gas that ran the build) and what it was told.
BEAD_A = """      - {id: a, run: 'echo "$PPID $GAS_TEST_MARK" > a.txt'}\n"""
BEAD_B = """      - {id: b, run: 'echo "$PPID" > b.txt'}\n"""
GASFILE = "version: 1\nbacklogs:\n  work:\n    items:\n" + BEAD_A + BEAD_B
SLOW = "version: 1\nbacklogs:\n  slow:\n    items:\n      - {id: s1, run: '%s hang.py'}\n"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[dict[str, str]]:
    """The environment of a caller using a server of its own (killed at the end)."""
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    env = {**os.environ, server.ENABLE: "1", "XDG_RUNTIME_DIR": str(runtime),
           server.IDLE: "60", "GAS_TEST_MARK": "from-the-caller"}
    yield env
    for pid in servers(runtime):
        os.kill(pid, signal.SIGTERM)


def servers(runtime: Path) -> list[int]:
    """The live processes whose command line names a socket under `runtime`: its servers
    (a command's spawn of one has exec'd by the time the command has ended)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            line = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if entry.name.isdigit() and os.fsencode(runtime) in line and alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def gas(args: list[str], cwd: Path, env: dict[str, str]) -> tuple[int, str, int]:
    """(exit code, output, pid) of `gas ARGS` run as a user runs it."""
    proc = subprocess.Popen([sys.executable, "-m", "gastown", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out, _ = proc.communicate(timeout=120)
    return proc.returncode, out, proc.pid


def socket_of(env: dict[str, str]) -> Path:
    code = "from gastown import server; print(server.address())"
    return Path(subprocess.run([sys.executable, "-c", code], env=env, check=True,
                               capture_output=True, text=True).stdout.strip())


def test_the_first_command_runs_itself_and_starts_a_server_that_runs_the_next(
        tmp_path: Path, served: dict[str, str]) -> None:
    repo = make_repo(tmp_path / "repo", {"Gasfile.yaml": GASFILE.replace(BEAD_B, "")})
    code, out, pid = gas(["build", "--plain"], repo, served)
    assert code == 0, out
    assert merged(repo, "a.txt")[0] == str(pid)  # no server yet: the caller ran it
    wait_for(socket_of(served).exists)

    (repo / "Gasfile.yaml").write_text(GASFILE)  # b is new, a is up to date
    code, out, pid = gas(["build", "--plain"], repo, served)
    assert code == 0, out
    assert "Beads merged: 1" in out  # its output reaches the caller
    assert merged(repo, "b.txt") != [str(pid)], "the build ran in the caller, not in the server"


def test_through_the_server_a_command_has_the_callers_environment_and_exit_code(
        tmp_path: Path, served: dict[str, str]) -> None:
    repo = make_repo(tmp_path / "repo", {"Gasfile.yaml": "version: 1\n"})
    gas(["status"], repo, served)  # starts the server
    wait_for(socket_of(served).exists)
    (repo / "Gasfile.yaml").write_text(GASFILE.replace('"$PPID"', '"$PPID" && exit 3'))
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "beads")

    code, out, pid = gas(["build", "--plain"], repo, served)
    assert code == 1, out  # b failed
    ran_by, mark = merged(repo, "a.txt")
    assert ran_by != str(pid) and mark == "from-the-caller"
    assert gas(["no-such-command"], repo, served)[0] == 2
    code, out, _ = gas(["validate"], tmp_path, served)  # another directory: not a repository
    assert code == 2 and "git repository" in out, out


def slow_build(tmp_path: Path, served: dict[str, str],
               output: int) -> tuple[Path, subprocess.Popen[str], int]:
    """A build through the server whose one bead hangs: (repo, the caller, the agent's pid)
    once the agent runs."""
    repo = make_repo(tmp_path / "repo", {"hang.py": HANG, "Gasfile.yaml": "version: 1\n"})
    gas(["status"], repo, served)
    wait_for(socket_of(served).exists)
    (repo / "Gasfile.yaml").write_text(SLOW % sys.executable)
    pids = tmp_path / "pids"
    proc = subprocess.Popen([sys.executable, "-m", "gastown", "build", "--plain"], cwd=repo,
                            env={**served, "GAS_TEST_PIDS": str(pids)}, stdout=output,
                            stderr=subprocess.STDOUT, text=True)
    wait_for((pids / "s1").exists)
    return repo, proc, int((pids / "s1").read_text())


def test_ctrl_c_at_the_caller_stops_the_build_in_the_server(
        tmp_path: Path, served: dict[str, str]) -> None:
    repo, proc, agent = slow_build(tmp_path, served, subprocess.PIPE)
    proc.send_signal(signal.SIGINT)
    read_until(proc, "INTERRUPT: nothing more dispatched")
    proc.send_signal(signal.SIGINT)
    out = read_until(proc, "Beads")
    assert proc.wait(timeout=60) == 130, out
    assert not alive(agent)
    assert state(repo, "s1") == "interrupted"


def test_a_caller_killed_stops_its_command(tmp_path: Path, served: dict[str, str]) -> None:
    repo, proc, agent = slow_build(tmp_path, served, subprocess.DEVNULL)
    proc.kill()
    proc.wait()
    wait_for(lambda: not alive(agent))
    wait_for(lambda: state(repo, "s1") == "interrupted")


def test_the_server_leaves_when_idle_and_commands_run_in_their_own_process_again(
        tmp_path: Path, served: dict[str, str]) -> None:
    env = {**served, server.IDLE: "0.2"}
    repo = make_repo(tmp_path / "repo", {"Gasfile.yaml": GASFILE})
    gas(["status"], repo, env)
    sock = socket_of(env)
    wait_for(lambda: (sock.with_name(sock.name + ".lock")).exists())
    wait_for(lambda: not sock.exists() and not alive(int(
        sock.with_name(sock.name + ".lock").read_text() or "0")))
    code, out, pid = gas(["build", "--plain"], repo, {**env, server.IDLE: "60"})
    assert code == 0, out
    assert merged(repo, "a.txt")[0] == str(pid)


def test_a_socket_directory_others_may_enter_is_not_used(
        tmp_path: Path, served: dict[str, str]) -> None:
    repo = make_repo(tmp_path / "repo", {"Gasfile.yaml": GASFILE})
    sock = socket_of(served)
    sock.parent.mkdir(mode=0o755)
    os.chmod(sock.parent, 0o755)  # whatever the umask left
    gas(["status"], repo, served)  # would start a server: it refuses such a directory
    code, out, pid = gas(["build", "--plain"], repo, served)
    assert code == 0, out
    assert merged(repo, "a.txt")[0] == str(pid)
    assert not sock.exists()


@pytest.mark.parametrize(("variable", "value", "says"), [
    ("GAS_SERVER", "yes",
     "GAS_SERVER=yes: 1 runs commands through the build server; 0 or unset does not"),
    ("GAS_SERVER_IDLE", "soon", "GAS_SERVER_IDLE=soon: not a number of seconds above 0"),
    ("GAS_SERVER_IDLE", "-5", "GAS_SERVER_IDLE=-5: not a number of seconds above 0"),
])
def test_a_bad_setting_is_bad_input(tmp_path: Path, served: dict[str, str], variable: str,
                                    value: str, says: str) -> None:
    repo = make_repo(tmp_path / "repo", {"Gasfile.yaml": GASFILE})
    code, out, _ = gas(["build", "--plain"], repo, {**served, variable: value})
    assert code == 2, out
    assert out == f"gas: error: {says}\n"
    assert not (repo / ".gastown").exists()  # nothing run, nothing written
    assert not socket_of(served).exists()


def test_another_interpreter_setting_gets_another_server(served: dict[str, str]) -> None:
    assert socket_of(served) == socket_of(dict(served))
    assert socket_of({**served, "PYTHONHASHSEED": "7"}) != socket_of(served)


def merged(repo: Path, name: str) -> list[str]:
    """The words of a file a bead wrote, as merged into the integration branch."""
    return git(repo, "show", f"staging:{name}").split()


def state(repo: Path, bead: str) -> str | None:
    """The bead's state in the ledger (None before it has a record)."""
    try:
        return json.loads(git(repo, "show", f"gt-ledger:{record_path(bead)}"))["state"]
    except subprocess.CalledProcessError:
        return None
