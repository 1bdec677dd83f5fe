"""Parse YAML into plain Python values while remembering where each value stood.

Editors fix what they can find: every validation error names `file:line:col`.
PyYAML's composer keeps a mark on every node, so we build the Python values
from the node tree ourselves and record the mark of each value (and each
mapping key) under its path, e.g. ``("items", 3, "url")``.

Input is bounded before anything is built: the text by `MAX_CHARACTERS`, and the
number of values after alias expansion by `MAX_VALUES`. A "billion laughs" file of
a few KB would otherwise expand into gigabytes (every alias is built again).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

Path = tuple[str | int, ...]

#: A real campaign file is a few KB; a year of daily items with bodies stays below this.
MAX_CHARACTERS = 512_000
#: Values (scalars and collections) after alias expansion; the sample week has ~200.
MAX_VALUES = 100_000


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


def _position(mark: Any) -> Position:
    """From a `yaml.Mark`, or libyaml's mark of the same shape."""
    return Position(mark.line + 1, mark.column + 1)


class _Builder:
    def __init__(self) -> None:
        self.document = Document(value=None)
        # A SafeLoader only for its scalar constructors (dates, ints, bools, nulls).
        self._constructor = yaml.SafeLoader("")
        self._open: set[int] = set()  #: ids of the collections being built (alias loops)

    def build(self, node: yaml.Node, path: Path) -> Any:
        self.document.values[path] = _position(node.start_mark)
        if id(node) in self._open:
            # `&a [*a]`: an alias to a collection that contains it would never end.
            self._problem(path, node, "an alias refers to the collection it is in; remove it")
            return None
        if isinstance(node, yaml.MappingNode | yaml.SequenceNode):
            self._open.add(id(node))
            try:
                if isinstance(node, yaml.MappingNode):
                    return self._mapping(node, path)
                return [self.build(child, (*path, i)) for i, child in enumerate(node.value)]
            finally:
                self._open.discard(id(node))
        return self._scalar(node, path)

    def _scalar(self, node: yaml.Node, path: Path) -> Any:
        """The scalar's value; a tag it cannot have (`!!int x`, `!!timestamp 2019-99-99`,
        `!!python/…`) is a problem at its position, and the text is kept as a string."""
        try:
            return self._constructor.construct_object(node, deep=True)
        except yaml.MarkedYAMLError as error:
            message = error.problem or "cannot read this value"
        except (ValueError, TypeError, AttributeError, IndexError, OverflowError):
            message = f"the value cannot be read as {node.tag.rpartition(':')[2]!s}"
        self._problem(path, node, f"{message}; remove the tag or quote the value")
        return node.value if isinstance(node.value, str) else None

    def _problem(self, path: Path, node: yaml.Node, message: str) -> None:
        self.document.problems.append((path, _position(node.start_mark), message))

    def _mapping(self, node: yaml.MappingNode, path: Path) -> dict[Any, Any]:
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = (
                self._scalar(key_node, (*path, "<key>"))
                if isinstance(key_node, yaml.ScalarNode)
                else f"<{key_node.tag.rpartition(':')[2]}>"
            )
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


def _check_expansion(text: str) -> None:
    """Count the values the document expands to, from the parser's events alone.

    Aliases are counted with the size of their anchor, so the count is what
    building would produce, computed in one pass and constant memory per anchor.
    The error points at the alias that crosses the limit.
    """
    # libyaml counts a 500 KB file in 0.1 s where the pure-Python parser needs 2 s; the
    # pure one stays the fallback (no libyaml, or a text libyaml refuses) and the judge of
    # syntax errors, which `compose` reports afterwards.
    try:
        _count_values(text, getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError:
        _count_values(text, yaml.SafeLoader)


def _count_values(text: str, loader: Any) -> None:
    sizes: dict[str, int] = {}  #: expanded size of every finished anchored node
    open_: list[tuple[str | None, int]] = []  #: (anchor, count before it) per open collection
    total = 0
    for event in yaml.parse(text, Loader=loader):
        if isinstance(event, yaml.AliasEvent):
            # An alias to a collection still open (a loop) is reported by the builder.
            total += sizes.get(event.anchor or "", 1)
            if total > MAX_VALUES:
                raise YamlSyntaxError(
                    _position(event.start_mark),
                    f"the alias *{event.anchor} makes the file expand to more than "
                    f"{MAX_VALUES:,} values; write the values out instead of aliasing them",
                )
        elif isinstance(event, yaml.ScalarEvent):
            total += 1
            if event.anchor is not None:
                sizes[event.anchor] = 1
        elif isinstance(event, yaml.CollectionStartEvent):
            open_.append((event.anchor, total))
            total += 1
        elif isinstance(event, yaml.CollectionEndEvent):
            anchor, before = open_.pop()
            if anchor is not None:
                sizes[anchor] = total - before
        if total > MAX_VALUES:
            raise YamlSyntaxError(
                _position(event.start_mark),
                f"the file has more than {MAX_VALUES:,} values; a campaign file needs far fewer",
            )


def parse(text: str) -> Document:
    """Parse one YAML document; raise `YamlSyntaxError` with line and column if it is not YAML,
    or if it is larger than `MAX_CHARACTERS` or expands to more than `MAX_VALUES` values."""
    if len(text) > MAX_CHARACTERS:
        before = text[:MAX_CHARACTERS]
        raise YamlSyntaxError(
            Position(before.count("\n") + 1, len(before.rpartition("\n")[2]) + 1),
            f"the file is longer than {MAX_CHARACTERS:,} characters; "
            "a campaign file needs far less (is this the right file?)",
        )
    try:
        _check_expansion(text)
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        position = _position(mark) if mark else Position(1, 1)
        message = " ".join(part for part in (error.context, error.problem) if part)
        raise YamlSyntaxError(position, f"YAML syntax error: {message}") from None
    except yaml.reader.ReaderError as error:
        # A control character: the reader gives a character offset, not a line.
        before = text[: error.position]
        position = Position(before.count("\n") + 1, len(before.rpartition("\n")[2]) + 1)
        raise YamlSyntaxError(
            position,
            f"YAML syntax error: the character U+{error.character:04X} is not allowed; remove it",
        ) from None
    except yaml.YAMLError as error:
        raise YamlSyntaxError(Position(1, 1), f"YAML syntax error: {error}") from None
    except RecursionError:
        raise YamlSyntaxError(Position(1, 1), "YAML nested too deeply") from None
    builder = _Builder()
    try:
        builder.document.value = None if node is None else builder.build(node, ())
    except RecursionError:
        raise YamlSyntaxError(Position(1, 1), "YAML nested too deeply") from None
    return builder.document
