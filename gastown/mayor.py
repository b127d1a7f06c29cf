"""The Mayor: compiles a Gasfile into beads and their DAG, and says what it found."""
from __future__ import annotations

import difflib
import fnmatch
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import networkx as nx
from jinja2 import Template

from gastown import templating
from gastown.backlogs import Item, load_items
from gastown.bead import Bead, RoleSpec
from gastown.errors import GasError
from gastown.gasfile import Backlog, Gasfile
from gastown.graph import dag

SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
PROMPT_ROLES = ("polecat", "witness")


@dataclass
class Plan:
    gasfile: Gasfile
    beads: dict[str, Bead]
    graph: nx.DiGraph
    origins: dict[str, str] = field(default_factory=dict)  # bead id -> "backlog 'x' item 3"

    def per_backlog(self) -> dict[str, int]:
        counts = dict.fromkeys(self.gasfile.backlogs, 0)
        for bead in self.beads.values():
            counts[bead.backlog] += 1
        return counts


def compile_plan(gasfile: Gasfile) -> Plan:
    """Every backlog item becomes a bead; needs become edges; cycles are refused."""
    compiler = _Compiler(gasfile)
    for backlog in gasfile.backlogs.values():
        for index, item in enumerate(load_items(backlog, gasfile)):
            compiler.add(backlog, item, index)
    compiler.resolve_needs()
    graph = dag.build(compiler.beads)
    dag.check_acyclic(graph, file=compiler.shown)
    return Plan(gasfile, compiler.beads, graph, compiler.origins)


class _Compiler:
    def __init__(self, gasfile: Gasfile) -> None:
        self.gasfile = gasfile
        self.shown = gasfile.path.name
        self.beads: dict[str, Bead] = {}
        self.origins: dict[str, str] = {}
        self.refs: dict[str, list[str]] = {}  # bead id -> raw needs refs
        self.templates: dict[str, Template] = {}

    def add(self, backlog: Backlog, item: Item, index: int) -> None:
        origin = f"backlog '{backlog.name}' item {index + 1}"
        line = item.line if item.file is None else backlog.line
        ctx = {"item": item.data, "path": item.path, "backlog": backlog.name, "index": index}
        bead_id = self._bead_id(backlog, item, index, ctx, line, origin)
        bead = Bead(
            id=bead_id, title=self._title(backlog, item, ctx, line, bead_id, origin),
            backlog=backlog.name, item=item.data, run=self._run(backlog, item, ctx, line, origin),
            path=item.path, tags=tuple(dict.fromkeys([*backlog.tags, *_inline(item, "tags")])),
            index=index, line=line,
            roles={r: self.gasfile.role(r, backlog) for r in ("polecat", "witness", "refinery")},
        )
        self.refs[bead_id] = self._needs(backlog, item, ctx, line, origin)
        bead.prompts = self._prompts(bead)
        bead.fix_fingerprint()
        self.beads[bead_id] = bead
        self.origins[bead_id] = origin

    def _render(self, text: str, ctx: dict[str, Any], line: int | None, what: str,
                *, shell: bool = False) -> str:
        return templating.render(text, ctx, what=what, file=self.shown, line=line, shell=shell)

    def _bead_id(self, backlog: Backlog, item: Item, index: int, ctx: dict[str, Any],
                 line: int | None, origin: str) -> str:
        if backlog.id:
            bead_id = self._render(backlog.id, ctx, backlog.line, f"{origin}: id").strip()
        else:
            bead_id = _default_id(backlog, item, index)
        self._check_id(bead_id, line, origin)
        return bead_id

    def _check_id(self, bead_id: str, line: int | None, origin: str) -> None:
        if not _safe(bead_id):
            raise GasError(f"{origin}: bead id {bead_id!r} is not a safe name", file=self.shown,
                           line=line, hint="ids may use letters, digits, '.', '_' and '-'; "
                           "use `| slug` in the id template, e.g. \"x-{{ item.file | slug }}\"")
        if bead_id in self.beads:
            raise GasError(f"duplicate bead id {bead_id!r}: {self.origins[bead_id]} and {origin}",
                           file=self.shown, line=line,
                           hint="make the `id` template unique per item, e.g. add {{ index }}")

    def _title(self, backlog: Backlog, item: Item, ctx: dict[str, Any], line: int | None,
               bead_id: str, origin: str) -> str:
        if backlog.title:
            return self._render(backlog.title, ctx, backlog.line, f"{origin}: title").strip()
        data = item.data
        if isinstance(data, dict) and data.get("title") is not None:
            return str(data["title"])
        if isinstance(data, str | int | float):
            return str(data)
        return item.path or bead_id

    def _run(self, backlog: Backlog, item: Item, ctx: dict[str, Any], line: int | None,
             origin: str) -> str | None:
        own = _inline(item, "run") if backlog.kind == "items" else []
        if own:
            return own[0]  # the Gasfile author's own text: config, not item data
        if backlog.run is None:
            return None
        return self._render(backlog.run, ctx, backlog.line, f"{origin}: run", shell=True)

    def _needs(self, backlog: Backlog, item: Item, ctx: dict[str, Any], line: int | None,
               origin: str) -> list[str]:
        rendered = [self._render(ref, ctx, backlog.line, f"{origin}: needs").strip()
                    for ref in backlog.needs]
        inline = _inline(item, "needs") if backlog.kind == "items" else []
        return [ref for ref in [*rendered, *inline] if ref]

    def _prompts(self, bead: Bead) -> dict[str, str]:
        prompts = {}
        for role in PROMPT_ROLES:
            source = prompt_source(self.gasfile.root, bead.roles[role])
            if source is not None:
                prompts[role] = templating.render_template(
                    self._template(*source), prompt_context(bead, 1, None), shown=source[1])
        return prompts

    def _template(self, path: Path, shown: str) -> Template:
        if shown not in self.templates:
            self.templates[shown] = templating.load_file(path, shown=shown)
        return self.templates[shown]

    def resolve_needs(self) -> None:
        groups = _groups(self.beads.values())
        for bead_id, refs in self.refs.items():
            needs: dict[str, None] = {}
            for ref in refs:
                for need in self._resolve(ref, bead_id, groups):
                    needs[need] = None
            self.beads[bead_id].needs = tuple(needs)

    def _resolve(self, ref: str, bead_id: str, groups: dict[str, list[str]]) -> list[str]:
        if ref in self.beads:
            return [ref]
        if ref in groups:
            return [b for b in groups[ref] if b != bead_id]
        if any(c in ref for c in "*?["):
            found = [b for b in self.beads if fnmatch.fnmatchcase(b, ref) and b != bead_id]
            if found:
                return found
        bead = self.beads[bead_id]
        close = difflib.get_close_matches(ref, [*self.beads, *groups], n=3)
        raise GasError(
            f"bead {bead_id!r} needs {ref!r}, which is no bead, backlog or tag",
            file=self.shown, line=bead.line,
            hint=("did you mean " + " or ".join(repr(c) for c in close) + "?") if close
            else "needs name a backlog, a tag, a bead id or an id glob")


