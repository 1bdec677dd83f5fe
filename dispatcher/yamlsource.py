"""Parse YAML into plain Python values while remembering where each value stood.

Editors fix what they can find: every validation error names `file:line:col`.
PyYAML's composer keeps a mark on every node, so we build the Python values
from the node tree ourselves and record the mark of each value (and each
mapping key) under its path, e.g. ``("items", 3, "url")``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

Path = tuple[str | int, ...]


@dataclass(frozen=True)
class Position:
    line: int  #: 1-based
    column: int  #: 1-based


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a file, printable as `file:line:col: path: message`."""

    file: str
    position: Position
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.position.line}:{self.position.column}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


@dataclass
class Document:
    """The parsed value plus the position of every value and key in it."""

    value: Any
    values: dict[Path, Position] = field(default_factory=dict)
    keys: dict[Path, Position] = field(default_factory=dict)
    problems: list[tuple[Path, Position, str]] = field(default_factory=list)

    def position(self, path: Path, *, key: bool = False) -> Position:
        """Where `path` stands; falls back to the nearest enclosing value that exists."""
        table = self.keys if key else self.values
        if path in table:
            return table[path]
        for cut in range(len(path) - 1, -1, -1):
            if path[:cut] in self.values:
                return self.values[path[:cut]]
        return Position(1, 1)


def format_path(path: Path) -> str:
    """``("items", 3, "url")`` -> ``items[3].url``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def _position(mark: yaml.Mark) -> Position:
    return Position(mark.line + 1, mark.column + 1)


class _Builder:
    def __init__(self) -> None:
        self.document = Document(value=None)
        # A SafeLoader only for its scalar constructors (dates, ints, bools, nulls).
        self._constructor = yaml.SafeLoader("")

    def build(self, node: yaml.Node, path: Path) -> Any:
        self.document.values[path] = _position(node.start_mark)
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(child, (*path, i)) for i, child in enumerate(node.value)]
        return self._constructor.construct_object(node, deep=True)

    def _mapping(self, node: yaml.MappingNode, path: Path) -> dict[Any, Any]:
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = self._constructor.construct_object(key_node, deep=True)
            if not isinstance(key, str | int):
                key = str(key)
            key_path = (*path, key)
            if key in result:
                first = self.document.keys[key_path]
                self.document.problems.append(
                    (
                        key_path,
                        _position(key_node.start_mark),
                        f"duplicate key {key!r} (first at line {first.line}); remove one",
                    )
                )
                continue
            self.document.keys[key_path] = _position(key_node.start_mark)
            result[key] = self.build(value_node, key_path)
        return result


class YamlSyntaxError(Exception):
    """The text is not YAML at all; carries the parser's own position."""

    def __init__(self, position: Position, message: str) -> None:
        super().__init__(message)
        self.position = position
        self.message = message


def parse(text: str) -> Document:
    """Parse one YAML document; raise `YamlSyntaxError` with line and column if it is not YAML."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        position = _position(mark) if mark else Position(1, 1)
        message = " ".join(part for part in (error.context, error.problem) if part)
        raise YamlSyntaxError(position, f"YAML syntax error: {message}") from None
    builder = _Builder()
    builder.document.value = None if node is None else builder.build(node, ())
    return builder.document
