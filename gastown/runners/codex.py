"""The `codex` runner: OpenAI's Codex CLI (`codex exec --json`) works the bead's worktree headless.

Credentials: with OPENAI_API_KEY or CODEX_API_KEY set, codex runs against a provider gastown
defines in a private CODEX_HOME next to the bead's log (base URL: OPENAI_BASE_URL, which codex
itself ignores, else api.openai.com), so the user's ~/.codex config never applies. Without a
key, the user's own `codex login` (their CODEX_HOME) is used and the same settings go as `-c`.
Tunable from the role's env: CODEX_REQUEST_MAX_RETRIES, CODEX_STREAM_MAX_RETRIES (retries of a
model call) and CODEX_STREAM_IDLE_TIMEOUT_MS (a silent stream counts as failed after this).
Codex 0.169 has no turn limit, so `max_turns` is not applied. Codex reports no cost: usage
carries tokens only and gastown prices them.
"""
from __future__ import annotations

import json
import re
import shlex
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gastown import spawn
from gastown.bead import RoleSpec
from gastown.runners import cli
from gastown.runners.base import AttemptContext, Event, Outcome, RunResult

INSTALL = "npm install -g @openai/codex"
CLI = cli.Cli("codex", (0, 100, 0), INSTALL, f"{INSTALL}@latest")  # tested with 0.169.0
KEY_VARS = ("CODEX_API_KEY", "OPENAI_API_KEY")
DEFAULT_BASE_URL = "https://api.openai.com/v1"
PROVIDER = "gastown"
TUNABLES = {  # env var -> (provider setting, default: fewer and shorter than codex's own)
    "CODEX_REQUEST_MAX_RETRIES": ("request_max_retries", 2),
    "CODEX_STREAM_MAX_RETRIES": ("stream_max_retries", 3),
    "CODEX_STREAM_IDLE_TIMEOUT_MS": ("stream_idle_timeout_ms", 120_000),
}
QUIET = (  # unattended: never ask, no telemetry, no update check, no plugin sync over the network
    'approval_policy = "never"',
    "check_for_update_on_startup = false",
    "analytics.enabled = false",
    "feedback.enabled = false",
    'otel.exporter = "none"',
    'otel.trace_exporter = "none"',
    'otel.metrics_exporter = "none"',
    "features.plugins = false",
    "features.unbounded_connection_retries = false",  # else a dead API is retried forever
)
STATUS = re.compile(r"(?:unexpected status|last status:) (\d{3})")
HIGH_DEMAND = "currently experiencing high demand"  # what codex says for an HTTP 500
READERS = frozenset({"cat", "nl", "sed"})
MAX_PROMPT_ARG = 100_000  # bytes; Linux refuses one argv string over 128 KiB


class CodexRunner:
    name = "codex"
    needs_model = True
    keeps_work = True

    def check(self, role: RoleSpec) -> str | None:
        env = cli.role_env(role)
        return CLI.locate(env)[1] or _tunable_problem(env) or _credentials_problem(env)

    def run(self, ctx: AttemptContext) -> RunResult:
        path = shutil.which("codex", path=ctx.env.get("PATH"))
        if path is None or ctx.prompt_file is None:
            return RunResult(Outcome.ERROR, f"codex not found on PATH; install it: {INSTALL}"
                             if path is None else "codex: no prompt for this role")
        env, settings = _setup(ctx)
        argv = [path, "exec", *settings, *_flags(ctx), *ctx.role.args, "--",
                _prompt(ctx.prompt_file)]
        events = _Events(ctx)
        proc = spawn.run(argv, cwd=ctx.worktree, env=env, log_file=ctx.log_file,
                         timeout=ctx.role.timeout, stall=ctx.role.stall, on_line=events.feed)
        return _result(proc, events)


# --- check ---------------------------------------------------------------------------------

def _tunable_problem(env: dict[str, str]) -> str | None:
    bad = next((var for var in TUNABLES if not env.get(var, "0").isdigit()), None)
    return None if bad is None else f"codex: {bad} must be a whole number, not {env[bad]!r}"


def _credentials_problem(env: dict[str, str]) -> str | None:
    if _key_var(env) or (_user_home(env) / "auth.json").is_file():
        return None
    return ("codex: no credentials; set OPENAI_API_KEY (or CODEX_API_KEY) in the environment "
            "or the role's env, or run `codex login`")


def _key_var(env: dict[str, str]) -> str | None:
    return next((var for var in KEY_VARS if env.get(var)), None)


def _user_home(env: dict[str, str]) -> Path:
    return Path(env.get("CODEX_HOME") or Path(env.get("HOME", "~")).expanduser() / ".codex")


