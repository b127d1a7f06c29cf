"""Items from each backlog source: a data file, an inline list, a glob, or a command's output."""
from __future__ import annotations

import json
import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from gastown.errors import GasError
from gastown.gasfile import FORMATS, Backlog, Gasfile
from gastown.git import clean_env

if TYPE_CHECKING:
    import yaml

COMMAND_TIMEOUT = 300.0
SKIPPED_DIRS = frozenset({".git", ".gastown"})
_SUFFIXES = {".json": "json", ".yaml": "yaml", ".yml": "yaml", ".jsonl": "jsonl",
             ".ndjson": "jsonl", ".sarif": "sarif"}
_LIST_HINT = 'give a list, or {"items": [...]}'
_OUTPUT_HINT = 'print a JSON list, {"items": [...]}, or one JSON value per line'


@dataclass(frozen=True)
class Item:
    data: Any
    path: str | None = None  # glob and SARIF items: the file, POSIX, relative to root
    line: int | None = None  # line in the backlog file or the Gasfile, where known
    file: str | None = None  # the backlog file it came from; None for inline/command/glob


def load_items(backlog: Backlog, gasfile: Gasfile) -> list[Item]:
    loaders = {"from": _from_file, "items": _inline, "glob": _globbed,
               "from_command": _from_command}
    return loaders[backlog.kind](backlog, gasfile)


def _config_error(backlog: Backlog, gasfile: Gasfile, message: str,
                  hint: str | None = None) -> GasError:
    """An error shown at the backlog's line in the Gasfile."""
    return GasError(f"backlog '{backlog.name}': {message}", file=gasfile.display,
                    line=backlog.line, hint=hint)


def _listed(data: Any) -> list[Any] | None:
    """The items of a top-level list or {"items": [...]}; None for anything else."""
    if isinstance(data, list):
        return data
    if isinstance(data, dict) and isinstance(data.get("items"), list):
        return data["items"]
    return None


def _a(value: Any) -> str:
    names = {dict: "a dict", str: "a string", int: "a number", float: "a number",
             bool: "a boolean", type(None): "nothing"}
    return names.get(type(value), f"a {type(value).__name__}")


# --- from: a data file -----------------------------------------------------------------------

@dataclass(frozen=True)
class _Source:
    backlog: Backlog
    gasfile: Gasfile
    rel: str

    def file_error(self, message: str, line: int | None) -> GasError:
        return GasError(f"backlog '{self.backlog.name}': {message}", file=self.rel, line=line)

    def top_list(self, data: Any) -> list[Any]:
        values = _listed(data)
        if values is None:
            raise _config_error(self.backlog, self.gasfile,
                                f"{self.rel} holds {_a(data)}, not a list", _LIST_HINT)
        return values


def _from_file(backlog: Backlog, gasfile: Gasfile) -> list[Item]:
    path = gasfile.root / backlog.source
    if not path.is_file():
        raise _config_error(backlog, gasfile, f"file '{backlog.source}' not found",
                            "'from' paths are relative to the repository root")
    src = _Source(backlog, gasfile, Path(backlog.source).as_posix())
    fmt = backlog.format or _format_of(src)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise src.file_error("not UTF-8 text", None) from None
    return _PARSERS[fmt](text, src)


def _format_of(src: _Source) -> str:
    name = src.rel.lower()
    if name.endswith(".sarif.json"):
        return "sarif"
    fmt = _SUFFIXES.get(Path(name).suffix)
    if fmt is None:
        raise _config_error(src.backlog, src.gasfile, f"cannot tell the format of '{src.rel}'",
                            f"name it .json, .yaml, .jsonl or .sarif, or set format: "
                            f"{'|'.join(FORMATS)}")
    return fmt


def _load_json(text: str, src: _Source) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise src.file_error(f"invalid JSON: {e.msg}", e.lineno) from None


def _json_items(text: str, src: _Source) -> list[Item]:
    data = _load_json(text, src)
    if _looks_like_sarif(data):
        return _sarif_items(data, src)
    return [Item(data=value, file=src.rel) for value in src.top_list(data)]


def _looks_like_sarif(data: Any) -> bool:
    if not isinstance(data, dict) or "runs" not in data:
        return False
    return any("sarif" in str(data.get(key, "")).lower() for key in ("$schema", "version"))


class _BadLine(Exception):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


def _json_lines(text: str) -> list[tuple[int, Any]]:
    """(line, value) for each non-blank line; only newlines split (JSON may hold U+2028)."""
    rows = []
    for number, line in enumerate(text.split("\n"), 1):
        if line.strip():
            try:
                rows.append((number, json.loads(line)))
            except json.JSONDecodeError as e:
                raise _BadLine(number, e.msg) from None
    return rows


def _jsonl_items(text: str, src: _Source) -> list[Item]:
    try:
        rows = _json_lines(text)
    except _BadLine as e:
        raise src.file_error(f"invalid JSON Lines: {e.message}", e.line) from None
    return [Item(data=value, line=line, file=src.rel) for line, value in rows]


def _yaml_items(text: str, src: _Source) -> list[Item]:
    import yaml  # only for a YAML backlog (a build without one never imports PyYAML)

    from gastown.yamlwalk import yaml_problem

    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as e:
        problem, line = yaml_problem(e)
        raise src.file_error(f"invalid YAML: {problem}", line) from None
    finally:
        loader.dispose()
    values = src.top_list(data)
    lines = _yaml_item_lines(node, len(values))
    return [Item(data=value, line=line, file=src.rel) for value, line in zip(values, lines,
                                                                            strict=True)]


