"""The `aider` runner: Aider (aider-chat) edits the bead's worktree from one `--message`.

Aider has no machine-readable output and exits 0 whatever happens, so the runner reads its
plain text line by line (edits, test runs, API errors, retries) and, after the run, its
analytics log (tokens and cost per model call) and its LLM history (the replies' exact text).
Aider never commits (gastown commits the worktree); the role's checks become aider's test
command, so aider itself iterates on failing checks. The witness runs in aider's `ask` mode
(no edits) with the changed files added read-only; the diff is in its prompt (aider cannot
run `git diff` itself).
"""
from __future__ import annotations

import contextlib
import json
import re
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from gastown import git, spawn
from gastown.bead import RoleSpec
from gastown.runners import cli
from gastown.runners.base import AttemptContext, Event, Outcome, RunResult

CLI = cli.Cli("aider", (0, 80), "pipx install aider-chat (or python -m pip install aider-chat)",
              "pipx upgrade aider-chat")  # tested with 0.86.2
# Stop aider after this many API retries (default: aider's own ~1 minute of backoff).
MAX_RETRIES_VAR = "GAS_AIDER_MAX_RETRIES"
PROVIDER_KEYS = {
    "openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY", "gemini": "GEMINI_API_KEY",
    "deepseek": "DEEPSEEK_API_KEY", "openrouter": "OPENROUTER_API_KEY",
    "groq": "GROQ_API_KEY", "mistral": "MISTRAL_API_KEY", "xai": "XAI_API_KEY",
}
# Model names without a provider prefix, as aider and litellm resolve them.
BARE_MODELS = (("gpt-", "openai"), ("o1", "openai"), ("o3", "openai"), ("o4", "openai"),
               ("chatgpt", "openai"), ("claude", "anthropic"), ("sonnet", "anthropic"),
               ("opus", "anthropic"), ("haiku", "anthropic"), ("gemini", "gemini"),
               ("deepseek", "deepseek"), ("grok", "xai"))
# The litellm exception names aider prints, and the HTTP status behind each.
STATUS = {
    "BadRequestError": 400, "ContextWindowExceededError": 400,
    "ContentPolicyViolationError": 400, "AuthenticationError": 401,
    "PermissionDeniedError": 403, "NotFoundError": 404, "UnprocessableEntityError": 422,
    "RateLimitError": 429, "InternalServerError": 500, "BadGatewayError": 502,
    "ServiceUnavailableError": 503, "APIError": None, "APIConnectionError": None,
    "Timeout": None,
}
API_ERROR = re.compile(r"^litellm\.(\w+): (?:\1: )?(?:\w+Exception - )?(.*)$")
RETRYING = re.compile(r"^Retrying in ([\d.]+) seconds")
APPLIED = re.compile(r"^Applied edit to (.+)$")
ADDED = re.compile(r"^Added (.+?) to the chat(?: \(read-only\))?\.$")
TEST_FAILED = re.compile(r"^Added \d+ lines? of output to the chat\.$")
GAVE_UP = "Only 3 reflections allowed, stopping."
BAD_FORMAT = "The LLM did not conform to the edit format."
FENCE = "```"
TAGS_CACHE = ".aider.tags.cache.v*"
LITELLM_MODELS = "model_prices_and_context_window_backup.json"
WIDTH = 200  # aider's console wraps at $COLUMNS (80 when unset): wide enough for one line each


class AiderRunner:
    name = "aider"
    needs_model = True
    keeps_work = True

    def check(self, role: RoleSpec) -> str | None:
        env = cli.role_env(role)
        return CLI.locate(env)[1] or _missing_key(role.model, env)

    def run(self, ctx: AttemptContext) -> RunResult:
        aider = shutil.which("aider", path=ctx.env.get("PATH"))
        if aider is None or ctx.prompt_file is None:
            return RunResult(Outcome.ERROR, "aider not found on PATH" if aider is None
                             else "aider needs a prompt: the role has none")
        caches = set(ctx.worktree.glob(TAGS_CACHE))
        with tempfile.TemporaryDirectory(prefix="gas-aider-") as tmp:
            files = _Files.under(Path(tmp))
            watch = _Watch(ctx, files, _max_retries(ctx.env))
            proc = spawn.run([aider, *_flags(aider, ctx, files)], cwd=ctx.worktree,
                             env=_env(ctx), log_file=ctx.log_file, timeout=ctx.role.timeout,
                             stall=ctx.role.stall, on_line=watch.line)
            watch.finish()
            result = _result(proc, watch, files)
        for cache_dir in set(ctx.worktree.glob(TAGS_CACHE)) - caches:
            shutil.rmtree(cache_dir, ignore_errors=True)  # aider's repo-map cache, not work
        return result


