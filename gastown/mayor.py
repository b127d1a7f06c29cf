"""The Mayor: compiles a Gasfile into beads and their DAG, and says what it found."""
from __future__ import annotations

import contextlib
import fnmatch
import importlib.util
import json
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache, cached_property, partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gastown import __version__, git, templating
from gastown.backlogs import Item, load_items
from gastown.bead import Bead, RoleSpec
from gastown.digests import blake2b, sha1, sha256
from gastown.errors import GasError
from gastown.gasfile import Backlog, Gasfile
from gastown.graph import dag
from gastown.worktrees import state_dir

if TYPE_CHECKING:
    import networkx as nx
    from jinja2 import Template

Source = tuple[str, str | None]  # a prompt template: (shown name, text or None: unreadable)
Made = list[Any]  # what an item compiles to: [id, title, run, needs refs, fingerprint]
MEMO_SCHEMA = 1
SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
PROMPT_ROLES = ("polecat", "witness")


@dataclass
class Plan:
    gasfile: Gasfile
    beads: dict[str, Bead]
    origins: dict[str, str] = field(default_factory=dict)  # bead id -> "backlog 'x' item 3"
    memo: CompileMemo | None = field(default=None, repr=False)

    def remember(self) -> None:
        """Keep what this compile (and the Gasfile's parse) made for the next one (`gas
        build` does)."""
        self.gasfile.remember()
        if self.memo is not None:
            self.memo.save()

    @cached_property
    def graph(self) -> nx.DiGraph:
        """The DAG as networkx, for rendering: built (and networkx imported) on first use."""
        return dag.build(self.beads)

    def per_backlog(self) -> dict[str, int]:
        counts = dict.fromkeys(self.gasfile.backlogs, 0)
        for bead in self.beads.values():
            counts[bead.backlog] += 1
        return counts


def compile_plan(gasfile: Gasfile) -> Plan:
    """Every backlog item becomes a bead; needs become edges; cycles are refused."""
    compiler = _Compiler(gasfile, CompileMemo(memo_path(gasfile)))
    for backlog in gasfile.backlogs.values():
        for index, item in enumerate(load_items(backlog, gasfile)):
            compiler.add(backlog, item, index)
    compiler.resolve_needs()
    dag.check_acyclic(compiler.beads, file=compiler.shown)
    return Plan(gasfile, compiler.beads, compiler.origins, compiler.memo)


class CompileMemo:
    """What earlier compiles made of each backlog item (id, title, run, needs, fingerprint),
    by a digest of all that went into it (see _Compiler._memo_key): an item whose inputs did
    not change is not rendered again, and its prompts only when the bead runs. Rendering is
    a pure function of those inputs. A cache only: unreadable or malformed, it is ignored."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.known = _read_memo(path)
        self.used: dict[str, Made] = {}

    def recall(self, key: str) -> Made | None:
        found = self.known.get(key)
        if found is None or not _well_made(found):
            return None
        self.used[key] = found
        return found

    def keep(self, key: str, made: Made) -> None:
        self.used[key] = made

    def save(self) -> None:
        """Write what this compile used (nothing when that is what was read)."""
        if self.path is None or self.used == self.known:
            return
        with contextlib.suppress(OSError):
            git.write_atomically(self.path, json.dumps({"schema": MEMO_SCHEMA, "made": self.used},
                                                    separators=(",", ":")))
            self.known = dict(self.used)


def memo_path(gasfile: Gasfile) -> Path:
    """Where what the beads of this Gasfile were compiled to is remembered."""
    name = sha1(str(gasfile.path).encode(errors="surrogatepass")).hexdigest()[:12]
    return state_dir(gasfile.root) / "cache" / f"compiled-{name}.json"


def _read_memo(path: Path | None) -> dict[str, Any]:
    try:
        data = json.loads(path.read_bytes()) if path is not None else None
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("schema") != MEMO_SCHEMA:
        return {}
    made = data.get("made")
    return made if isinstance(made, dict) else {}


def _well_made(value: Any) -> bool:
    """[id, title, run, needs, fingerprint], as CompileMemo stores them."""
    if not isinstance(value, list) or len(value) != 5:
        return False
    bead_id, title, run, needs, fingerprint = value
    return (isinstance(bead_id, str) and isinstance(title, str) and isinstance(fingerprint, str)
            and (run is None or isinstance(run, str)) and isinstance(needs, list)
            and all(isinstance(n, str) for n in needs))


@cache
def _code_digest() -> str:
    """The code that compiles items: Python, Jinja2 and gastown's modules that render."""
    digest = sha256(f"{sys.version}|{_jinja_version()}|{MEMO_SCHEMA}".encode())
    for module in (templating, sys.modules[Bead.__module__], sys.modules[__name__]):
        try:
            digest.update(Path(str(module.__file__)).read_bytes())
        except OSError:  # not installed as files: its version has to do
            digest.update(f"{module.__name__} {__version__}".encode())
    return digest.hexdigest()


def _jinja_version() -> str:
    """Jinja2's version without importing it (a build whose templates are all verbatim never
    does): the bytes of its __init__, which holds __version__."""
    spec = importlib.util.find_spec("jinja2")
    try:
        return sha256(Path(str(spec.origin)).read_bytes()).hexdigest() if spec else ""
    except OSError:
        return ""


@dataclass
class _PerBacklog:
    """What every item of one backlog shares."""

    roles: dict[str, RoleSpec]
    sources: dict[str, Source]  # role -> its prompt template, for roles that have one
    seed: Any  # a hash of all of the backlog that goes into what an item makes (_memo_key)


