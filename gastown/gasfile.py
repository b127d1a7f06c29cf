"""The Gasfile: find it, parse YAML or TOML keeping line numbers, and validate every key."""
from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import json
import math
import re
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cache, partial
from pathlib import Path
from typing import Any, NoReturn

from gastown import git, templating
from gastown.bead import RoleSpec
from gastown.digests import sha1, sha256
from gastown.errors import GasError

GASFILE_NAMES = ("Gasfile.yaml", "Gasfile.yml", "Gasfile.toml")
ROLE_NAMES = ("polecat", "witness", "refinery")
SOURCE_KINDS = ("from", "items", "glob", "from_command")
FORMATS = ("json", "yaml", "jsonl", "sarif")
STRATEGIES = ("merge", "squash", "rebase")
FALLBACK_RUNNERS = ("aider", "claude", "codex", "command")  # gastown.runners.BUILTIN
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
SAFE_NAME_HINT = "use letters, digits, '_', '.' and '-', starting with a letter or digit"
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SPEC_FIELDS = frozenset(f.name for f in dataclasses.fields(RoleSpec)) - {"name"}

PARSE_SCHEMA = 1
KeyPath = tuple[str, ...]
Lines = dict[KeyPath, int]


@dataclass(frozen=True)
class Project:
    base: str = "main"
    into: str = "staging"
    ledger: str = "gt-ledger"
    parallel: int = 4


@dataclass
class Backlog:
    name: str
    kind: str  # "from" | "items" | "glob" | "from_command"
    source: Any  # path | list of items | glob pattern | command
    id: str | None = None  # template text
    title: str | None = None  # template text
    run: str | None = None  # template text
    tags: list[str] = field(default_factory=list)
    needs: list[str] = field(default_factory=list)
    roles: dict[str, dict[str, Any]] = field(default_factory=dict)
    format: str | None = None
    description: str | None = None
    line: int | None = None
    item_lines: list[int | None] = field(default_factory=list)


@dataclass
class Gasfile:
    path: Path
    root: Path
    version: int
    project: Project
    roles: dict[str, dict[str, Any]]
    backlogs: dict[str, Backlog]
    budget: dict[str, float]
    prices: dict[str, dict[str, float]]  # model -> {"input": $/MTok, "output": $/MTok}
    lines: Lines
    memo: ParseMemo | None = field(default=None, repr=False, compare=False)

    def remember(self) -> None:
        """Keep this parse for the next load of the same text (`gas build` does)."""
        if self.memo is not None:
            self.memo.save()

    @property
    def display(self) -> str:
        """The Gasfile's path as errors show it."""
        return display_path(self.path, self.root)

    def line_of(self, *keypath: str | int) -> int | None:
        return _nearest(self.lines, tuple(str(k) for k in keypath))

    def role(self, name: str, backlog: Backlog | None = None) -> RoleSpec:
        base = self.roles[name]
        override = backlog.roles.get(name, {}) if backlog else {}
        merged = {**base, **override}
        merged["env"] = {**base.get("env", {}), **override.get("env", {})}
        return _role_spec(name, merged)


class ParseMemo:
    """What a Gasfile's text parsed to (values and each key's line), by a digest of the text
    and of the code that parses it: a build whose Gasfile did not change neither parses it
    nor imports PyYAML (about 20 ms of every build's start). Values JSON cannot hold as they
    are (a YAML date) are parsed every time. A cache only: unreadable or malformed, it is
    ignored."""

    def __init__(self, directory: Path, path: Path, text: str) -> None:
        name = sha1(str(path).encode(errors="surrogatepass")).hexdigest()[:12]
        self.path = directory / f"parsed-{name}.json"
        self.key = sha256(f"{_parser_digest()}\0{text}".encode(
            errors="surrogatepass")).hexdigest()
        self.kept: str | None = None  # what save() writes

    def recall(self) -> tuple[Any, Lines] | None:
        try:
            memo = json.loads(self.path.read_bytes())
            if memo["schema"] != PARSE_SCHEMA or memo["key"] != self.key:
                return None
            lines = {tuple(str(part) for part in keys): int(line) for keys, line in memo["lines"]}
            return memo["data"], lines
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def keep(self, data: Any, lines: Lines) -> None:
        try:
            self.kept = json.dumps({"schema": PARSE_SCHEMA, "key": self.key, "data": data,
                                    "lines": [[list(keys), line] for keys, line in lines.items()]},
                                   separators=(",", ":"))
        except (TypeError, ValueError):
            self.kept = None

    def save(self) -> None:
        if self.kept is not None:
            with contextlib.suppress(OSError):
                git.write_atomically(self.path, self.kept)
            self.kept = None


