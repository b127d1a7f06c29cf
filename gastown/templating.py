"""Sandboxed Jinja2: Gasfile templates see backlog fields only as data, never as template code."""
from __future__ import annotations

import re
import shlex
from functools import cache, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gastown.errors import GasError

if TYPE_CHECKING:  # jinja2 is imported where a template is compiled (a build whose templates
    # are all verbatim, or memoised, never pays for it)
    from jinja2 import Template
    from jinja2.sandbox import ImmutableSandboxedEnvironment


class ShellQuoted(str):
    """A string already quoted for a POSIX shell; the `run` finaliser leaves it alone."""


def slug(value: Any) -> str:
    """A path/branch-safe id fragment: `src/a b.js` -> `src-a-b-js`."""
    text = re.sub(r"[^A-Za-z0-9]+", "-", str(value)).strip("-").lower()
    return text or "x"


def shquote(value: Any) -> ShellQuoted:
    return value if isinstance(value, ShellQuoted) else ShellQuoted(shlex.quote(str(value)))


def _finalize_shell(value: Any) -> Any:
    # Anything a `run` template interpolates is quoted: item text never becomes shell syntax.
    return shquote(value) if value is not None else ""


def _environment(shell: bool) -> ImmutableSandboxedEnvironment:
    from jinja2 import StrictUndefined
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(
        undefined=StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        finalize=_finalize_shell if shell else None,
    )
    env.filters["slug"] = slug
    env.filters["shquote"] = shquote
    return env


@cache
def environment(shell: bool = False) -> ImmutableSandboxedEnvironment:
    return _environment(shell)


@lru_cache(maxsize=512)
def _compiled(text: str, shell: bool) -> Template:
    return environment(shell).from_string(text)


def render(text: str, context: dict[str, Any], *, what: str, file: str | Path | None = None,
           line: int | None = None, shell: bool = False) -> str:
    """Render one template string; errors become GasError naming `what` and where it is."""
    if verbatim(text):
        return text
    from jinja2 import TemplateError, TemplateSyntaxError

    try:
        return _compiled(text, shell).render(**context)
    except TemplateSyntaxError as exc:
        raise GasError(f"{what}: template error: {exc.message}", file=file,
                       line=_line(line, exc.lineno), hint=_TEMPLATE_HINT) from None
    except TemplateError as exc:
        raise GasError(f"{what}: {exc.message}", file=file, line=line,
                       hint="check the field names against the backlog item") from None


def load_file(path: Path, *, shown: str) -> Template:
    """Compile a prompt template file; syntax errors name the file and its line."""
    return compile_text(read_file(path, shown=shown), shown=shown)


def read_file(path: Path, *, shown: str) -> str:
    """A prompt template file's text."""
    try:
        return path.read_text()
    except OSError as exc:
        raise GasError(f"cannot read prompt template: {exc.strerror}", file=shown) from None


def compile_text(text: str, *, shown: str) -> Template:
    """Compile a prompt template's text; syntax errors name the file and its line."""
    from jinja2 import TemplateSyntaxError

    try:
        return environment(False).from_string(text)
    except TemplateSyntaxError as exc:
        raise GasError(f"template error: {exc.message}", file=shown, line=exc.lineno,
                       hint=_TEMPLATE_HINT) from None


def render_template(template: Template, context: dict[str, Any], *, shown: str) -> str:
    from jinja2 import TemplateError

    try:
        return template.render(**context)
    except TemplateError as exc:
        raise GasError(f"template error: {exc.message}", file=shown,
                       hint="prompt templates see `bead` (id, title, item, path, backlog)"
                            " and `attempt`, `feedback`") from None


def verbatim(text: str) -> bool:
    """True when Jinja would render `text` as it is: no `{` (so no tag, expression or
    comment) and no carriage return (which Jinja turns into a newline)."""
    return "{" not in text and "\r" not in text


def _line(base: int | None, offset: int | None) -> int | None:
    if base is None:
        return None
    return base + (offset or 1) - 1


_TEMPLATE_HINT = "Gasfile templates are Jinja2: {{ item.field }}, filters | slug, | shquote"
