"""Desk changes written back into the campaign file as the lines a person would have changed.

The file stays the source of truth (docs/desk.md, "Die Queue ändern"), so a change made on the
desk has to read in a diff like one made by hand: only its own lines differ. A full ruamel.yaml
round trip keeps an *untouched* file byte-identical, but not an edited one: a re-emitted folded
teaser lands on one line, and a moved or shortened item takes the blank line after it along
(ruamel keeps that blank line as a comment of the key before it). So ruamel.yaml only *locates*
here: its composer gives every key and value with line, column and style, and the edit splices
text lines. Every result is read back with the loader's own parser and must equal the intended
data exactly; an edit that cannot be written that way is refused, never written approximately.

Pure text functions (`apply_edit`) are separate from the file write (`edit_campaign_file`), so
the desk can preview a change with the same code that later writes it.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import difflib
import fcntl
import hashlib
import os
import re
import stat
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from dispatcher import i18n
from dispatcher.campaign.loading import load_campaign_text
from dispatcher.campaign.yamlsource import YamlSyntaxError, parse

__all__ = [
    "EDITABLE_FIELDS",
    "Edit",
    "EditConflict",
    "EditFields",
    "EditRefused",
    "EditResult",
    "Hold",
    "Move",
    "Pin",
    "Refusal",
    "Release",
    "RestoreItem",
    "action_name",
    "apply_edit",
    "edit_campaign_file",
    "version_of",
    "write_refusal",
]

EDITABLE_FIELDS: tuple[str, ...] = (
    "title",
    "teaser",
    "body",
    "tags",
    "image",
    "image_alt",
    "channels",
)
"""The item keys the desk's text form may change; id, url and the rest stay the file's."""

_REQUIRED = frozenset({"title", "teaser"})
_LIST_FIELDS = frozenset({"tags", "channels"})

#: Where a key that is new to an item goes: after the last key that comes before it here, so
#: `date:` lands after `tags:` and before `body:`, and `status:` at the end (after the
#: `translations:`), as in the sample.
_KEY_ORDER: tuple[str, ...] = (
    "id",
    "title",
    "teaser",
    "url",
    "initiative",
    "region",
    "image",
    "image_alt",
    "tags",
    "channels",
    "date",
    "body",
    "translations",
    "status",
)

#: Folded teasers are wrapped to the line length the sample file is written in.
_WIDTH = 100
#: Block scalars and block lists new to an item are indented by this much below their key.
_INDENT = 2


@dataclass(frozen=True)
class Hold:
    """Set the item's `status:` to `hold`: it is not planned any more."""

    item_id: str


@dataclass(frozen=True)
class Release:
    """Set the item's `status:` to `ready`."""

    item_id: str


@dataclass(frozen=True)
class Pin:
    """Set the item's `date:` (its fixed send day); `None` removes the key (unpin)."""

    item_id: str
    day: dt.date | None


@dataclass(frozen=True)
class Move:
    """Swap the item with the previous / next item without `date:` in `items:`.

    Unpinned ready items fill the free days in file order (planning.assign_items), so this
    is how the desk reorders the queue; pinned items keep their place in the file.
    """

    item_id: str
    direction: Literal["up", "down"]


@dataclass(frozen=True)
class EditFields:
    """New values for some of `EDITABLE_FIELDS`.

    None, "" and [] remove an optional key; title and teaser cannot be removed. A value equal
    to the file's changes nothing for that key. Browsers send CRLF from a textarea: line
    breaks are read as LF. Title, teaser, image and image_alt are trimmed (the loader trims
    title and teaser too); a body's final line breaks belong to the YAML block, not the text.
    A string for tags or channels is read as a comma-separated list.
    """

    item_id: str
    values: Mapping[str, str | list[str] | None]


@dataclass(frozen=True)
class RestoreItem:
    """The item as it was in `old_text` (an earlier whole file), at its current place.

    The undo of the desk's history: the lines of the item in `old_text` replace its lines now,
    so its keys, values, styles and inner comments are as they were then.
    """

    item_id: str
    old_text: str


Edit = Hold | Release | Pin | Move | EditFields | RestoreItem


def N_(message: str) -> str:  # noqa: N802 - gettext's usual name for "translated later"
    """Marks `message` for the `desk` catalogue; it is translated where it is shown."""
    return message


class Refusal(str):
    """Why the desk cannot make a change: the German text (a `str`, the catalogue's source
    language) that also knows its catalogue text and values.

    The reasons arise deep in the file handling, far from the request and its editor, so
    they travel untranslated; `in_language(lang)` is the editor's.
    """

    message: str  #: the German text with `%(name)s` placeholders, marked with `N_`
    values: dict[str, str]

    def __new__(cls, message: str, values: Mapping[str, str] | None = None) -> Refusal:
        filled = dict(values or {})
        self = super().__new__(cls, message % filled if filled else message)
        self.message, self.values = message, filled
        return self

    def in_language(self, lang: str) -> str:
        return i18n.gettext(lang, self.message, **self.values)