@cache
def _parser_digest() -> str:
    """The code that turns a Gasfile's text into values: Python's (tomllib), PyYAML's (its
    __init__, which holds its version, read without importing it) and this module's."""
    digest = sha256(f"{sys.version}|{PARSE_SCHEMA}".encode())
    for name in ("yaml", "gastown.yamlwalk", __name__):
        spec = importlib.util.find_spec(name)
        try:
            digest.update(Path(str(spec.origin)).read_bytes() if spec else name.encode())
        except OSError:
            digest.update(name.encode())
    return digest.hexdigest()


def find_gasfile(root: Path) -> Path:
    root = Path(root)
    found = [root / name for name in GASFILE_NAMES if (root / name).is_file()]
    if not found:
        raise GasError(f"no Gasfile in {root} (looked for {', '.join(GASFILE_NAMES)})",
                       hint="run `gas init` to create one")
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise GasError(f"more than one Gasfile in {root}: {names}",
                       hint="keep one of them and delete the others")
    return found[0]


def load_gasfile(path: Path, root: Path | None = None, *,
                 memo_dir: Path | None = None) -> Gasfile:
    """Parse and validate; paths inside resolve against `root` (default: the Gasfile's dir).
    With `memo_dir`, what the same text parsed to last time is taken from there (see
    ParseMemo; Gasfile.remember() keeps this parse for the next time)."""
    path = Path(path)
    root = path.parent if root is None else Path(root)
    file = display_path(path, root)
    text = _read(path, file)
    memo = ParseMemo(memo_dir, path, text) if memo_dir is not None else None
    recalled = memo.recall() if memo is not None else None
    data, lines = recalled or _parse(path, text, file)
    if memo is not None and recalled is None:
        memo.keep(data, lines)  # before validation, which may change what it is given
    gasfile = _build(_Checker(file, root, lines), path, data)
    gasfile.memo = memo
    return gasfile


validate_gasfile = load_gasfile


def display_path(path: Path, root: Path) -> str:
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _nearest(lines: Lines, path: KeyPath) -> int | None:
    while path:
        if path in lines:
            return lines[path]
        path = path[:-1]
    return None


def _role_spec(name: str, settings: dict[str, Any]) -> RoleSpec:
    kwargs = {k: v for k, v in settings.items() if k in _SPEC_FIELDS}
    kwargs["checks"] = tuple(settings.get("checks", ()))
    kwargs["env"] = tuple(sorted(settings["env"].items()))
    kwargs["args"] = tuple(settings.get("args", ()))
    return RoleSpec(name=name, **kwargs)


# --- parsing ---------------------------------------------------------------------------------

def _read(path: Path, file: str) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise GasError("not UTF-8 text", file=file) from None
    except OSError as e:
        raise GasError(f"cannot read {path}: {e.strerror}") from None


def _parse(path: Path, text: str, file: str) -> tuple[Any, Lines]:
    if path.suffix.lower() == ".toml":
        return _parse_toml(text, file)
    from gastown.yamlwalk import walk  # PyYAML only when a YAML Gasfile is parsed

    return walk(text, file)


_TOML_AT = re.compile(r"\s*\((?:at line (\d+), column \d+|at end of document)\)$")


def _parse_toml(text: str, file: str) -> tuple[Any, Lines]:
    try:
        import tomllib  # only for a TOML Gasfile

        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        message = str(e)
        match = _TOML_AT.search(message)
        line = int(match[1]) if match and match[1] else len(text.splitlines()) or 1
        problem = message[:match.start()] if match else message
        raise GasError(f"invalid TOML: {problem}", file=file, line=line) from None
    return data, _TomlLines().scan(text)