def _yaml_item_lines(node: yaml.Node | None, count: int) -> list[int | None]:
    import yaml

    if isinstance(node, yaml.MappingNode):
        node = next((value for key, value in node.value
                     if isinstance(key, yaml.ScalarNode) and key.value == "items"), None)
    if not isinstance(node, yaml.SequenceNode) or len(node.value) != count:
        return [None] * count
    return [child.start_mark.line + 1 for child in node.value]


# --- SARIF: semgrep, CodeQL, bandit ---------------------------------------------------------

def _sarif_file_items(text: str, src: _Source) -> list[Item]:
    return _sarif_items(_load_json(text, src), src)


def _sarif_items(data: Any, src: _Source) -> list[Item]:
    runs = data.get("runs") if isinstance(data, dict) else None
    if not isinstance(runs, list):
        raise _config_error(src.backlog, src.gasfile, f"{src.rel} has no SARIF 'runs' list",
                            "give a SARIF 2.1 log, or set format: json")
    return [_sarif_item(result, _dig(run, "tool", "driver", "name"), src)
            for run in runs for result in (_dig(run, "results") or [])
            if isinstance(result, dict)]


def _sarif_item(result: dict[str, Any], tool: Any, src: _Source) -> Item:
    rule = result.get("ruleId") or _dig(result, "rule", "id")
    location = _dig(result, "locations", 0, "physicalLocation")
    file = _sarif_path(_dig(location, "artifactLocation", "uri"), src.gasfile.root)
    line = _dig(location, "region", "startLine")
    data = {
        "rule": rule,
        "message": _dig(result, "message", "text"),
        "file": file,
        "line": line,
        "level": result.get("level") or "warning",
        "tool": tool,
        "id": "-".join(str(part) for part in (rule, file, line) if part is not None),
    }
    return Item(data=data, path=file, file=src.rel)


def _dig(value: Any, *keys: str | int) -> Any:
    """value[k1][k2]... or None where the shape does not fit."""
    for key in keys:
        if isinstance(key, int):
            value = value[key] if isinstance(value, list) and len(value) > key else None
        else:
            value = value.get(key) if isinstance(value, dict) else None
    return value


def _sarif_path(uri: Any, root: Path) -> str | None:
    """A result's file relative to the root where it can be; SARIF allows file:// URIs."""
    if not isinstance(uri, str):
        return None
    parsed = urlparse(uri)
    if parsed.scheme != "file":
        return unquote(uri).removeprefix("./")
    path = Path(unquote(parsed.path))
    for base in (root, root.resolve()):
        if path.is_relative_to(base):
            return path.relative_to(base).as_posix()
    return path.as_posix()


_PARSERS = {"json": _json_items, "yaml": _yaml_items, "jsonl": _jsonl_items,
            "sarif": _sarif_file_items}


# --- items, glob, from_command ---------------------------------------------------------------

def _inline(backlog: Backlog, gasfile: Gasfile) -> list[Item]:
    lines = backlog.item_lines
    return [Item(data=value, line=lines[i] if i < len(lines) else None)
            for i, value in enumerate(backlog.source)]


def _globbed(backlog: Backlog, gasfile: Gasfile) -> list[Item]:
    root = gasfile.root
    try:
        matches = list(root.glob(backlog.source))
    except (ValueError, NotImplementedError) as e:
        raise _config_error(backlog, gasfile, f"bad glob '{backlog.source}': {e}") from None
    found = {m.relative_to(root) for m in matches if m.is_file()}
    rels = sorted(p.as_posix() for p in found if not SKIPPED_DIRS.intersection(p.parts))
    return [Item(data={"path": rel}, path=rel) for rel in rels]


def _from_command(backlog: Backlog, gasfile: Gasfile) -> list[Item]:
    command = backlog.source
    result = _run_shell(command, gasfile.root)
    if result is None:
        raise _config_error(backlog, gasfile,
                            f"command '{command}' timed out after {COMMAND_TIMEOUT:g} s")
    code, out, err = result
    if code != 0:
        raise _config_error(backlog, gasfile, f"command '{command}' exited {code}{_tail(err)}",
                            "run it in the repository root to see its whole output")
    return [Item(data=value) for value in _output_values(out, backlog, gasfile)]


def _run_shell(command: str, root: Path) -> tuple[int, str, str] | None:
    """Exit code, stdout and stderr; None on timeout (the whole process group is killed)."""
    with subprocess.Popen(command, shell=True, cwd=root, stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=clean_env(),
                          encoding="utf-8", errors="replace", start_new_session=True) as proc:
        try:
            out, err = proc.communicate(timeout=COMMAND_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            return None
    return proc.returncode, out, err


def _tail(stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    return ": " + " | ".join(lines[-3:])[-300:] if lines else ""


def _output_values(out: str, backlog: Backlog, gasfile: Gasfile) -> list[Any]:
    text = out.strip()
    values = _listed(_json_or_none(text)) if text else []
    if values is not None:
        return values
    try:
        return [value for _, value in _json_lines(text)]
    except _BadLine as e:
        raise _config_error(backlog, gasfile, f"command '{backlog.source}' printed neither a "
                            f"JSON list nor JSON Lines (line {e.line}: {e.message})",
                            _OUTPUT_HINT) from None


def _json_or_none(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return None