# --- check ------------------------------------------------------------------------------

def _missing_key(model: str | None, env: Mapping[str, str]) -> str | None:
    """Decided from the model's provider prefix (`openai/...`) or its well-known name."""
    if model is None:
        if any(_has_key(key, env) for key in PROVIDER_KEYS.values()):
            return None
        return ("no model set and no API key in the environment; set the role's model and "
                "its provider's key (e.g. OPENAI_API_KEY, ANTHROPIC_API_KEY)")
    key = PROVIDER_KEYS.get(_provider(model) or "")
    if key is None or _has_key(key, env):
        return None
    return f"{key} is not set (model {model}); set it in the environment or the role's env"


def _provider(model: str) -> str | None:
    if "/" in model:
        return model.split("/", 1)[0]
    return next((p for prefix, p in BARE_MODELS if model.startswith(prefix)), None)


def _has_key(key: str, env: Mapping[str, str]) -> bool:
    return bool(env.get(key) or env.get(f"AIDER_{key}"))


# --- the command line ----------------------------------------------------------------------

@dataclass(frozen=True)
class _Files:
    """aider's side files, kept out of the worktree (it writes them in the repo by default)."""

    meta: Path
    analytics: Path
    llm: Path
    chat: Path
    input: Path

    @classmethod
    def under(cls, folder: Path) -> _Files:
        return cls(*(folder / name for name in (
            "model-metadata.json", "analytics.jsonl", "llm-history.txt",
            "chat-history.md", "input-history")))


QUIET = ("--yes-always", "--no-stream", "--no-pretty", "--no-fancy-input", "--no-analytics",
         "--no-check-update", "--no-show-release-notes", "--no-show-model-warnings",
         "--no-gitignore", "--no-auto-commits", "--no-dirty-commits", "--no-auto-lint",
         "--no-detect-urls", "--no-suggest-shell-commands")


def _flags(aider: str, ctx: AttemptContext, files: _Files) -> list[str]:
    flags = [*QUIET, *_model_flags(aider, ctx.role.model, files),
             "--analytics-log", str(files.analytics), "--llm-history-file", str(files.llm),
             "--chat-history-file", str(files.chat), "--input-history-file", str(files.input),
             "--message-file", str(ctx.prompt_file)]
    if _is_reviewer(ctx):
        flags += ["--chat-mode", "ask"]
        flags += [arg for path in _changed(ctx) for arg in ("--read", path)]
    else:
        flags += [arg for path in _bead_files(ctx) for arg in ("--file", path)]
        flags += _test_flags(ctx.role.checks)
    return [*flags, *ctx.role.args]  # the role's own args come last: they win


def _model_flags(aider: str, model: str | None, files: _Files) -> list[str]:
    """The model, also as the weak model (one model's tokens, no second model to look up),
    with its metadata in a file: aider then fetches no price list from GitHub. The metadata
    is litellm's own entry when its bundled list has the model (prices: aider reports a
    cost), else context-window sizes only (no cost: gastown prices the tokens)."""
    if model is None:
        return []
    entry = _litellm_entry(aider, model) or {
        "max_input_tokens": 128000, "max_output_tokens": 8192, "max_tokens": 8192,
        "mode": "chat", "litellm_provider": _provider(model) or "openai"}
    files.meta.write_text(json.dumps({model: entry}))
    return ["--model", model, "--weak-model", model, "--model-metadata-file", str(files.meta)]


def _litellm_entry(aider: str, model: str) -> dict[str, Any] | None:
    models = _litellm_models(aider)
    provider, _, bare = model.rpartition("/")
    entry = models.get(model) or models.get(bare)
    if isinstance(entry, dict) and provider in ("", entry.get("litellm_provider")):
        return entry
    return None


@cache
def _litellm_models(aider: str) -> dict[str, Any]:
    """litellm's bundled model list, from aider's own virtualenv (empty when not found)."""
    venv = Path(aider).resolve().parent.parent
    for path in venv.glob(f"lib/python*/site-packages/litellm/{LITELLM_MODELS}"):
        with contextlib.suppress(OSError, ValueError):
            models = json.loads(path.read_text())
            return models if isinstance(models, dict) else {}
    return {}


def _test_flags(checks: tuple[str, ...]) -> list[str]:
    return ["--test-cmd", _test_command(checks), "--auto-test"] if checks else []


def _test_command(checks: tuple[str, ...]) -> str:
    return checks[0] if len(checks) == 1 else " && ".join(f"({c})" for c in checks)


def _is_reviewer(ctx: AttemptContext) -> bool:
    return ctx.role.name == "witness"


