"""The `claude` runner: Claude Code headless (`claude -p`), read through its stream-json output.

Permissions: `--permission-mode acceptEdits` approves Write/Edit inside the worktree, and
`--allowedTools Bash,Read` lets the agent run commands and read anywhere, unattended. This works
as root without `IS_SANDBOX=1` (which bypass mode needs there, and which would tell the CLI it
runs in a sandbox when it does not). An edit outside the worktree is refused and shows up in the
result's `permission_denials`, which fails the attempt.
"""
from __future__ import annotations

import contextlib
import json
import re
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gastown import spawn
from gastown.bead import RoleSpec
from gastown.runners import cli
from gastown.runners.base import AttemptContext, Event, Outcome, RunResult

NPM_INSTALL = "npm install -g @anthropic-ai/claude-code"
INSTALL_HINT = f"install it: {NPM_INSTALL}"
CLI = cli.Cli("claude", (2, 1, 0), NPM_INSTALL, NPM_INSTALL)  # tested with 2.1.197
LOGIN_HINT = ("set ANTHROPIC_API_KEY (in the environment or the role's env) "
              "or run `claude auth login`")
PERMISSIONS = ("--permission-mode", "acceptEdits", "--allowedTools", "Bash,Read")
QUIET_ENV = {  # forced: no traffic but the model API, no self-update, no stream fallback
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_AUTOUPDATER": "1",
    "DISABLE_TELEMETRY": "1", "DISABLE_ERROR_REPORTING": "1",
    "CLAUDE_CODE_DISABLE_NONSTREAMING_FALLBACK": "1",
}
# Only when the user set none. The CLI's own defaults (10 retries, about 3 minutes of backoff
# even for a bad key; 10 minutes to wait for response headers) are too patient for a swarm;
# 5 retries still ride out a short overload (about 15 s of backoff).
DEFAULT_ENV = {"CLAUDE_CODE_MAX_RETRIES": "5", "API_TIMEOUT_MS": "120000"}
CREDENTIAL_VARS = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN",
                   "CLAUDE_CODE_USE_BEDROCK", "CLAUDE_CODE_USE_VERTEX")
EDIT_TOOLS = frozenset({"Write", "Edit", "MultiEdit", "NotebookEdit"})
CLI_NOTES = ("Shell cwd was reset to", "(Bash completed with no output)")
EXIT_CODE = re.compile(r"^(?:Error: )?Exit code (\d+)\n?")
API_ERROR = re.compile(r"^API Error: \d+ ?")


class ClaudeRunner:
    name = "claude"
    needs_model = True
    keeps_work = True

    def check(self, role: RoleSpec) -> str | None:
        env = cli.role_env(role)
        _, problem = CLI.locate(env)
        if problem:
            return problem
        if not _has_credentials(env):
            return f"claude has no credentials: {LOGIN_HINT}"
        return None

    def run(self, ctx: AttemptContext) -> RunResult:
        exe = shutil.which("claude", path=ctx.env.get("PATH"))
        if exe is None or ctx.prompt_file is None:
            why = "no prompt file" if exe else f"claude not found on PATH; {INSTALL_HINT}"
            return RunResult(Outcome.ERROR, why)
        stream = StreamReader(ctx.worktree, ctx.on_event)
        # A temp dir per run: the CLI otherwise leaves one under /tmp/claude-<uid> per worktree.
        with tempfile.TemporaryDirectory(prefix="gas-claude-", ignore_cleanup_errors=True) as tmp:
            env = {**DEFAULT_ENV, "CLAUDE_CODE_TMPDIR": tmp, **ctx.env, **QUIET_ENV}
            # spawn also kills the Bash tool's commands, which run in sessions of their own.
            proc = spawn.run(command(exe, ctx), cwd=ctx.worktree, env=env,
                             log_file=ctx.log_file, timeout=ctx.role.timeout,
                             stall=ctx.role.stall, on_line=stream.feed)
        return _result(proc, stream)