class EditRefused(Exception):  # noqa: N818 - the name is the agreed API
    """The edit makes no sense for this file; the desk shows `in_language(editor's)`."""

    def __init__(self, message: str | Refusal, **values: str) -> None:
        self.refusal = message if isinstance(message, Refusal) else Refusal(message, values)
        super().__init__(str(self.refusal))

    def in_language(self, lang: str) -> str:
        return self.refusal.in_language(lang)


class EditConflict(Exception):  # noqa: N818 - the name is the agreed API
    """The file changed since the form was made (its version differs); nothing was written."""

    def __init__(self, message: str, *, current_version: str) -> None:
        super().__init__(message)
        self.current_version = current_version


@dataclass(frozen=True)
class EditResult:
    """A written edit: both texts, their versions and the unified diff between them."""

    before: str
    after: str
    version_before: str
    version_after: str
    diff: str


def version_of(text: str) -> str:
    """The version a desk form carries: SHA-256 (hex) of the file's exact UTF-8 text."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def action_name(edit: Edit) -> str:
    """A short stable name for the history: hold, release, pin, unpin, move-up, … restore."""
    match edit:
        case Hold():
            return "hold"
        case Release():
            return "release"
        case Pin(day=None):
            return "unpin"
        case Pin():
            return "pin"
        case Move(direction=direction):
            return f"move-{direction}"
        case EditFields():
            return "edit"
        case RestoreItem():
            return "restore"


# --- where things are in the text ---------------------------------------------------------


@dataclass(frozen=True)
class _Key:
    name: str
    line: int  #: 0-based line of the key
    col: int  #: 0-based column of the key
    key_end: int  #: column right after the key's text
    value: Node
    end: int  #: exclusive: the line after the value's last line


@dataclass(frozen=True)
class _Item:
    id: str | None
    dash: int  #: the line with its `-`
    col: int  #: the column of its keys
    keys: tuple[_Key, ...]
    end: int  #: exclusive: the line after its last value
    own_start: int  #: its own comments directly above the `-` start here
    own_end: int  #: exclusive: after comments directly below it, indented as its keys

    def key(self, name: str) -> _Key | None:
        return next((k for k in self.keys if k.name == name), None)


@dataclass(frozen=True)
class _Layout:
    lines: list[str]  #: the text's lines, each with its line break
    eol: str  #: the line break new lines get: the file's
    items: tuple[_Item, ...]
    data: dict[str, Any]  #: the document as the loader reads it

    def index_of(self, item_id: str) -> int:
        for index, item in enumerate(self.items):
            if item.id == item_id:
                return index
        raise EditRefused(N_("Einen Beitrag „%(item)s“ gibt es in der Datei nicht."), item=item_id)


def _content(line: str) -> str:
    return line.rstrip("\r\n")


def _indent(line: str) -> int:
    content = _content(line)
    return len(content) - len(content.lstrip(" "))


def _is_blank(line: str) -> bool:
    return not _content(line).strip(" \t")


def _is_comment(line: str) -> bool:
    return _content(line).lstrip(" \t").startswith("#")


def _split_lines(text: str) -> list[str]:
    """Lines with their breaks. Only LF (with CRLF) ends a line: `str.splitlines` would also
    split at form feeds and the like, which YAML does not count as line breaks."""
    return re.findall(r"[^\n]*\n|[^\n]+\Z", text)


def _layout(text: str) -> _Layout:
    if re.search("[\x85\u2028\u2029]|\r(?!\n)", text):
        # YAML counts these as line breaks and Python's line splitting would too, but not
        # consistently with each other; the desk does not guess.
        raise EditRefused(
            N_(
                "Die Datei enthält ungewöhnliche Zeilenumbrüche (CR, NEL, U+2028/2029); "
                "bitte von Hand bearbeiten."
            )
        )
    try:
        document = parse(text)
    except YamlSyntaxError as error:
        where = f"{error.position.line}:{error.position.column}"
        raise EditRefused(
            N_(
                "Die Datei ist gerade kein gültiges YAML (%(where)s: %(problem)s); "
                "erst die Datei reparieren."
            ),
            where=where,
            problem=error.message,
        ) from None
    data = document.value
    if not isinstance(data, dict):
        raise EditRefused(N_("Die Datei hat keine Abschnitte campaign:, send: und items:."))
    try:
        # A new instance each time: one keeps state per document and is not thread-safe,
        # and the desk previews edits in worker threads.
        root = YAML(typ="rt").compose(text)
    except YAMLError as error:
        raise EditRefused(
            N_("Die Datei lässt sich nicht bearbeiten: %(error)s"), error=str(error)
        ) from None
    lines = _split_lines(text)
    eol = "\r\n" if "\r\n" in text else "\n"
    sequence, items_line = _items_node(root)
    if sequence is None:
        return _Layout(lines, eol, (), data)
    items: list[_Item] = []
    lower = items_line + 1  # comments above the first item start below `items:`
    for node in sequence.value:
        if not isinstance(node, MappingNode) or node.flow_style:
            raise EditRefused(
                N_(
                    "Die Einträge unter items: sind nicht als Blöcke (- id: …) geschrieben; "
                    "so kann der Schreibtisch sie nicht ändern."
                )
            )
        item = _item(node, lines, lower)
        items.append(item)
        lower = item.own_end
    raw_items = data.get("items")
    if not isinstance(raw_items, list) or len(raw_items) != len(items):
        raise EditRefused(N_("Die Liste items: lässt sich nicht eindeutig lesen."))
    return _Layout(lines, eol, tuple(items), data)


def _items_node(root: Node | None) -> tuple[SequenceNode | None, int]:
    """The block sequence under `items:` and the line of that key."""
    if not isinstance(root, MappingNode):
        return None, 0
    for key, value in root.value:
        if isinstance(key, ScalarNode) and key.value == "items":
            line = int(key.start_mark.line)
            if isinstance(value, SequenceNode) and not value.flow_style:
                return value, line
            if isinstance(value, SequenceNode) and value.value:
                raise EditRefused(
                    N_(
                        "items: ist als Flow-Liste ([…]) geschrieben; so kann der "
                        "Schreibtisch die Einträge nicht ändern."
                    )
                )
            return None, line
    return None, 0


def _item(node: MappingNode, lines: list[str], lower: int) -> _Item:
    keys: list[_Key] = []
    for key_node, value in node.value:
        if not isinstance(key_node, ScalarNode):
            raise EditRefused(
                N_("Ein Eintrag unter items: hat einen Schlüssel, der kein Text ist.")
            )
        line, col = key_node.start_mark.line, key_node.start_mark.column
        last = max(line, _last_line(value, lines, col))
        keys.append(_Key(str(key_node.value), line, col, key_node.end_mark.column, value, last + 1))
    first = node.start_mark.line
    col = node.start_mark.column
    dash = first
    if "-" not in _content(lines[first])[:col]:  # `-` alone on a line above the first key
        dash -= 1
        while dash > lower and not _content(lines[dash]).lstrip(" ").startswith("-"):
            dash -= 1
    end = max(k.end for k in keys) if keys else first + 1
    own_end = end
    while own_end < len(lines) and _is_comment(lines[own_end]) and _indent(lines[own_end]) >= col:
        own_end += 1
    own_start = dash
    while own_start - 1 >= lower and _is_comment(lines[own_start - 1]):
        own_start -= 1
    id_node = next((v for k, v in node.value if k.value == "id"), None)
    item_id = str(id_node.value) if isinstance(id_node, ScalarNode) else None
    return _Item(item_id, dash, col, tuple(keys), end, own_start, own_end)


def _last_line(node: Node, lines: list[str], parent_col: int) -> int:
    """The 0-based line of the value's last character; -1 for an empty value.

    Block scalars are measured from their lines: their end mark lies past the blank lines
    that follow them, and those are the file's, not the value's.
    """
    if isinstance(node, ScalarNode):
        if node.style in ("|", ">"):
            return _block_scalar_last(node, lines, parent_col)
        if node.style is None and node.value == "":
            return -1
        end = node.end_mark
        return int(end.line if end.column > 0 else end.line - 1)
    if isinstance(node, SequenceNode | MappingNode):
        if node.flow_style:
            return int(node.end_mark.line)
        col = int(node.start_mark.column)
        children: list[Node] = []
        for child in node.value:
            children.extend(child if isinstance(child, tuple) else (child,))
        return max((_last_line(child, lines, col) for child in children), default=-1)
    return int(node.end_mark.line)


_BLOCK_HEADER = re.compile(r"[|>](?:([1-9])([+-]?)|([+-]?)([1-9])?)")


def _block_scalar_last(node: ScalarNode, lines: list[str], parent_col: int) -> int:
    header_line = node.start_mark.line
    match = _BLOCK_HEADER.match(_content(lines[header_line]), node.start_mark.column)
    assert match is not None  # the parser found a block scalar here
    digit = match[1] or match[4]
    keep = (match[2] or match[3]) == "+"
    indent = parent_col + int(digit) if digit else None
    last = header_line
    last_any = header_line
    for number in range(header_line + 1, len(lines)):
        line = lines[number]
        if _is_blank(line):
            last_any = number
            continue
        width = _indent(line)
        if indent is None:
            if width <= parent_col:
                break
            indent = width
        if width < indent:
            break
        last = last_any = number
    return int(last_any if keep else last)


# --- writing values -----------------------------------------------------------------------


@dataclass(frozen=True)
class _Rendered:
    """A value as YAML text: `head` after `key: `, `body` the lines below (relative to the
    key's column), `loads_as` what the loader reads back."""

    head: str
    body: tuple[str, ...]
    loads_as: Any
    block_scalar: bool = False


def _printable(character: str) -> bool:
    """Whether YAML may hold the character as it is (else it must be escaped)."""
    return (
        "\x20" <= character <= "\x7e"
        or ("\xa0" <= character <= "\ud7ff" and character not in "\u2028\u2029")
        or ("\ue000" <= character <= "\ufffd" and character != "\ufeff")
        or character >= "\U00010000"
    )


_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r", "\x00": "\\0"}


def _double_quoted(value: str) -> str:
    out = ['"']
    for character in value:
        if character in _ESCAPES:
            out.append(_ESCAPES[character])
        elif _printable(character):
            out.append(character)
        elif character <= "\xff":
            out.append(f"\\x{ord(character):02x}")
        elif character <= "\uffff":
            out.append(f"\\u{ord(character):04x}")
        else:
            out.append(f"\\U{ord(character):08x}")
    out.append('"')
    return "".join(out)


def _single_quoted(value: str) -> str | None:
    if not all(_printable(c) for c in value):
        return None
    return "'" + value.replace("'", "''") + "'"


def _reads_as(head: str, body: Sequence[str], expected: Any) -> bool:
    """Whether `k: head` with `body` below reads back as exactly `expected` for the loader."""
    snippet = f"k: {head}\n" if head else "k:\n"
    snippet += "".join(f"{line}\n" for line in body)
    try:
        value = parse(snippet).value
    except YamlSyntaxError:
        return False
    return isinstance(value, dict) and list(value) == ["k"] and _same(value["k"], expected)


def _same(a: Any, b: Any) -> bool:
    """Equal and of the same type: the string "2019-04-02" is not the date 2019-04-02."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return bool(a == b)


def _plain(value: str, *, flow: bool = False) -> str | None:
    """The value unquoted, if it reads back as the same string (not a date, number, …)."""
    if not value or value != value.strip(" \t") or not all(_printable(c) for c in value):
        return None
    if flow:
        return value if _reads_as(f"[{value}]", (), [value]) else None
    return value if _reads_as(value, (), value) else None


@dataclass(frozen=True)
class _Style:
    """How the value being replaced was written."""

    kind: str  #: '"', "'", "plain", "|", ">", "flow", "block" (a block list) or "none"
    col: int  #: the key's column
    chomp: str = ""  #: a block scalar's "-", "" or "+"
    indent: int = _INDENT  #: a block's content (or list dash) column, relative to the key
    old_lines: tuple[str, ...] = ()  #: a block scalar's content lines, without indentation


def _style_of(key: _Key | None, item: _Item, lines: list[str]) -> _Style:
    if key is None:
        return _Style("none", item.col)
    node = key.value
    if isinstance(node, ScalarNode):
        if node.style in ('"', "'"):
            return _Style(str(node.style), key.col)
        if node.style in ("|", ">"):
            line = _content(lines[node.start_mark.line])
            header = _BLOCK_HEADER.match(line, node.start_mark.column)
            assert header is not None  # the parser found a block scalar here
            content = [_content(line) for line in lines[node.start_mark.line + 1 : key.end]]
            if digit := header[1] or header[4]:
                indent = int(digit)
            else:
                first = next((line for line in content if line.strip(" ")), "")
                indent = max(1, _indent(first) - key.col)
            return _Style(
                str(node.style),
                key.col,
                chomp="-" if (header[2] or header[3]) == "-" else "",
                indent=indent,
                old_lines=tuple(line[key.col + indent :] for line in content),
            )
        return _Style("plain", key.col)
    if isinstance(node, SequenceNode):
        if node.flow_style or not node.value:
            return _Style("flow", key.col)
        return _Style("block", key.col, indent=max(0, node.start_mark.column - key.col))
    return _Style("none", key.col)


def _render_text(field: str, value: str, style: _Style) -> _Rendered:
    """The first way to write `value` that keeps the old style and reads back exactly."""
    multiline = "\n" in value
    kinds: list[str]
    if style.kind in ('"', "'", "|", ">"):
        kinds = [style.kind]
    elif style.kind == "plain":
        kinds = ["plain"]
        if multiline and field == "teaser":
            kinds = [">"]
        elif multiline and field == "body":
            kinds = ["|"]
    else:  # a new key: as the sample writes it
        kinds = {"title": ['"'], "image_alt": ['"'], "teaser": [">"], "body": ["|"]}.get(
            field, ["plain"]
        )
    for kind in [*kinds, '"']:
        candidate = _candidate(kind, value, style)
        if candidate is not None and _reads_as(candidate.head, candidate.body, candidate.loads_as):
            return candidate
    raise AssertionError("a double-quoted string always reads back")  # pragma: no cover


def _candidate(kind: str, value: str, style: _Style) -> _Rendered | None:
    if kind == '"':
        return _Rendered(_double_quoted(value), (), value)
    if kind == "'":
        quoted = _single_quoted(value) if "\n" not in value else None
        return None if quoted is None else _Rendered(quoted, (), value)
    if kind == "plain":
        plain = _plain(value)
        return None if plain is None else _Rendered(plain, (), value)
    chomp = style.chomp if style.kind == kind else "-" if kind == ">" else ""
    indent = style.indent if style.kind in ("|", ">") else _INDENT
    if value.endswith("\n") or not value:
        return None
    if kind == ">":
        width = max(40, _WIDTH - style.col - indent)
        content = _folded(value, style.old_lines if style.kind == ">" else (), width)
    else:
        content = value.split("\n")
    if content is None:
        return None
    first = next((line for line in content if line), "")
    # A first line that starts with a blank needs the indentation said, not guessed.
    digit = str(indent) if first.startswith((" ", "\t")) else ""
    body = tuple(" " * indent + line if line else "" for line in content)
    loads_as = value if chomp == "-" else value + "\n"
    return _Rendered(f"{kind}{digit}{chomp}", body, loads_as, block_scalar=True)


_FOLD_POINT = re.compile(r"(?<=[^ \t]) (?=[^ \t])")


def _folded(value: str, old_lines: Sequence[str], width: int) -> list[str] | None:
    """The lines of a folded (`>`) block for `value`, keeping the old lines a change leaves.

    Within a paragraph, a line break reads as one space; a paragraph break is a blank line.
    The old lines before and after the changed words stay as they were, so a one-word change
    is a one-line diff, as an editor would make it.
    """
    paragraphs = value.split("\n")
    if any(p != p.strip(" \t") for p in paragraphs):
        return None  # leading blanks make a "more indented" line, which does not fold
    old_groups: list[list[str]] = [[]]
    for line in old_lines:
        if line:
            old_groups[-1].append(line)
        elif old_groups[-1]:
            old_groups.append([])
    old_groups = [group for group in old_groups if group]
    out: list[str] = []
    number = 0
    for index, paragraph in enumerate(paragraphs):
        if index:
            out.append("")
        if not paragraph:
            continue
        old = old_groups[number] if number < len(old_groups) else []
        number += 1
        out.extend(_fold_paragraph(paragraph, old, width))
    return out


def _fold_paragraph(paragraph: str, old: list[str], width: int) -> list[str]:
    if " ".join(old) == paragraph:
        return list(old)
    usable = [line for line in old if line and line == line.strip(" \t")]
    if usable != old:
        return _wrap(paragraph, width)
    rest = paragraph
    head: list[str] = []
    for line in old:
        if rest.startswith(line + " ") and _FOLD_POINT.match(rest, len(line)):
            head.append(line)
            rest = rest[len(line) + 1 :]
        else:
            break
    tail: list[str] = []
    for line in reversed(old[len(head) :]):
        cut = len(rest) - len(line) - 1
        if cut > 0 and rest.endswith(" " + line) and _FOLD_POINT.match(rest, cut):
            tail.insert(0, line)
            rest = rest[:cut]
        else:
            break
    lines = [*head, *_wrap(rest, width), *tail] if rest else [*head, *tail]
    return lines if " ".join(lines) == paragraph else _wrap(paragraph, width)


def _wrap(paragraph: str, width: int) -> list[str]:
    words = _FOLD_POINT.split(paragraph)
    lines = [words[0]]
    for word in words[1:]:
        if len(lines[-1]) + 1 + len(word) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return lines


def _render_list(values: list[str], style: _Style) -> _Rendered:
    if style.kind == "block":
        entries = []
        for value in values:
            plain = _plain(value)
            entries.append(" " * style.indent + "- " + (plain or _double_quoted(value)))
        rendered = _Rendered("", tuple(entries), list(values))
        if _reads_as(rendered.head, rendered.body, rendered.loads_as):
            return rendered
    items = [_plain(v, flow=True) or _double_quoted(v) for v in values]
    rendered = _Rendered("[" + ", ".join(items) + "]", (), list(values))
    if not _reads_as(rendered.head, rendered.body, rendered.loads_as):  # pragma: no cover
        raise AssertionError("a flow list of double-quoted strings always reads back")
    return rendered


def _render_scalar(value: str | dt.date, style: _Style) -> _Rendered:
    """Status and date: plain, unless the old value was quoted."""
    text = value.isoformat() if isinstance(value, dt.date) else value
    if style.kind == '"':
        return _Rendered(_double_quoted(text), (), text)
    if style.kind == "'":
        return _Rendered(f"'{text}'", (), text)
    return _Rendered(text, (), value)


# --- changing lines -----------------------------------------------------------------------


_Maker = Callable[[_Style], _Rendered | None]
"""Renders a key's new value in the style of the old one; None removes the key."""


def _with_eol(lines: Sequence[str], eol: str) -> list[str]:
    return [line + eol for line in lines]


def _set_key(text: str, item_id: str, name: str, make: _Maker) -> tuple[str, Any]:
    """The text with the item's key `name` set as `make` renders it, or removed (None).

    Returns the new text and what the loader reads for that key (`_ABSENT` when removed).
    """
    layout = _layout(text)
    item = layout.items[layout.index_of(item_id)]
    key = item.key(name)
    rendered = make(_style_of(key, item, layout.lines))
    lines = layout.lines
    if rendered is None:
        if key is None:
            return text, _ABSENT
        return "".join(_without_key(lines, item, key)), _ABSENT
    if key is None:
        at = _insert_at(item, name)
        new = _with_eol(
            [
                " " * item.col + f"{name}: {rendered.head}".rstrip(" "),
                *(" " * item.col + line if line else "" for line in rendered.body),
            ],
            layout.eol,
        )
        return "".join([*lines[:at], *new, *lines[at:]]), rendered.loads_as
    return "".join(_replaced(lines, key, rendered, layout.eol)), rendered.loads_as


class _Absent:
    def __repr__(self) -> str:
        return "<absent>"


_ABSENT: Any = _Absent()


def _insert_at(item: _Item, name: str) -> int:
    rank = _KEY_ORDER.index(name)
    before = [k for k in item.keys if k.name in _KEY_ORDER and _KEY_ORDER.index(k.name) < rank]
    anchor = before[-1] if before else item.keys[-1]
    return anchor.end


def _without_key(lines: list[str], item: _Item, key: _Key) -> list[str]:
    if not _content(lines[key.line])[: key.col].strip(" "):
        return [*lines[: key.line], *lines[key.end :]]
    # The key shares the line with the item's `-`: the next key moves up onto that line.
    following = [k for k in item.keys if k.line >= key.end]
    if not following:
        raise EditRefused(N_("Der einzige Schlüssel eines Eintrags kann nicht entfernt werden."))
    nxt = following[0]
    first = _content(lines[key.line])[: key.col] + lines[nxt.line][nxt.col :]
    return [*lines[: key.line], first, *lines[nxt.line + 1 :]]


def _replaced(lines: list[str], key: _Key, rendered: _Rendered, eol: str) -> list[str]:
    node = key.value
    line = lines[key.line]
    start = node.start_mark
    is_block = isinstance(node, ScalarNode) and node.style in ("|", ">")
    one_line = (
        isinstance(node, ScalarNode | SequenceNode)
        and not is_block
        and start.line == key.line
        and key.end == key.line + 1
        and not (isinstance(node, ScalarNode) and node.style is None and node.value == "")
    )
    if one_line and not rendered.body:
        # Only the value changes: a comment after it on the line stays.
        new = line[: start.column] + rendered.head + line[node.end_mark.column :]
        return [*lines[: key.line], new, *lines[key.line + 1 :]]
    body = _with_eol([line and " " * key.col + line for line in rendered.body], eol)
    if is_block and rendered.block_scalar and start.line == key.line:
        header = _BLOCK_HEADER.match(_content(line), start.column)
        assert header is not None
        new = line[: start.column] + rendered.head + line[header.end() :]
        return [*lines[: key.line], new, *body, *lines[key.end :]]
    first = _content(line)[: key.key_end] + ":" + (f" {rendered.head}" if rendered.head else "")
    return [*lines[: key.line], first + eol, *body, *lines[key.end :]]


# --- the edits ----------------------------------------------------------------------------


def apply_edit(text: str, edit: Edit) -> str:
    """The campaign file's text with `edit` made; the text itself when nothing changes.

    Pure: no file is read. Raises `EditRefused` (German) when the edit cannot be made: an
    unknown item, a move past the end of the queue, a required field emptied, a file the
    desk cannot edit safely. The result is not validated as a campaign (a pin onto a
    holiday is valid YAML); `edit_campaign_file` does that before writing.
    """
    if text and not text.endswith("\n"):
        # The last line gets a line break while lines move; it is taken off again at the end.
        return _chop(apply_edit(text + ("\r\n" if "\r\n" in text else "\n"), edit), text)
    layout = _layout(text)
    index = layout.index_of(edit.item_id)
    expected = copy.deepcopy(layout.data)
    item_data: dict[str, Any] = expected["items"][index]
    match edit:
        case Hold() | Release():
            status = "hold" if isinstance(edit, Hold) else "ready"
            if item_data.get("status", "ready") == status:
                return text
            new, loads_as = _set_key(
                text, edit.item_id, "status", lambda style: _render_scalar(status, style)
            )
            item_data["status"] = loads_as
        case Pin(day=day):
            new, loads_as = _set_key(
                text,
                edit.item_id,
                "date",
                lambda style: None if day is None else _render_scalar(day, style),
            )
            _put(item_data, "date", loads_as)
        case Move():
            new = _moved(layout, index, edit.direction)
            other = _move_partner(layout, index, edit.direction)
            items = expected["items"]
            items[index], items[other] = items[other], items[index]
        case EditFields():
            new = text
            for name, value in _field_values(edit.values, item_data).items():
                new, loads_as = _set_key(new, edit.item_id, name, _field_maker(name, value))
                _put(item_data, name, loads_as)
        case RestoreItem():
            new, old_item = _restored(layout, index, edit)
            expected["items"][index] = old_item
    return _checked(new, expected) if new != text else text


def _chop(new: str, original: str) -> str:
    """`new` without the line break added for the edit, if the file had none at the end."""
    if new != original:
        for eol in ("\r\n", "\n"):
            if new.endswith(eol):
                return new[: -len(eol)]
    return original


def _put(data: dict[str, Any], name: str, value: Any) -> None:
    if value is _ABSENT:
        data.pop(name, None)
    else:
        data[name] = value


def _checked(new: str, expected: dict[str, Any]) -> str:
    """`new`, if the loader reads exactly the intended document from it."""
    try:
        got = parse(new).value
    except YamlSyntaxError:
        got = None
    if not _same(got, expected):
        raise EditRefused(
            N_(
                "Diese Änderung lässt sich nicht sicher in die Datei schreiben (ihr Aufbau "
                "ist ungewöhnlich); bitte von Hand ändern."
            )
        )
    return new


def _normal_text(value: str) -> str:
    return value.replace("\r\n", "\n").replace("\r", "\n")


def _field_values(
    values: Mapping[str, str | list[str] | None], current: Mapping[str, Any]
) -> dict[str, str | list[str] | None]:
    """The requested values, normalised; only those that differ from the file's."""
    unknown = sorted(set(values) - set(EDITABLE_FIELDS))
    if unknown:
        raise EditRefused(
            N_("Diese Felder kann der Schreibtisch nicht ändern: %(fields)s."),
            fields=", ".join(unknown),
        )
    changes: dict[str, str | list[str] | None] = {}
    for name in EDITABLE_FIELDS:
        if name not in values:
            continue
        value = values[name]
        old = current.get(name)
        new: str | list[str] | None
        if name in _LIST_FIELDS:
            if isinstance(value, str):
                value = value.split(",")
            entries = [_normal_text(v).strip() for v in value or ()]
            new = [v for v in entries if v] or None
            if new == old:
                continue
        else:
            if isinstance(value, list):
                raise EditRefused(N_("%(field)s ist ein Text, keine Liste."), field=name)
            text = _normal_text(value or "")
            if name == "body":
                text = text.rstrip("\n")
                same = isinstance(old, str) and old.rstrip("\n") == text
            else:
                text = text.strip()
                same = isinstance(old, str) and old.strip() == text
            new = text or None
            if new is None and name in _REQUIRED:
                raise EditRefused(N_("%(field)s darf nicht leer sein."), field=name)
            if same or (new is None and name not in current):
                continue
        changes[name] = new
    return changes


def _field_maker(name: str, value: str | list[str] | None) -> _Maker:
    def make(style: _Style) -> _Rendered | None:
        if value is None:
            return None
        if isinstance(value, list):
            return _render_list(value, style)
        return _render_text(name, value, style)

    return make


def _is_pinned(data: Any) -> bool:
    return isinstance(data, dict) and data.get("date") is not None


def _move_partner(layout: _Layout, index: int, direction: str) -> int:
    items = layout.data["items"]
    if _is_pinned(items[index]):
        raise EditRefused(
            N_(
                "Der Beitrag hat einen festen Sendetag; die Reihenfolge gilt nur für Beiträge "
                "ohne festen Tag. Erst den festen Tag entfernen."
            )
        )
    step = -1 if direction == "up" else 1
    other = index + step
    while 0 <= other < len(items):
        if not _is_pinned(items[other]):
            return other
        other += step
    if direction == "up":
        raise EditRefused(
            N_("Der Beitrag steht schon an erster Stelle der Beiträge ohne festen Tag.")
        )
    raise EditRefused(N_("Der Beitrag steht schon an letzter Stelle der Beiträge ohne festen Tag."))


def _moved(layout: _Layout, index: int, direction: str) -> str:
    """The text with the item's lines (its own comments included) and the partner's swapped;
    the blank lines and comments between items stay where they are."""
    other = _move_partner(layout, index, direction)
    a, b = sorted((layout.items[index], layout.items[other]), key=lambda i: i.dash)
    lines = layout.lines
    return "".join(
        [
            *lines[: a.own_start],
            *lines[b.own_start : b.own_end],
            *lines[a.own_end : b.own_start],
            *lines[a.own_start : a.own_end],
            *lines[b.own_end :],
        ]
    )


def _restored(layout: _Layout, index: int, edit: RestoreItem) -> tuple[str, Any]:
    old = _layout(edit.old_text)
    try:
        old_index = old.index_of(edit.item_id)
    except EditRefused:
        raise EditRefused(
            N_("Im früheren Stand gibt es keinen Beitrag „%(item)s“; nichts wiederhergestellt."),
            item=edit.item_id,
        ) from None
    was = old.items[old_index]
    now = layout.items[index]
    shift = _indent(layout.lines[now.dash]) - _indent(old.lines[was.dash])
    block = [_shifted(_content(line), shift) + layout.eol for line in old.lines[was.dash : was.end]]
    lines = layout.lines
    new = "".join([*lines[: now.dash], *block, *lines[now.end :]])
    return new, old.data["items"][old_index]


def _shifted(line: str, shift: int) -> str:
    if not line or shift == 0:
        return line
    if shift > 0:
        return " " * shift + line
    return line[min(-shift, _indent(line)) :]


# --- the file -----------------------------------------------------------------------------


def _lock_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.lock")


def _lock(path: Path) -> int:
    """An exclusive lock beside the file, held until the returned descriptor is closed.

    Not on the file itself: it is replaced by a rename, so a lock on it would be on the old
    inode, which the next writer no longer opens.
    """
    fd = os.open(_lock_path(path), os.O_RDONLY | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_campaign_text(path: Path) -> str:
    """The file's exact text (CRLF kept: `version_of` hashes what is on disk);
    `EditRefused` when it cannot be read."""
    try:
        return path.read_bytes().decode("utf-8")
    except OSError as error:
        raise EditRefused(
            N_("Die Datei %(path)s lässt sich nicht lesen (%(error)s)."),
            path=str(path),
            error=str(error.strerror),
        ) from None
    except UnicodeDecodeError as error:
        raise EditRefused(
            N_("Die Datei ist kein UTF-8-Text (%(error)s)."), error=error.reason
        ) from None


def _cannot_write(path: Path, error: OSError) -> EditRefused:
    return EditRefused(
        write_refusal(path)
        or Refusal(
            N_("Die Datei %(path)s lässt sich nicht schreiben (%(error)s)."),
            {"path": str(path), "error": str(error.strerror)},
        )
    )


def edit_campaign_file(path: Path, edit: Edit, *, expected_version: str) -> EditResult:
    """Make `edit` in the campaign file at `path`, if it is still at `expected_version`.

    Under an exclusive lock: read, compare the version (`EditConflict`, nothing written),
    apply (`EditRefused`, also when nothing would change), validate the new text with the
    loader (`CampaignError` propagates, nothing written), then replace the file atomically
    with the original's mode and owner. A symbolic link is followed: its target is edited.
    """
    path = Path(os.path.realpath(path))
    try:
        lock = _lock(path)
    except OSError as error:
        raise _cannot_write(path, error) from None
    try:
        before = read_campaign_text(path)
        version_before = version_of(before)
        if version_before != expected_version:
            raise EditConflict(
                "Die Datei wurde inzwischen geändert; bitte neu laden.",
                current_version=version_before,
            )
        after = apply_edit(before, edit)
        if after == before:
            raise EditRefused(N_("Nichts geändert: die Datei hat diesen Stand schon."))
        load_campaign_text(after, str(path))  # CampaignError: refused, nothing written
        try:
            _replace_file(path, after)
        except OSError as error:
            raise _cannot_write(path, error) from None
    finally:
        os.close(lock)  # releases the lock
    diff = "".join(
        difflib.unified_diff(
            _split_lines(before),
            _split_lines(after),
            fromfile=f"a/{path.name}",
            tofile=f"b/{path.name}",
        )
    )
    return EditResult(before, after, version_before, version_of(after), diff)


def _replace_file(path: Path, text: str) -> None:
    """Write `text` to a temporary file beside `path` and rename it over `path`: a reader
    (the service's reload) sees the old file or the new one, never half of one."""
    original = path.stat()
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(text.encode("utf-8"))
            file.flush()
            os.fsync(file.fileno())
            os.fchmod(file.fileno(), stat.S_IMODE(original.st_mode))
            if (original.st_uid, original.st_gid) != (os.geteuid(), os.getegid()):
                with contextlib.suppress(PermissionError):
                    os.fchown(file.fileno(), original.st_uid, original.st_gid)
        Path(temporary).replace(path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            Path(temporary).unlink()
        raise
    directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def write_refusal(path: Path) -> Refusal | None:
    """Why the service cannot write the campaign file, or None when it can.

    The desk shows every change disabled with this reason (read-only mode). The directory
    counts as much as the file: the write is a rename in it.
    """
    path = Path(os.path.realpath(path))
    directory = path.parent
    effective = os.access in os.supports_effective_ids
    try:
        if os.statvfs(directory).f_flag & os.ST_RDONLY:
            return Refusal(
                N_("Das Dateisystem mit %(path)s ist schreibgeschützt (read-only)."),
                {"path": str(path)},
            )
    except OSError as error:
        return Refusal(
            N_("Das Verzeichnis %(directory)s ist nicht erreichbar (%(error)s)."),
            {"directory": str(directory), "error": str(error.strerror)},
        )
    try:
        is_file = stat.S_ISREG(path.stat().st_mode)
    except FileNotFoundError:
        is_file = False
    except OSError as error:
        return Refusal(
            N_("Die Datei %(path)s ist nicht erreichbar (%(error)s)."),
            {"path": str(path), "error": str(error.strerror)},
        )
    if not is_file:
        return Refusal(N_("Die Kampagnendatei %(path)s fehlt."), {"path": str(path)})
    if not os.access(path, os.W_OK, effective_ids=effective):
        return Refusal(
            N_("Der Dienst darf die Datei %(path)s nicht schreiben (Dateirechte)."),
            {"path": str(path)},
        )
    if not os.access(directory, os.W_OK | os.X_OK, effective_ids=effective):
        return Refusal(
            N_(
                "Der Dienst darf im Verzeichnis %(directory)s keine Dateien anlegen; das "
                "Speichern ersetzt die Datei dort über eine neue."
            ),
            {"directory": str(directory)},
        )
    return None