_TOML_PART = r"""(?:[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"|'[^']*')"""
_TOML_PARTS = re.compile(_TOML_PART)
_TOML_HEADER = re.compile(rf"\s*(\[\[?)\s*({_TOML_PART}(?:\s*\.\s*{_TOML_PART})*)\s*\]")
_TOML_KEY = re.compile(rf"\s*({_TOML_PART}(?:\s*\.\s*{_TOML_PART})*)\s*=\s*(.*)")


class _TomlLines:
    """tomllib keeps no positions; find table headers and `key =` lines by scanning."""

    def __init__(self) -> None:
        self.lines: Lines = {}
        self.table: KeyPath = ()
        self.counts: dict[KeyPath, int] = {}
        self.array: tuple[KeyPath, int] | None = None  # a multi-line array of inline tables

    def scan(self, text: str) -> Lines:
        in_string = False
        for number, line in enumerate(text.splitlines(), 1):
            if not in_string:
                self.line(number, line)
            if (line.count('"""') + line.count("'''")) % 2:
                in_string = not in_string
        return self.lines

    def line(self, number: int, line: str) -> None:
        header, key = _TOML_HEADER.match(line), _TOML_KEY.match(line)
        if header:
            self.header(number, header[1] == "[[", _toml_keys(header[2]))
        elif key:
            self.key(number, _toml_keys(key[1]), key[2].split("#")[0].strip())
        elif self.array:
            self.array_line(number, line.strip())

    def header(self, number: int, is_array: bool, keys: KeyPath) -> None:
        self.array = None
        if is_array:
            index = self.counts.get(keys, 0)
            self.counts[keys] = index + 1
            keys = (*keys, str(index))
        self.table = keys
        self.note(keys, number)

    def key(self, number: int, keys: KeyPath, value: str) -> None:
        path = (*self.table, *keys)
        self.note(path, number)
        self.array = (path, 0) if value == "[" else None

    def array_line(self, number: int, text: str) -> None:
        assert self.array is not None
        path, index = self.array
        if text.startswith("{"):
            self.lines[(*path, str(index))] = number
            self.array = (path, index + 1)
        elif text.startswith("]"):
            self.array = None

    def note(self, path: KeyPath, number: int) -> None:
        for end in range(1, len(path)):
            self.lines.setdefault(path[:end], number)
        self.lines[path] = number


def _toml_keys(text: str) -> KeyPath:
    return tuple(_unquote(part) for part in _TOML_PARTS.findall(text))


def _unquote(part: str) -> str:
    if part.startswith("'"):
        return part[1:-1]
    if part.startswith('"'):
        try:
            return str(json.loads(part))
        except json.JSONDecodeError:
            return part[1:-1]
    return part


# --- validation ------------------------------------------------------------------------------

@dataclass
class _Checker:
    file: str
    root: Path
    lines: Lines

    def fail(self, path: KeyPath, message: str, hint: str | None = None) -> NoReturn:
        raise GasError(message, file=self.file, line=_nearest(self.lines, path), hint=hint)


Check = Callable[[_Checker, KeyPath, Any], Any]


def _dotted(path: KeyPath) -> str:
    return ".".join(path)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if value == "":
        return "an empty string"
    return "mapping" if isinstance(value, dict) else type(value).__name__


def _expect(ck: _Checker, path: KeyPath, what: str, got: Any) -> NoReturn:
    ck.fail(path, f"{_dotted(path)}: expected {what}, got {got}")


def _suggest(word: str, choices: Iterable[str]) -> str | None:
    import difflib  # only for a mistake

    matches = difflib.get_close_matches(word, list(choices), n=3)
    if not matches:
        return None
    # difflib alone prefers 'format' over 'from' for 'form'; a swap is one edit.
    return f"did you mean '{min(matches, key=lambda m: _distance(word, m))}'?"


def _distance(a: str, b: str) -> int:
    """Edit distance where swapping two neighbours counts as one edit."""
    before: list[int] = []
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        row = [i]
        for j, cb in enumerate(b, 1):
            cost = min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (ca != cb))
            if before and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                cost = min(cost, before[j - 2] + 1)
            row.append(cost)
        before, prev = prev, row
    return prev[-1]