def command(exe: str, ctx: AttemptContext) -> list[str]:
    """The argv; the prompt comes last, after `--`, where no variadic flag (`--allowedTools`,
    `--add-dir`... in the role's args) can take it for one of its values."""
    assert ctx.prompt_file is not None
    argv = [exe, "-p", "--output-format", "stream-json", "--verbose",
            "--no-session-persistence"]
    if ctx.role.model:
        argv += ["--model", ctx.role.model]
    if ctx.role.max_turns:
        argv += ["--max-turns", str(ctx.role.max_turns)]
    return [*argv, *PERMISSIONS, *ctx.role.args, "--", ctx.prompt_file.read_text()]


def _has_credentials(env: dict[str, str]) -> bool:
    if any(env.get(var) for var in CREDENTIAL_VARS):
        return True
    home = Path(env.get("HOME") or Path.home())
    config = Path(env.get("CLAUDE_CONFIG_DIR") or home / ".claude")
    logins = [config / ".credentials.json"]
    if sys.platform == "darwin":  # the login lives in the Keychain; its account in .claude.json
        logins += [home / ".claude.json", config / ".claude.json"]
    return any(path.is_file() for path in logins)


class StreamReader:
    """Turns the CLI's stream-json lines into events; keeps the final `result` line."""

    def __init__(self, worktree: Path, on_event: Callable[[Event], None]) -> None:
        self.worktree, self.on_event = worktree, on_event
        self.pending: dict[str, tuple[str, str]] = {}  # tool_use id -> (event kind, text)
        self.result: dict[str, Any] | None = None
        self.last_plain = ""  # the last line that was not JSON (the CLI's own complaints)

    def feed(self, line: str) -> None:
        message = _json_object(line)
        if message is None:
            self.last_plain = line.strip() or self.last_plain
            return
        handler = {"assistant": self._assistant, "user": self._user,
                   "system": self._system, "result": self._result}.get(str(message.get("type")))
        # A line of an unexpected shape is skipped: raising here would stop spawn's reader.
        with contextlib.suppress(AttributeError, TypeError, ValueError):
            if handler is not None:
                handler(message)

    def _emit(self, kind: str, text: str) -> None:
        self.on_event(Event(kind, text))

    def _assistant(self, line: dict[str, Any]) -> None:
        message = line.get("message") or {}
        kind = "error" if message.get("model") == "<synthetic>" else "text"
        for block in _blocks(message.get("content")):
            if block.get("type") == "text" and str(block.get("text", "")).strip():
                self._emit(kind, _first_line(str(block["text"])))
            elif block.get("type") == "tool_use":
                self._tool_use(block)

    def _tool_use(self, block: dict[str, Any]) -> None:
        name, args = block.get("name"), block.get("input") or {}
        if name == "Bash":
            self.pending[str(block.get("id"))] = ("run", str(args.get("command", "")))
        elif name == "Read" or name in EDIT_TOOLS:
            path = args.get("file_path") or args.get("notebook_path") or ""
            kind = "read" if name == "Read" else "write"
            self.pending[str(block.get("id"))] = (kind, self._relative(str(path)))

    def _relative(self, path: str) -> str:
        with contextlib.suppress(ValueError):
            return str(Path(path).relative_to(self.worktree))
        return path

    def _user(self, line: dict[str, Any]) -> None:
        for block in _blocks((line.get("message") or {}).get("content")):
            done = self.pending.pop(str(block.get("tool_use_id")), None)
            if block.get("type") != "tool_result" or done is None:
                continue
            kind, text = done
            failed = bool(block.get("is_error"))
            if kind == "run":
                outcome = command_outcome(_text(block.get("content")), failed)
                self._emit("run", f"{text} -> {outcome}")
            elif not failed:
                self._emit(kind, text)

    def _system(self, line: dict[str, Any]) -> None:
        if line.get("subtype") == "api_retry":
            status = line.get("error_status") or line.get("error") or "?"
            delay = float(line.get("retry_delay_ms") or 0) / 1000
            self._emit("retry", f"model API error {status}: retry "
                                f"{line.get('attempt')}/{line.get('max_retries')} in {delay:.1f}s")

    def _result(self, line: dict[str, Any]) -> None:
        self.result = line


