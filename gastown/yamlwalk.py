"""YAML read into plain values with the line of every key and list item: the Gasfile's
parser (errors then name the line), imported only when a YAML file is parsed (PyYAML costs a
build about 15 ms to import)."""
from __future__ import annotations

from typing import Any

import yaml

from gastown.errors import GasError

KeyPath = tuple[str, ...]
Lines = dict[KeyPath, int]


def walk(text: str, file: str) -> tuple[Any, Lines]:
    """The document's value and each key's line; GasError (naming `file`) on bad YAML."""
    return _YamlWalker(text, file).document()


def yaml_problem(error: yaml.YAMLError) -> tuple[str, int | None]:
    """A YAML error's one-line problem and 1-based line, where it has them."""
    mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    return problem, mark.line + 1 if mark else None


class _YamlWalker:
    """Builds plain Python values from a composed YAML tree, noting each key's line."""

    def __init__(self, text: str, file: str) -> None:
        self.loader = yaml.SafeLoader(text)
        self.file = file
        self.lines: Lines = {}
        self.open: set[int] = set()  # collections being walked, to stop recursive aliases

    def document(self) -> tuple[Any, Lines]:
        try:
            node = self.loader.get_single_node()
            return (self.walk(node, ()) if node is not None else None), self.lines
        except yaml.YAMLError as e:
            problem, line = yaml_problem(e)
            raise GasError(f"invalid YAML: {problem}", file=self.file, line=line) from None
        finally:
            self.loader.dispose()

    def walk(self, node: yaml.Node, path: KeyPath) -> Any:
        if isinstance(node, yaml.ScalarNode):
            return self.loader.construct_object(node, deep=True)
        if id(node) in self.open:
            raise GasError("an alias refers to its own anchor", file=self.file,
                           line=node.start_mark.line + 1)
        self.open.add(id(node))
        try:
            return self.collection(node, path)
        finally:
            self.open.discard(id(node))

    def collection(self, node: yaml.Node, path: KeyPath) -> Any:
        if isinstance(node, yaml.MappingNode):
            return self.mapping(node, path)
        return [self.item(child, (*path, str(i))) for i, child in enumerate(node.value)]

    def item(self, node: yaml.Node, path: KeyPath) -> Any:
        self.lines[path] = node.start_mark.line + 1
        return self.walk(node, path)

    def mapping(self, node: yaml.MappingNode, path: KeyPath) -> dict[str, Any]:
        self.reject_duplicates(node, path)
        self.loader.flatten_mapping(node)
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = self.key(key_node)
            self.lines[(*path, key)] = key_node.start_mark.line + 1
            result[key] = self.walk(value_node, (*path, key))
        return result

    def key(self, node: yaml.Node) -> str:
        if isinstance(node, yaml.ScalarNode):
            return str(node.value)
        raise GasError("mapping keys must be plain strings", file=self.file,
                       line=node.start_mark.line + 1)

    def reject_duplicates(self, node: yaml.MappingNode, path: KeyPath) -> None:
        seen: dict[str, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key, line = self.key(key_node), key_node.start_mark.line + 1
            if key in seen:
                raise GasError(f"duplicate key '{'.'.join((*path, key))}'", file=self.file,
                               line=line, hint=f"first given on line {seen[key]}")
            seen[key] = line
