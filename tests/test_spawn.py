"""No process outlives the command gastown started: not even one in a session of its own."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from gastown import spawn

# Starts a grandchild in a new session (as Claude Code's Bash tool does), records its pid
# atomically, then exits or hangs.
ESCAPE = '''
import os, subprocess, sys, pathlib
child = subprocess.Popen([sys.executable, "-c", "import time\\nwhile True: time.sleep(1)"],
                         start_new_session=True)
tmp = pathlib.Path(sys.argv[1] + ".tmp")
tmp.write_text(str(child.pid))
tmp.rename(sys.argv[1])
print("started", flush=True)
if sys.argv[2] == "hang":
    while True:
        pass
'''


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not stat.exists() or stat.read_text().split(") ")[1][0] != "Z"


@pytest.mark.parametrize(("mode", "timeout", "killed"), [("exit", None, None),
                                                         ("hang", 3.0, "timeout")])
def test_escaped_grandchild_is_killed(tmp_path: Path, mode: str, timeout: float | None,
                                      killed: str | None) -> None:
    script = tmp_path / "escape.py"
    script.write_text(ESCAPE)
    pidfile = tmp_path / "grandchild.pid"
    result = spawn.run([sys.executable, str(script), str(pidfile), mode], cwd=tmp_path,
                       env=dict(os.environ), log_file=tmp_path / "log", timeout=timeout)
    assert result.killed == killed
    assert "started" in result.tail
    assert not _alive(int(pidfile.read_text()))


def test_log_shows_command_shortened_and_output(tmp_path: Path) -> None:
    long_arg = "x" * 1000
    result = spawn.run(["echo", "hi", long_arg], cwd=tmp_path, env=dict(os.environ),
                       log_file=tmp_path / "log")
    assert result.ok and result.exit_code == 0
    log = (tmp_path / "log").read_text()
    assert log.startswith("$ echo hi " + "x" * 300 + "…[1000 chars]\n")
    assert log.endswith("[exit 0]\n")


def test_on_line_can_ask_for_the_command_to_stop(tmp_path: Path) -> None:
    seen: list[str] = []

    def watch(line: str) -> str | None:
        seen.append(line)
        return spawn.STOP if line == "enough" else None

    result = spawn.run([sys.executable, "-c", "print('one'); print('enough', flush=True)\n"
                        "while True: pass"], cwd=tmp_path, env=dict(os.environ),
                       log_file=tmp_path / "log", timeout=60, on_line=watch)
    assert result.killed == "requested"
    assert seen == ["one", "enough"]
    assert result.duration < 30


def test_secrets_never_reach_the_log_or_the_tail(tmp_path: Path) -> None:
    env = {**os.environ, "ANTHROPIC_API_KEY": "sk-ant-very-secret-123", "MY_TOKEN": "tok_abcdefgh",
           "SHORT_KEY": "1", "HARMLESS": "sk-ant-very-secret-123-not-a-key-name"}
    result = spawn.run(["sh", "-c", 'echo "key=$ANTHROPIC_API_KEY tok=$MY_TOKEN n=$SHORT_KEY"',
                        "tok_abcdefgh"], cwd=tmp_path, env=env, log_file=tmp_path / "log")
    log = (tmp_path / "log").read_text()
    assert "sk-ant-very-secret-123" not in log + result.tail
    assert "tok_abcdefgh" not in log + result.tail
    assert "key=[redacted] tok=[redacted] n=1" in result.tail


def test_sweeps_asked_together_share_one_reading_and_kill_only_their_own() -> None:
    """Sweeps asked for while another reads /proc wait and are served by one reading: each
    still kills its own marked processes, counts them, and leaves another marker's alone."""
    sleeper = [sys.executable, "-c",
               "print('up', flush=True)\nimport time\nwhile True: time.sleep(1)"]
    markers = [f"share-{n}-{os.getpid()}" for n in range(4)]
    procs = {m: subprocess.Popen(sleeper, env={**os.environ, spawn.MARKER: m},
                                 start_new_session=True, stdout=subprocess.PIPE) for m in markers}
    other = subprocess.Popen(sleeper, env={**os.environ, spawn.MARKER: f"other-{os.getpid()}"},
                             start_new_session=True, stdout=subprocess.PIPE)
    sweeper, counts = spawn._sweeper, {}
    try:
        # each is running its program: the sweep is not the one that waits out its exec
        for proc in [*procs.values(), other]:
            assert proc.stdout is not None and proc.stdout.readline() == b"up\n"
        with sweeper.cond:
            sweeper.busy = True  # as if a reading were under way: every sweep below queues
        threads = [threading.Thread(target=lambda m=m: counts.update({m: spawn.sweep(m)}))
                   for m in markers]
        for thread in threads:
            thread.start()
        with sweeper.cond:
            sweeper.cond.wait_for(lambda: len(sweeper.asked) == len(markers), timeout=30)
            assert len(sweeper.asked) == len(markers)
            sweeper.busy = False  # the reading ends: one waiting thread reads for them all
            sweeper.cond.notify_all()
        for thread in threads:
            thread.join(timeout=30)
        assert counts == {m: 1 for m in markers}
        for proc in procs.values():
            assert proc.wait(timeout=10) == -signal.SIGKILL
        assert other.poll() is None
    finally:
        for proc in [*procs.values(), other]:
            proc.kill()
            proc.wait()