# --- run -----------------------------------------------------------------------------------

def _setup(ctx: AttemptContext) -> tuple[dict[str, str], list[str]]:
    """The env and settings flags: a private CODEX_HOME with config.toml when a key is set."""
    env = {**ctx.env, "NO_COLOR": "1"}
    key_var = _key_var(env)
    lines = [*QUIET, f"sandbox_mode = {_toml(_sandbox(ctx))}"]
    if key_var is None:
        return env, _login_flags(env, lines)
    env["CODEX_HOME"] = str(_private_home(ctx, [*lines, *_provider(env, key_var)]))
    return env, []


def _login_flags(env: dict[str, str], lines: list[str]) -> list[str]:
    """The user's `codex login` lives in their CODEX_HOME: keep it, pass settings as -c."""
    if env.get("OPENAI_BASE_URL"):
        lines = [*lines, f"openai_base_url = {_toml(env['OPENAI_BASE_URL'])}"]
    return [arg for line in lines for arg in ("-c", line.replace(" = ", "=", 1))]


def _private_home(ctx: AttemptContext, lines: list[str]) -> Path:
    home = ctx.log_file.parent / f"codex-home-{ctx.bead.id}"
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text("\n".join(lines) + "\n")  # names the key var, not the key
    return home


def _sandbox(ctx: AttemptContext) -> str:
    """The reviewer only reads; the polecat writes its worktree (never .git: gastown commits)."""
    return "read-only" if ctx.role.name == "witness" else "workspace-write"


def _provider(env: dict[str, str], key_var: str) -> list[str]:
    base_url = env.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL
    lines = [f"model_provider = {_toml(PROVIDER)}",
             f"model_providers.{PROVIDER}.name = {_toml(PROVIDER)}",
             f"model_providers.{PROVIDER}.base_url = {_toml(base_url)}",
             f"model_providers.{PROVIDER}.env_key = {_toml(key_var)}",
             f'model_providers.{PROVIDER}.wire_api = "responses"']
    for var, (setting, default) in TUNABLES.items():
        lines.append(f"model_providers.{PROVIDER}.{setting} = {int(env.get(var, default))}")
    return lines


def _toml(text: str) -> str:
    return json.dumps(text)  # a JSON string is a valid TOML basic string


def _prompt(prompt_file: Path) -> str:
    """The prompt as codex's argument (stdin is closed); a huge one is read from its file."""
    text = prompt_file.read_text()
    if len(text.encode()) <= MAX_PROMPT_ARG:
        return text
    return f"Your instructions are in the file {prompt_file}. Read all of it, then follow it."


def _flags(ctx: AttemptContext) -> list[str]:
    flags = ["--json", "--ephemeral", "--skip-git-repo-check", "-C", str(ctx.worktree)]
    return flags + (["-m", ctx.role.model] if ctx.role.model else [])


# --- events --------------------------------------------------------------------------------

@dataclass
class _Events:
    """Reads codex's JSONL events: log events as they come, the final state at the end."""

    ctx: AttemptContext
    text: str = ""
    usage: dict[str, float] = field(default_factory=dict)
    completed: bool = False
    failure: str | None = None
    last_error: str | None = None

    def feed(self, line: str) -> None:
        event = _json(line)
        handler = getattr(self, "_on_" + str(event.get("type", "")).replace(".", "_"), None)
        if handler is not None:
            handler(event)

    def _on_item_completed(self, event: dict[str, Any]) -> None:
        item = event.get("item") or {}
        handler = getattr(self, "_item_" + str(item.get("type", "")), None)
        if handler is not None:
            handler(item)

    def _on_error(self, event: dict[str, Any]) -> None:
        message = str(event.get("message", ""))
        if message.startswith("Reconnecting"):
            self.ctx.on_event(Event("retry", message))
        else:
            self.last_error = message
            self.ctx.on_event(Event("error", message))

    def _on_turn_completed(self, event: dict[str, Any]) -> None:
        self.completed = True
        usage = event.get("usage") or {}
        for key in ("input_tokens", "output_tokens"):
            self.usage[key] = self.usage.get(key, 0) + int(usage.get(key) or 0)

    def _on_turn_failed(self, event: dict[str, Any]) -> None:
        self.failure = str((event.get("error") or {}).get("message", "turn failed"))

    def _item_agent_message(self, item: dict[str, Any]) -> None:
        self.text = str(item.get("text", ""))
        first = next((line for line in self.text.splitlines() if line.strip()), "")
        if first:
            self.ctx.on_event(Event("text", first.strip()[:200]))

    def _item_file_change(self, item: dict[str, Any]) -> None:
        for change in item.get("changes") or []:
            deleted = " (deleted)" if change.get("kind") == "delete" else ""
            self.ctx.on_event(Event("write", self._rel(str(change.get("path"))) + deleted))

    def _item_command_execution(self, item: dict[str, Any]) -> None:
        command = _unwrap(str(item.get("command", "")))
        code = item.get("exit_code")
        read = _read_paths(command) if code == 0 else []
        for path in read:
            self.ctx.on_event(Event("read", self._rel(path)))
        if not read:
            summary = _summary(str(item.get("aggregated_output") or ""), code, item.get("status"))
            self.ctx.on_event(Event("run", f"{command} -> {summary}"))

    def _item_error(self, item: dict[str, Any]) -> None:
        self.ctx.on_event(Event("error", str(item.get("message", ""))))  # a warning: not fatal

    def _rel(self, path: str) -> str:
        full = Path(path)
        return str(full.relative_to(self.ctx.worktree)) if full.is_relative_to(
            self.ctx.worktree) else path