def _changed(ctx: AttemptContext) -> list[str]:
    base = ctx.env.get("GAS_BASE_COMMIT")
    if not base:
        return []
    names = git.run("diff", "--name-only", base, cwd=ctx.worktree, check=False).stdout
    return [name for name in names.splitlines() if (ctx.worktree / name).is_file()]


def _bead_files(ctx: AttemptContext) -> list[str]:
    """The files the bead names (a glob's path, an item's `file`) that exist, for the chat."""
    item = ctx.bead.item if isinstance(ctx.bead.item, dict) else {}
    named = [ctx.bead.path, item.get("file")]
    return [name for name in dict.fromkeys(named)
            if isinstance(name, str) and name and _inside(ctx.worktree, name)]


def _inside(worktree: Path, name: str) -> bool:
    path = (worktree / name).resolve()
    return path.is_file() and path.is_relative_to(worktree.resolve())


def _env(ctx: AttemptContext) -> dict[str, str]:
    env = dict(ctx.env)
    env.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no price list from GitHub
    columns = env.get("COLUMNS", "")
    if not columns.isdigit() or int(columns) < WIDTH:
        env["COLUMNS"] = str(WIDTH)
    env.update(_identity(ctx.worktree, env))
    return env


def _identity(worktree: Path, env: dict[str, str]) -> dict[str, str]:
    """Without a git identity aider writes "Your Name" into the repo's config: give it one
    for this process only (aider itself never commits here)."""
    wanted = {"user.name": env.get("GIT_AUTHOR_NAME", "gastown"),
              "user.email": env.get("GIT_AUTHOR_EMAIL", "gastown@localhost")}
    missing = {key: value for key, value in wanted.items()
               if not git.run("config", key, cwd=worktree, env=env, check=False).stdout.strip()}
    given = env.get("GIT_CONFIG_COUNT", "")
    count = int(given) if given.isdigit() else 0
    extra = {"GIT_CONFIG_COUNT": str(count + len(missing))} if missing else {}
    for n, (key, value) in enumerate(missing.items(), start=count):
        extra.update({f"GIT_CONFIG_KEY_{n}": key, f"GIT_CONFIG_VALUE_{n}": value})
    return extra


def _max_retries(env: Mapping[str, str]) -> int | None:
    value = env.get(MAX_RETRIES_VAR, "").strip()
    return int(value) if value.isdigit() else None


# --- reading aider's output ----------------------------------------------------------------

@dataclass
class _ApiError:
    name: str
    message: str

    def what(self) -> str:
        status = STATUS.get(self.name)
        if status == 401:
            return "bad API key (401)"
        if self.name == "APIConnectionError":
            return "cannot reach the model API"
        if self.name == "Timeout":
            return "the model API timed out"
        return f"model API error {status or self.name}"

    def reason(self) -> str:
        return f"aider: {self.what()}: {self.message}"


@dataclass
class _Watch:
    """Turns aider's output lines into events and remembers what decides the outcome."""

    ctx: AttemptContext
    files: _Files
    max_retries: int | None
    error: _ApiError | None = None  # the last API error not yet followed by a reply
    retries: int = 0
    stopped: bool = False  # the runner stopped aider: too many retries
    reflection: str | None = None  # why aider last asked the model again
    gave_up: bool = False
    testing: bool = False
    test_lines: list[str] = field(default_factory=list)

    def line(self, raw: str) -> str | None:
        """Read one output line; ask spawn to stop aider once it retried too often."""
        line = raw.strip()
        if self.testing:
            self._test_output(line)
        else:
            self._aider(line)
        return spawn.STOP if self.stopped else None

    def _aider(self, line: str) -> None:
        if found := APPLIED.match(line):
            self.emit("write", found.group(1))
            self.testing = bool(self.ctx.role.checks) and not _is_reviewer(self.ctx)
            self.test_lines = []
        elif (found := ADDED.match(line)) and not TEST_FAILED.match(line):
            self.emit("read", found.group(1))
        elif line.startswith("Tokens: "):
            self._replied()
        else:
            self._trouble(line)

    def _trouble(self, line: str) -> None:
        if (found := API_ERROR.match(line)) and found.group(1) in STATUS:
            self.error = _ApiError(found.group(1), found.group(2).strip())
            self.emit("error", self.error.reason().removeprefix("aider: "))
        elif (found := RETRYING.match(line)) and self.error is not None:
            self._retry(self.error, found.group(1))
        elif line == BAD_FORMAT:
            self.reflection = "its edits do not apply"
            self.emit("error", "the reply did not follow aider's edit format; it asks again")
        elif line == GAVE_UP:
            self.gave_up = True

    def _retry(self, error: _ApiError, delay: str) -> None:
        self.retries += 1
        self.emit("retry", f"{error.what()}, retrying in {delay}s")
        if self.max_retries is not None and self.retries > self.max_retries:
            self.stopped = True

    def _test_output(self, line: str) -> None:
        if APPLIED.match(line):  # edits to several files come one line each
            self._aider(line)
        elif line.startswith("Tokens: "):  # no test ran (or it passed): the model was asked
            self._ran("passed")
            self._aider(line)
        elif TEST_FAILED.match(line):
            self._ran("failed")
            self.reflection = "the tests still fail"
        elif line.strip("-=_*. "):
            self.test_lines.append(line)

    def _ran(self, fallback: str) -> None:
        last = self.test_lines[-1] if self.test_lines else fallback
        self.emit("run", f"{_test_command(self.ctx.role.checks)} -> {last[:200]}")
        self.testing = False

    def _replied(self) -> None:
        self.error = None
        words = _first_words(_last_reply(self.files.llm))
        if words:
            self.emit("text", words[:200])

    def finish(self) -> None:
        if self.testing:
            self._ran("passed")

    def emit(self, kind: str, text: str) -> None:
        self.ctx.on_event(Event(kind, text))