def test_exited_tells_a_running_process_from_an_ended_one_and_reaps_it() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time\nwhile True: time.sleep(1)"])
    try:
        assert spawn._exited(proc, 0.01) is False
        assert proc.returncode is None
        proc.kill()
        assert spawn._exited(proc, 60) is True  # told when it ends, not after the 60 s
        assert proc.returncode == -signal.SIGKILL
    finally:
        proc.kill()
        proc.wait()


SLEEPER = [sys.executable, "-c", "import time\nwhile True: time.sleep(1)"]


def _ticks_past(start: int) -> None:
    """Wait until the clock sweep() compares starttimes with has ticked past `start`."""
    hz = os.sysconf("SC_CLK_TCK")
    while time.clock_gettime_ns(time.CLOCK_BOOTTIME) * hz // 1_000_000_000 <= start:
        pass


def _with_pid(pid: int, env: dict[str, str]) -> subprocess.Popen[bytes] | None:
    """A sleeper given the pid `pid` (the kernel hands out the one after ns_last_pid), or None
    where that cannot be asked for (no privilege) or another process took it first."""
    for _ in range(5):
        try:
            Path("/proc/sys/kernel/ns_last_pid").write_text(str(pid - 1))
        except OSError:
            return None
        proc = subprocess.Popen(SLEEPER, env=env, start_new_session=True)
        if proc.pid == pid:
            return proc
        proc.kill()
        proc.wait()
    return None


def test_a_new_process_with_the_pid_of_one_seen_before_is_read_as_new() -> None:
    """Sweeps read a process's stat once and hold the process by a pidfd; when it ends and
    its pid goes to a new process, the new one's stat is read: an escaped process is never
    hidden behind the older starttime of a process that had its pid."""
    old = subprocess.Popen(SLEEPER)
    try:
        spawn.sweep(f"nothing-{os.getpid()}")
        if old.pid not in spawn._seen.held:
            pytest.skip("no pidfds here: every reading reads every stat")
        _ticks_past(spawn.started_at(old.pid))
    finally:
        old.kill()
        old.wait()
    marker = f"reused-{os.getpid()}"
    new = _with_pid(old.pid, {**os.environ, spawn.MARKER: marker})
    if new is None:
        pytest.skip("a pid cannot be handed out again on demand here")
    try:
        assert spawn.sweep(marker, since=spawn.started_at(new.pid)) == 1
        assert new.wait(timeout=10) == -signal.SIGKILL
    finally:
        new.kill()
        new.wait()


def test_a_process_seen_before_is_let_go_once_it_ends() -> None:
    proc = subprocess.Popen(SLEEPER)
    try:
        spawn.sweep(f"nothing-{os.getpid()}")
        held = spawn._seen.held.get(proc.pid)
        if held is None:
            pytest.skip("no pidfds here: every reading reads every stat")
        assert held[1] == spawn.started_at(proc.pid)
    finally:
        proc.kill()
        proc.wait()
    spawn.sweep(f"nothing-{os.getpid()}")
    assert proc.pid not in spawn._seen.held
    assert held[0] not in spawn._seen.pids


def test_an_environment_is_read_once_the_exec_has_set_it_up() -> None:
    """What sweeps read: the environment of a running program; nothing (and no waiting for
    an exec) for a program started with none, a zombie, or a kernel thread."""
    marked = subprocess.Popen(SLEEPER, env={**os.environ, spawn.MARKER: "settled"})
    bare = subprocess.Popen(["env", "-i", sys.executable, "-c",
                             "print('up', flush=True)\nimport time\nwhile True: time.sleep(1)"],
                            stdout=subprocess.PIPE)
    zombie = subprocess.Popen(["true"])
    try:
        assert b"\0" + f"{spawn.MARKER}=settled".encode() + b"\0" in \
            b"\0" + spawn._settled_environ(marked.pid)
        assert bare.stdout is not None and bare.stdout.readline() == b"up\n"  # exec'd, running
        assert spawn._settled_environ(bare.pid) == b""
        os.waitid(os.P_PID, zombie.pid, os.WEXITED | os.WNOWAIT)  # ended, not reaped
        assert spawn._settled_environ(zombie.pid) == b""
        kthreadd = Path("/proc/2/stat")
        if kthreadd.exists() and "(kthreadd)" in kthreadd.read_text():
            assert spawn._settled_environ(2) == b""
    finally:
        for proc in (marked, bare, zombie):
            proc.kill()
            proc.wait()