def _json(line: str) -> dict[str, Any]:
    if not line.startswith("{"):
        return {}  # stderr is interleaved: warnings, "Reading additional input from stdin..."
    try:
        value = json.loads(line)
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _unwrap(command: str) -> str:
    """`/bin/bash -lc 'pytest -q'` -> `pytest -q`: codex wraps every command in a login shell."""
    try:
        words = shlex.split(command)
    except ValueError:
        return command
    if len(words) == 3 and Path(words[0]).name in ("bash", "sh", "zsh") and words[1] in (
            "-lc", "-c"):
        return words[2]
    return command


def _read_paths(command: str) -> list[str]:
    """The files a plain `cat F`, `nl -ba F` or `sed -n 'A,Bp' F` reads (codex has no read tool)."""
    if any(char in command for char in "|;&<>`$"):
        return []
    try:
        words = shlex.split(command)
    except ValueError:
        return []
    if not words or words[0] not in READERS:
        return []
    if words[0] == "sed":
        return words[3:] if len(words) > 3 and words[1] == "-n" else []
    return [word for word in words[1:] if not word.startswith("-")]


def _summary(output: str, code: object, status: object) -> str:
    """The last non-blank output line; a failure leads with its exit code (or codex's status)."""
    last = next((line.strip() for line in reversed(output.splitlines()) if line.strip()), "")
    last = last[:120]
    if code == 0:
        return last or "exit 0"
    failed = f"exit {code}" if code is not None else str(status or "no exit code")
    return f"{failed}: {last}" if last else failed


# --- result --------------------------------------------------------------------------------

def _result(proc: spawn.ProcResult, events: _Events) -> RunResult:
    def result(outcome: Outcome, reason: str | None) -> RunResult:
        return RunResult(outcome, reason, proc.exit_code, proc.duration, proc.tail,
                         dict(events.usage), events.text)

    if proc.killed == "stopped":
        return result(Outcome.ERROR, "stopped: the build was interrupted")
    if proc.killed:
        return result(Outcome.TIMEOUT, f"codex: killed after {proc.killed}")
    if events.failure is not None:
        return result(Outcome.FAILED, _api_reason(events.failure))
    if proc.exit_code != 0:
        return result(Outcome.FAILED, f"codex: exit {proc.exit_code}: {_last_words(proc, events)}")
    if not events.completed:
        return result(Outcome.FAILED, "codex: exit 0 but no turn.completed event in its output")
    return result(Outcome.OK, None)


def _api_reason(message: str) -> str:
    """One line naming the HTTP status (when codex gives it away) and the API's message."""
    found = STATUS.search(message)
    status = int(found.group(1)) if found else 500 if HIGH_DEMAND in message else None
    detail = _detail(message)
    if status == 401:
        return f"codex: not logged in or bad API key (401): {detail}"
    if status is not None:
        return f"codex: model API error {status}: {detail}"
    return f"codex: model API error: {detail}"


def _detail(message: str) -> str:
    text = re.sub(r"^unexpected status \d{3}[^:]*: ", "", message.strip())
    text = re.sub(r", url: \S+$", "", text)
    body = _json(text).get("error")
    if isinstance(body, dict) and body.get("message"):
        text = str(body["message"])
    return text.splitlines()[0][:300] if text else "no message"


def _last_words(proc: spawn.ProcResult, events: _Events) -> str:
    if events.last_error:
        return events.last_error
    lines = [line for line in proc.tail.splitlines() if line.strip() and not line.startswith("{")]
    return lines[-1].strip()[:300] if lines else "no output"