def _groups(beads: Iterable[Bead]) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for bead in beads:
        for name in (bead.backlog, *bead.tags):
            groups.setdefault(name, []).append(bead.id)
    return groups


def _inline(item: Item, key: str) -> list[str]:
    """An inline item's own `run`/`needs`/`tags`, as a list of strings."""
    if not isinstance(item.data, dict) or item.data.get(key) is None:
        return []
    value = item.data[key]
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def _default_id(backlog: Backlog, item: Item, index: int) -> str:
    data = item.data
    if isinstance(data, dict) and data.get("id") is not None:
        own = str(data["id"])
        return own if backlog.kind == "items" else f"{backlog.name}-{templating.slug(own)}"
    if item.path is not None:
        return f"{backlog.name}-{templating.slug(item.path)}"
    return f"{backlog.name}-{index + 1}"


def _safe(bead_id: str) -> bool:
    return (bool(SAFE_ID.match(bead_id)) and ".." not in bead_id and len(bead_id) <= 200
            and not bead_id.endswith((".lock", ".")))


def prompt_context(bead: Bead, attempt: int, feedback: str | None,
                   diff: str = "") -> dict[str, Any]:
    """What a role prompt sees: the bead as data, the attempt, the last failure, the diff."""
    view = {"id": bead.id, "title": bead.title, "item": bead.item, "path": bead.path,
            "backlog": bead.backlog, "tags": list(bead.tags), "run": bead.run}
    return {"bead": view, "attempt": attempt, "feedback": feedback, "diff": diff}


def prompt_source(root: Path, spec: RoleSpec) -> tuple[Path, str] | None:
    """The role's prompt template (path, shown name): its own, or gastown's default for agents."""
    if spec.prompt:
        return root / spec.prompt, spec.prompt
    if spec.runner in (None, "command"):
        return None
    default = Path(str(resources.files("gastown") / "data" / "prompts" / f"{spec.name}.md.j2"))
    return default, f"(gastown default) {spec.name}.md.j2"


def render_prompt(plan_root: Path, bead: Bead, role: str, attempt: int,
                  feedback: str | None, diff: str = "") -> str | None:
    """The prompt for one attempt, with the failure that sent the bead back and the diff."""
    source = prompt_source(plan_root, bead.roles[role])
    if source is None:
        return None
    if attempt == 1 and feedback is None and not diff:
        return bead.prompts.get(role)
    template = templating.load_file(source[0], shown=source[1])
    return templating.render_template(template, prompt_context(bead, attempt, feedback, diff),
                                      shown=source[1])