def command_outcome(output: str, failed: bool) -> str:
    """`OK`, `3 passed in 0.1s`, `FAILED (failures=1) (exit 1)`: the last line that says
    something, with the exit code when the command failed."""
    found = EXIT_CODE.match(output)
    body = output[found.end():] if found else output
    lines = [line.strip() for line in body.splitlines()
             if any(c.isalnum() for c in line) and not line.strip().startswith(CLI_NOTES)]
    last = lines[-1][:200] if lines else ""
    if not failed:
        return last or "exit 0"
    code = f"exit {found.group(1)}" if found else "failed"
    return f"{last} ({code})" if last else code


def _json_object(line: str) -> dict[str, Any] | None:
    if not line.startswith("{"):
        return None
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _blocks(content: Any) -> list[dict[str, Any]]:
    return [b for b in content if isinstance(b, dict)] if isinstance(content, list) else []


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "\n".join(str(b.get("text", "")) for b in _blocks(content))


def _first_line(text: str) -> str:
    return (text.strip().splitlines() or [""])[0][:200]


def _result(proc: spawn.ProcResult, stream: StreamReader) -> RunResult:
    def result(outcome: Outcome, reason: str | None) -> RunResult:
        line = stream.result or {}
        text = "" if line.get("is_error") else str(line.get("result") or "")
        return RunResult(outcome, reason, proc.exit_code, proc.duration, proc.tail,
                         usage_of(line), text)

    if proc.killed == "stopped":
        return result(Outcome.ERROR, "stopped: the build was interrupted")
    if proc.killed:
        return result(Outcome.TIMEOUT, f"claude: killed after {proc.killed}")
    if stream.result is None:
        said = f": {stream.last_plain[:200]}" if stream.last_plain else ""
        return result(Outcome.FAILED, f"claude: exit {proc.exit_code} without a result{said}")
    reason = failure(stream.result, proc.exit_code)
    return result(Outcome.FAILED if reason else Outcome.OK, reason)


def failure(line: dict[str, Any], exit_code: int) -> str | None:
    """Why a run that wrote a `result` line failed, or None when it succeeded."""
    if line.get("is_error"):
        return _error_reason(line)
    if exit_code != 0:
        return f"claude: exit {exit_code}"
    denials = [d for d in line.get("permission_denials") or [] if isinstance(d, dict)]
    if denials:
        return "claude: permission denied: " + ", ".join(_denial(d) for d in denials[:3])
    return None


def _error_reason(line: dict[str, Any]) -> str:
    errors = [str(e) for e in line.get("errors") or []]
    text = _first_line(str(line.get("result") or "; ".join(errors) or line.get("subtype")))
    status = line.get("api_error_status")
    if status == 401:
        return f"claude: not logged in or bad API key (401): {text}"
    if status:  # the API's message, without the CLI's "usually temporary, try again" advice
        message = API_ERROR.sub("", text).split(". This is ", 1)[0]
        return f"claude: model API error {status}: {message}"
    if text.startswith("Not logged in"):
        return f"claude: not logged in: {LOGIN_HINT}"
    return f"claude: {text}"


def _denial(denial: dict[str, Any]) -> str:
    args = denial.get("tool_input") or {}
    target = args.get("file_path") or args.get("command") or ""
    return f"{denial.get('tool_name')} {target}".strip()[:120]


def usage_of(line: dict[str, Any]) -> dict[str, float]:
    """Tokens from the result's `usage` (cache reads and writes count as input), cost from
    `total_cost_usd`, which the CLI computes itself."""
    usage = line.get("usage") or {}
    if not usage:
        return {}
    sent = sum(int(usage.get(key) or 0) for key in
               ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"))
    totals: dict[str, float] = {"input_tokens": sent,
                                "output_tokens": int(usage.get("output_tokens") or 0)}
    if isinstance(line.get("total_cost_usd"), int | float):
        totals["usd"] = float(line["total_cost_usd"])
    return totals