def _first_words(reply: str) -> str:
    """The reply's first line of prose: not a file name before a fence, nor an edit block."""
    lines = reply.splitlines()
    for line, following in zip(lines, [*lines[1:], ""], strict=True):
        if line.startswith(FENCE) or following.startswith(FENCE):
            return ""
        if line.strip():
            return line.strip()
    return ""


def _last_reply(llm_history: Path) -> str:
    """The last `LLM RESPONSE` of aider's LLM history (each line prefixed `ASSISTANT `)."""
    try:
        lines = llm_history.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    starts = [i for i, line in enumerate(lines) if line.startswith("LLM RESPONSE ")]
    reply: list[str] = []
    for line in lines[starts[-1] + 1:] if starts else []:
        if not line.startswith("ASSISTANT"):
            break
        reply.append(line[len("ASSISTANT "):])
    return "\n".join(reply)


def _usage(analytics: Path) -> dict[str, float]:
    """Tokens summed over aider's `message_send` events; usd only when aider priced them."""
    sent = received = 0
    cost = 0.0
    for props in _sends(analytics):
        sent += int(props.get("prompt_tokens") or 0)
        received += int(props.get("completion_tokens") or 0)
        cost += float(props.get("cost") or 0)
    usage: dict[str, float] = {"input_tokens": sent, "output_tokens": received}
    if cost > 0:
        usage["usd"] = cost
    return usage


def _sends(analytics: Path) -> list[dict[str, Any]]:
    """The properties of each `message_send` event (one per model call that answered)."""
    try:
        lines = analytics.read_text(errors="replace").splitlines()
    except OSError:
        return []
    sends = []
    for line in lines:
        with contextlib.suppress(json.JSONDecodeError):
            event = json.loads(line)
            if isinstance(event, dict) and event.get("event") == "message_send":
                sends.append(event.get("properties") or {})
    return sends


# --- the outcome -----------------------------------------------------------------------------

def _result(proc: spawn.ProcResult, watch: _Watch, files: _Files) -> RunResult:
    usage = _usage(files.analytics)
    outcome, reason = _judge(proc, watch, usage)
    return RunResult(outcome, reason, proc.exit_code, proc.duration, proc.tail, usage,
                     _last_reply(files.llm) if outcome is Outcome.OK else "")


def _judge(proc: spawn.ProcResult, watch: _Watch,
           usage: dict[str, float]) -> tuple[Outcome, str | None]:
    if proc.killed == "stopped":
        return Outcome.ERROR, "stopped: the build was interrupted"
    if proc.killed and proc.killed != "requested":  # requested: the watch stopped it, below
        return Outcome.TIMEOUT, f"aider: killed after {proc.killed}"
    if watch.error is not None:
        retried = f" (stopped at retry {watch.retries}: {MAX_RETRIES_VAR}={watch.max_retries})"
        return Outcome.FAILED, watch.error.reason() + (retried if watch.stopped else "")
    if proc.exit_code != 0:
        last = (proc.tail.strip().splitlines() or [""])[-1][:200]
        return Outcome.FAILED, f"aider: exit {proc.exit_code}: {last}"
    if not usage["input_tokens"]:
        return Outcome.FAILED, "aider: no reply from the model"
    if watch.gave_up:
        why = watch.reflection or "it kept asking the model again"
        return Outcome.FAILED, f"aider: gave up after 3 retries: {why}"
    return Outcome.OK, None