def _check_keys(ck: _Checker, path: KeyPath, mapping: dict[str, Any],
                allowed: Iterable[str]) -> None:
    allowed = list(allowed)
    for key in mapping:
        if key not in allowed:
            hint = _suggest(key, allowed) or f"allowed keys: {', '.join(allowed)}"
            ck.fail((*path, key), f"unknown key '{_dotted((*path, key))}'", hint)


def _as_mapping(ck: _Checker, path: KeyPath, value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        _expect(ck, path, "a mapping", _kind(value))
    return value


def _as_text(ck: _Checker, path: KeyPath, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        _expect(ck, path, "a non-empty string", _kind(value))
    return value


def _as_list(ck: _Checker, path: KeyPath, value: Any) -> list[Any]:
    if not isinstance(value, list):
        _expect(ck, path, "a list", _kind(value))
    return value


def _as_str_list(ck: _Checker, path: KeyPath, value: Any) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        _expect(ck, path, "a list of strings", _kind(value))
    return [_as_text(ck, (*path, str(i)), item) for i, item in enumerate(value)]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _as_int(ck: _Checker, path: KeyPath, value: Any, minimum: int = 1) -> int:
    what = f"an integer >= {minimum}"
    if isinstance(value, bool) or not isinstance(value, int):
        _expect(ck, path, what, _kind(value))
    if value < minimum:
        _expect(ck, path, what, value)
    return value


def _as_number(ck: _Checker, path: KeyPath, value: Any, *, positive: bool) -> float:
    what = "a number > 0" if positive else "a number >= 0"
    if not _is_number(value):
        _expect(ck, path, what, _kind(value))
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        _expect(ck, path, what, value)
    return float(value)


def _as_choice(ck: _Checker, path: KeyPath, value: Any, choices: tuple[str, ...]) -> str:
    if isinstance(value, str) and value in choices:
        return value
    ck.fail(path, f"{_dotted(path)}: expected one of {', '.join(choices)}, got {value!r}",
            _suggest(str(value), choices))


def _as_template(ck: _Checker, path: KeyPath, value: Any) -> str:
    text = _as_text(ck, path, value)
    if templating.verbatim(text):  # nothing to check, nor jinja2 to import
        return text
    from jinja2 import TemplateSyntaxError

    try:
        templating.environment().parse(text)
    except TemplateSyntaxError as e:
        ck.fail(path, f"{_dotted(path)}: bad template: {e.message or e}")
    return text


def _as_safe_name(ck: _Checker, path: KeyPath, value: Any, what: str) -> str:
    name = _as_text(ck, path, value)
    if SAFE_NAME.fullmatch(name) and ".." not in name and not name.endswith((".", ".lock")):
        return name
    ck.fail(path, f"{what} '{name}' is not safe for branch names", SAFE_NAME_HINT)


def _known_runners() -> list[str]:
    try:
        from gastown.runners import runner_names
    except ImportError:
        return list(FALLBACK_RUNNERS)
    return sorted(runner_names())


def _as_runner(ck: _Checker, path: KeyPath, value: Any) -> str:
    name = _as_text(ck, path, value)
    if name in FALLBACK_RUNNERS:  # built in: no need to look for plugins (importlib.metadata)
        return name
    known = _known_runners()
    if name not in known:
        hint = " ".join(filter(None, [_suggest(name, known), f"known: {', '.join(known)}"]))
        ck.fail(path, f"{_dotted(path)}: unknown runner '{name}'", hint)
    return name


def _as_prompt(ck: _Checker, path: KeyPath, value: Any) -> str:
    text = _as_text(ck, path, value)
    if not (ck.root / text).is_file():
        ck.fail(path, f"{_dotted(path)}: file '{text}' not found",
                "prompt paths are relative to the repository root")
    return text


def _as_env(ck: _Checker, path: KeyPath, value: Any) -> dict[str, str]:
    env = _as_mapping(ck, path, value)
    for name in env:
        if not _ENV_NAME.fullmatch(name):
            ck.fail((*path, name), f"{_dotted(path)}: '{name}' is not a valid variable name")
    return {name: _env_value(ck, (*path, name), v) for name, v in env.items()}


def _env_value(ck: _Checker, path: KeyPath, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    _expect(ck, path, "a string", _kind(value))


def _nullable(check: Check) -> Check:
    """`key: null` in a Gasfile means "not set", as leaving the key out does."""
    def checked(ck: _Checker, path: KeyPath, value: Any) -> Any:
        return None if value is None else check(ck, path, value)
    return checked


_ROLE_CHECKS: dict[str, Check] = {
    "runner": _nullable(_as_runner),
    "model": _nullable(_as_text),
    "prompt": _nullable(_as_prompt),
    "checks": _as_str_list,
    "max_attempts": _as_int,
    "env": _as_env,
    "timeout": _nullable(partial(_as_number, positive=True)),
    "stall": _nullable(partial(_as_number, positive=True)),
    "max_turns": _nullable(_as_int),
    "args": _as_str_list,
}
_REFINERY_CHECKS: dict[str, Check] = {
    **_ROLE_CHECKS,
    "ci": _nullable(_as_text),
    "strategy": partial(_as_choice, choices=STRATEGIES),
    "batch": _as_int,
}
_PROJECT_CHECKS: dict[str, Check] = {
    "base": _as_text, "into": _as_text, "ledger": _as_text, "parallel": _as_int,
}
_BUDGET_KEYS = ("usd", "per_bead_usd")
_TOP_KEYS = ("version", "project", "roles", "backlogs", "budget", "prices")
_BACKLOG_KEYS = (*SOURCE_KINDS, "id", "title", "run", "tags", "needs", "roles", "format",
                 "description")


def _checked(ck: _Checker, path: KeyPath, value: Any, checks: dict[str, Check]) -> dict[str, Any]:
    """A mapping whose keys all appear in `checks`, each value passed through its check."""
    raw = _as_mapping(ck, path, value)
    _check_keys(ck, path, raw, checks)
    return {key: checks[key](ck, (*path, key), v) for key, v in raw.items()}


def _build(ck: _Checker, path: Path, data: Any) -> Gasfile:
    if data is not None and not isinstance(data, dict):
        ck.fail((), f"top level: expected a mapping, got {_kind(data)}")
    doc = data or {}
    version = _version(ck, doc.get("version", 1))
    _check_keys(ck, (), doc, _TOP_KEYS)
    project = Project(**_checked(ck, ("project",), doc.get("project"), _PROJECT_CHECKS))
    return Gasfile(path=path, root=ck.root, version=version, project=project,
                   roles=_roles(ck, doc.get("roles")), backlogs=_backlogs(ck, doc),
                   budget=_budget(ck, doc.get("budget")), prices=_prices(ck, doc.get("prices")),
                   lines=ck.lines)


def _version(ck: _Checker, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        _expect(ck, ("version",), "an integer", _kind(value))
    if value != 1:
        ck.fail(("version",), f"version: unsupported version {value}",
                "this gastown reads version 1")
    return value


def _prices(ck: _Checker, value: Any) -> dict[str, dict[str, float]]:
    checks: dict[str, Check] = dict.fromkeys(("input", "output"),
                                              partial(_as_number, positive=False))
    raw = _as_mapping(ck, ("prices",), value)
    return {model: _checked(ck, ("prices", model), per, checks) for model, per in raw.items()}


def _budget(ck: _Checker, value: Any) -> dict[str, float]:
    checks: dict[str, Check] = dict.fromkeys(_BUDGET_KEYS, partial(_as_number, positive=False))
    return _checked(ck, ("budget",), value, checks)


def _role_overrides(ck: _Checker, path: KeyPath, value: Any) -> dict[str, dict[str, Any]]:
    raw = _as_mapping(ck, path, value)
    _check_keys(ck, path, raw, ROLE_NAMES)
    return {role: _checked(ck, (*path, role), settings,
                           _REFINERY_CHECKS if role == "refinery" else _ROLE_CHECKS)
            for role, settings in raw.items()}


def _roles(ck: _Checker, value: Any) -> dict[str, dict[str, Any]]:
    given = _role_overrides(ck, ("roles",), value)
    return {role: {**_role_defaults(ck.root, role), **given.get(role, {})} for role in ROLE_NAMES}


def _role_defaults(root: Path, role: str) -> dict[str, Any]:
    if role == "refinery":
        return {"ci": None, "strategy": "merge", "batch": 1}
    prompt = f"templates/prompts/{role}.md.j2"
    return {
        "runner": "command" if role == "polecat" else None,
        "checks": [],
        "max_attempts": 2 if role == "polecat" else 1,
        "env": {},
        "prompt": prompt if (root / prompt).is_file() else None,
    }


def _backlogs(ck: _Checker, doc: dict[str, Any]) -> dict[str, Backlog]:
    if "backlogs" not in doc:
        ck.fail((), "missing required key 'backlogs'",
                "add a 'backlogs' mapping with at least one backlog")
    raw = _as_mapping(ck, ("backlogs",), doc["backlogs"])
    if not raw:
        ck.fail(("backlogs",), "backlogs: expected at least one backlog")
    return {name: _backlog(ck, name, spec) for name, spec in raw.items()}


_SOURCE_CHECKS: dict[str, Check] = {
    "from": _as_text, "items": _as_list, "glob": _as_text, "from_command": _as_text,
}
_SOURCE_HINT = ("from: a JSON/YAML/JSONL/SARIF file; items: an inline list; "
                "glob: a file pattern; from_command: a command printing JSON")


def _backlog(ck: _Checker, name: str, value: Any) -> Backlog:
    path = ("backlogs", name)
    _as_safe_name(ck, path, name, "backlog name")
    spec = _as_mapping(ck, path, value)
    _check_keys(ck, path, spec, _BACKLOG_KEYS)
    kind = _source_kind(ck, path, spec)
    source = _SOURCE_CHECKS[kind](ck, (*path, kind), spec[kind])
    item_lines = ([ck.lines.get((*path, "items", str(i))) for i in range(len(source))]
                  if kind == "items" else [])
    return Backlog(name=name, kind=kind, source=source, **_backlog_fields(ck, path, spec),
                   format=_format(ck, path, spec, kind), line=ck.lines.get(path),
                   item_lines=item_lines)


def _backlog_fields(ck: _Checker, path: KeyPath, spec: dict[str, Any]) -> dict[str, Any]:
    fields = {key: _optional(ck, path, spec, key, _as_template) for key in ("id", "title", "run")}
    return {
        **fields,
        "tags": _tags(ck, path, spec),
        "needs": _optional(ck, path, spec, "needs", _as_str_list) or [],
        "roles": _role_overrides(ck, (*path, "roles"), spec.get("roles")),
        "description": _optional(ck, path, spec, "description", _as_text),
    }


def _tags(ck: _Checker, path: KeyPath, spec: dict[str, Any]) -> list[str]:
    tags = _optional(ck, path, spec, "tags", _as_str_list) or []
    what = f"{_dotted(path)}.tags: tag"
    return [_as_safe_name(ck, (*path, "tags", str(i)), tag, what) for i, tag in enumerate(tags)]


def _optional(ck: _Checker, path: KeyPath, spec: dict[str, Any], key: str, check: Check) -> Any:
    return check(ck, (*path, key), spec[key]) if key in spec else None


def _source_kind(ck: _Checker, path: KeyPath, spec: dict[str, Any]) -> str:
    kinds = [key for key in spec if key in SOURCE_KINDS]
    if not kinds:
        ck.fail(path, f"{_dotted(path)}: needs one of {', '.join(SOURCE_KINDS)}", _SOURCE_HINT)
    if len(kinds) > 1:
        ck.fail((*path, kinds[1]), f"{_dotted(path)}: has both '{kinds[0]}' and '{kinds[1]}'; "
                "pick one")
    return kinds[0]


def _format(ck: _Checker, path: KeyPath, spec: dict[str, Any], kind: str) -> str | None:
    fmt = _optional(ck, path, spec, "format", partial(_as_choice, choices=FORMATS))
    if fmt is not None and kind != "from":
        ck.fail((*path, "format"), f"{_dotted(path)}.format: only applies to 'from' backlogs")
    return fmt