class _Compiler:
    def __init__(self, gasfile: Gasfile, memo: CompileMemo) -> None:
        self.gasfile = gasfile
        self.shown = gasfile.path.name
        self.beads: dict[str, Bead] = {}
        self.origins: dict[str, str] = {}
        self.refs: dict[str, list[str]] = {}  # bead id -> raw needs refs
        self.templates: dict[str, Template] = {}
        self.texts: dict[str, str | None] = {}  # shown name -> prompt template text
        self.unreadable: dict[str, GasError] = {}  # shown name -> why it cannot be read
        self.backlogs: dict[str, _PerBacklog] = {}
        self.memo = memo

    def add(self, backlog: Backlog, item: Item, index: int) -> None:
        origin = f"backlog '{backlog.name}' item {index + 1}"
        line = item.line if item.file is None else backlog.line
        key = self._memo_key(backlog, item, index)
        made = self.memo.recall(key)
        if made is None:
            bead, refs = self._make(backlog, item, index, line, origin)
            self.memo.keep(key, [bead.id, bead.title, bead.run, refs, bead.fingerprint])
        else:
            bead_id, title, run, refs, fingerprint = made
            self._check_id(bead_id, line, origin)
            bead = self._bead(backlog, item, index, line, bead_id, title, run)
            bead.fixed = fingerprint
        self.refs[bead.id] = refs
        self.beads[bead.id] = bead
        self.origins[bead.id] = origin

    def _make(self, backlog: Backlog, item: Item, index: int, line: int | None,
              origin: str) -> tuple[Bead, list[str]]:
        """Render what the item makes and fingerprint it (which renders its prompts)."""
        ctx = {"item": item.data, "path": item.path, "backlog": backlog.name, "index": index}
        bead_id = self._bead_id(backlog, item, index, ctx, line, origin)
        title = self._title(backlog, item, ctx, line, bead_id, origin)
        bead = self._bead(backlog, item, index, line, bead_id, title,
                          self._run(backlog, item, ctx, line, origin))
        refs = self._needs(backlog, item, ctx, line, origin)
        bead.fix_fingerprint()
        return bead, refs

    def _bead(self, backlog: Backlog, item: Item, index: int, line: int | None,
              bead_id: str, title: str, run: str | None) -> Bead:
        per = self._per_backlog(backlog)
        return Bead(id=bead_id, title=title, backlog=backlog.name, item=item.data, run=run,
                    path=item.path,
                    tags=tuple(dict.fromkeys([*backlog.tags, *_inline(item, "tags")])),
                    index=index, line=line, roles=dict(per.roles),
                    prompter=partial(self._render_prompts, per.sources))

    def _per_backlog(self, backlog: Backlog) -> _PerBacklog:
        if backlog.name not in self.backlogs:
            roles = {r: self.gasfile.role(r, backlog) for r in ("polecat", "witness", "refinery")}
            sources = {}
            for role in PROMPT_ROLES:
                if (where := prompt_source(self.gasfile.root, roles[role])) is not None:
                    sources[role] = (where[1], self._text(*where))
            token = repr((_code_digest(), backlog.name, backlog.kind, backlog.id, backlog.title,
                          backlog.run, backlog.tags, backlog.needs,
                          [roles[r] for r in PROMPT_ROLES], sorted(
                              (role, shown, _digest(text)) for role, (shown, text)
                              in sources.items())))
            seed = blake2b(sha256(_utf8(token)).digest(), digest_size=20)
            self.backlogs[backlog.name] = _PerBacklog(roles, sources, seed)
        return self.backlogs[backlog.name]

    def _text(self, path: Path, shown: str) -> str | None:
        """A prompt template's text, read once: every bead renders what was read here. None
        when it cannot be read: rendering says why, as it did when it read the file."""
        if shown not in self.texts:
            try:
                self.texts[shown] = templating.read_file(path, shown=shown)
            except GasError as exc:
                self.texts[shown], self.unreadable[shown] = None, exc
        return self.texts[shown]

    def _memo_key(self, backlog: Backlog, item: Item, index: int) -> str:
        """A digest of all that goes into what an item makes: the backlog's templates and
        roles, the prompt templates' text, the code that renders, and the item (by repr, which
        tells 1 from "1" and a date from its text, unlike JSON)."""
        digest = self._per_backlog(backlog).seed.copy()
        digest.update(_utf8(repr((item.data, item.path, index))))
        return str(digest.hexdigest())

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

    def _render_prompts(self, sources: dict[str, Source], bead: Bead) -> dict[str, str]:
        context = prompt_context(bead, 1, None)
        return {role: templating.render_template(self._template(shown, text), context,
                                                 shown=shown)
                for role, (shown, text) in sources.items()}

    def _template(self, shown: str, text: str | None) -> Template:
        if text is None:
            raise self.unreadable[shown]
        if shown not in self.templates:
            self.templates[shown] = templating.compile_text(text, shown=shown)
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
        import difflib  # only for a mistake

        close = difflib.get_close_matches(ref, [*self.beads, *groups], n=3)
        raise GasError(
            f"bead {bead_id!r} needs {ref!r}, which is no bead, backlog or tag",
            file=self.shown, line=bead.line,
            hint=("did you mean " + " or ".join(repr(c) for c in close) + "?") if close
            else "needs name a backlog, a tag, a bead id or an id glob")


def _digest(text: str | None) -> str | None:
    return None if text is None else sha256(_utf8(text)).hexdigest()


def _utf8(text: str) -> bytes:
    return text.encode(errors="surrogatepass")  # YAML and JSON may give lone surrogates


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
    default = Path(__file__).parent / "data" / "prompts" / f"{spec.name}.md.j2"
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
