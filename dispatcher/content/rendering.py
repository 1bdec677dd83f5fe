"""Turning an `Item` into what subscribers and followers see: the newsletter and the posts.

Pure: no network, no clock. The email is rendered once per dispatch with two opaque
placeholders (greeting, unsubscribe URL) that `RenderedEmail.personalise` swaps per recipient
with `str.replace`, so 10 000 recipients cost one Jinja2 render and one CSS inlining.
Editor content never reaches the HTML unescaped: text goes through autoescape, the Markdown
body through markdown-it (raw HTML off) and then nh3's allow-list.
"""

from __future__ import annotations

import datetime as dt
import html
import re
import textwrap
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import css_inline
import jinja2
import nh3
from markdown_it import MarkdownIt
from markupsafe import Markup, escape

from dispatcher import i18n
from dispatcher.campaign.model import Campaign, Channel, Item
from dispatcher.content import post_length

UNSUBSCRIBE_PLACEHOLDER = "__DISPATCHER_UNSUBSCRIBE_URL__"
GREETING_PLACEHOLDER = "__DISPATCHER_GREETING__"

EMAIL_TEMPLATES = ("email/subject.txt.j2", "email/newsletter.html.j2", "email/newsletter.txt.j2")
BODY_TAGS = frozenset({"p", "br", "strong", "em", "a", "ul", "ol", "li", "blockquote", "h3", "h4"})

_MARKDOWN = MarkdownIt("commonmark", {"html": False})
_INLINER = css_inline.CSSInliner(keep_at_rules=True, load_remote_stylesheets=False)


class TemplateProblem(Exception):  # noqa: N818 - the name is the CLI/sender contract
    """A template is missing, does not compile or fails to render; `str()` is `file:line: what`."""

    def __init__(self, path: str, line: int | None, message: str) -> None:
        self.path, self.line, self.message = path, line, message
        super().__init__(f"{path}:{line}: {message}" if line else f"{path}: {message}")


class TemplatesError(Exception):
    """Templates a command needs have problems; `str()` is one `file:line: what` a line."""

    def __init__(self, problems: list[TemplateProblem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


def create_environment(templates_dir: Path) -> jinja2.Environment:
    """One environment per process: it caches compiled templates across dispatches."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(templates_dir),
        undefined=jinja2.StrictUndefined,  # a typo in a template fails `validate`, not at 08:00
        autoescape=jinja2.select_autoescape(enabled_extensions=("html", "html.j2")),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
    )
    i18n.install(env)  # `_()`, `ngettext()` and `local_date` in the render's `lang`
    env.filters["hashtag"] = post_length.hashtag
    return env


def required_templates(channel: Channel | str) -> tuple[str, ...]:
    """Template names (relative to the templates dir) that `channel` renders with."""
    name = str(channel)  # Channel is a StrEnum: str() is its value
    return EMAIL_TEMPLATES if name == Channel.EMAIL.value else (f"social/{name}.txt.j2",)


def _display_path(env: jinja2.Environment, name: str) -> str:
    if isinstance(env.loader, jinja2.FileSystemLoader) and env.loader.searchpath:
        return str(Path(env.loader.searchpath[0]) / name)
    return name


def _problem(env: jinja2.Environment, name: str, exc: jinja2.TemplateError) -> TemplateProblem:
    """Name the file and line where the mistake is, also inside an included partial."""
    if isinstance(exc, jinja2.TemplateSyntaxError):
        path = exc.filename or _display_path(env, exc.name or name)
        return TemplateProblem(path, exc.lineno, exc.message or "syntax error")
    if isinstance(exc, jinja2.TemplateNotFound):
        missing = exc.name if isinstance(exc.name, str) else name
        return TemplateProblem(_display_path(env, missing), None, "template not found")
    path, line = _display_path(env, name), None
    tb = exc.__traceback__
    while tb is not None:  # Jinja2 rewrites tracebacks so template frames carry file and line
        filename = tb.tb_frame.f_code.co_filename
        if filename.endswith(".j2"):
            path, line = filename, tb.tb_lineno
        tb = tb.tb_next
    return TemplateProblem(path, line, exc.message or type(exc).__name__)


def _render(env: jinja2.Environment, name: str, context: dict[str, Any]) -> str:
    try:
        return env.get_template(name).render(context)
    except jinja2.TemplateError as exc:
        raise _problem(env, name, exc) from exc


def check_templates(
    env: jinja2.Environment, channels: Iterable[Channel | str]
) -> list[TemplateProblem]:
    """All problems at once, found by compiling and by a trial render with a sample item.

    The trial render is what catches a misspelt variable (StrictUndefined) before a send day.
    """
    problems: list[TemplateProblem] = []
    seen: set[str] = set()
    campaign, item, other = _sample()
    for channel in channels:
        for name in required_templates(channel):
            if name in seen:
                continue
            seen.add(name)
            try:
                env.get_template(name)
            except jinja2.TemplateError as exc:
                problems.append(_problem(env, name, exc))
                continue
            try:
                for lang in i18n.LANGUAGES:  # every language: a text may be translated wrongly
                    if name in EMAIL_TEMPLATES:
                        published = [(campaign.start, other)]
                        full = _email_context(campaign, item, campaign.start, published, lang=lang)
                        bare = _email_context(campaign, other, campaign.end, [], lang=lang)
                        for context in (full, bare):
                            _render(env, name, {"subject": "Betreff", **context})
                    else:
                        context = _post_context(campaign, item, campaign.start, item.teaser, lang)
                        _render(env, name, context)
            except TemplateProblem as problem:
                problems.append(problem)
    return problems


def require_templates(templates_dir: Path, channels: Iterable[Channel | str]) -> None:
    """The check of `validate`, for the commands that send: refuse to start on a template
    that would fail at the first send day, with `TemplatesError` naming every problem."""
    problems = check_templates(create_environment(templates_dir), channels)
    if problems:
        raise TemplatesError(problems)


def _sample() -> tuple[Campaign, Item, Item]:
    full = Item(
        id="beispiel", title="Vorhang auf: Beispiel-Cluster", teaser="Ein Teaser.",
        url="https://example.org/a", initiative="Beispiel e. V.", region="Sachsen",
        image="https://example.org/a.jpg", image_alt="Ein Bild", tags=("Netzwerk", "KMU"),
        body="**Text**",
    )  # fmt: skip
    bare = Item(
        id="minimal", title="Minimal", teaser="Kurz.", url="https://example.org/b",
        initiative="Minimal e. V.", region="Bayern",
    )  # fmt: skip
    campaign = Campaign(
        id="beispiel", name="Clusterwoche", timezone="Europe/Berlin",
        start=dt.date(2019, 4, 2), end=dt.date(2019, 4, 3), weekdays=frozenset(range(5)),
        holidays=None, items=(full, bare),
    )  # fmt: skip
    return campaign, full, bare


# --- email -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    html: str  #: whole document, CSS inlined, with both placeholders
    text: str  #: plain-text alternative, with both placeholders
    lang: str = i18n.SOURCE_LANGUAGE  #: the language it is written in

    def personalise(self, *, name: str | None, unsubscribe_url: str) -> tuple[str, str]:
        """(html, text) for one recipient; escaping happens here because the names do."""
        name = " ".join((name or "").split())
        greeting = (
            i18n.gettext(self.lang, "Guten Tag %(name)s,", name=name)
            if name
            else i18n.gettext(self.lang, "Guten Tag,")
        )
        html_out = self.html.replace(GREETING_PLACEHOLDER, html.escape(greeting)).replace(
            UNSUBSCRIBE_PLACEHOLDER, html.escape(unsubscribe_url, quote=True)
        )
        text_out = self.text.replace(GREETING_PLACEHOLDER, greeting).replace(
            UNSUBSCRIBE_PLACEHOLDER, unsubscribe_url
        )
        return html_out, text_out


def body_to_html(markdown: str) -> Markup:
    """Markdown to the small HTML subset an email body may contain.

    Headings move down to h3/h4 so an editor's "# Titel" cannot outshout the reportage title.
    """
    tokens = _MARKDOWN.parse(markdown)
    for token in tokens:
        if token.type in ("heading_open", "heading_close"):
            token.tag = "h3" if token.tag in ("h1", "h2") else "h4"
    raw = _MARKDOWN.renderer.render(tokens, _MARKDOWN.options, {})
    cleaned = nh3.clean(
        raw,
        tags=set(BODY_TAGS),
        attributes={"a": {"href"}},
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener",
    )
    return Markup(cleaned)  # nh3 output: only the allow-list is left


class _TextWriter(HTMLParser):
    """The sanitised body as plain text: paragraphs, "- " lists, "> " quotes, "text (URL)".

    A link whose text is its address (`<https://…>` in Markdown) is written once, not as
    "URL (URL)": the text part carries each URL as often as the HTML part shows it.
    """

    _BREAK = "\u2028"  # a <br>; plain "\n" in the data is only a soft line break

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[tuple[str, bool]] = []  # (text, is a list item)
        self.current: list[str] = []
        self.prefix = ""
        self.href: str | None = None
        self.link_start = 0  #: where the open link's text begins in `current`
        self.quote = 0

    def flush(self) -> None:
        indent = "> " * self.quote
        lines: list[str] = []
        for piece in "".join(self.current).split(self._BREAK):
            words = " ".join(piece.split())
            if words:
                first = indent + (self.prefix if not lines else " " * len(self.prefix))
                rest = indent + " " * len(self.prefix)
                lines.append(
                    textwrap.fill(words, 72, initial_indent=first, subsequent_indent=rest,
                                  break_long_words=False, break_on_hyphens=False)
                )  # fmt: skip
        if lines:
            self.blocks.append(("\n".join(lines), bool(self.prefix)))
        self.current, self.prefix = [], ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("p", "li", "h3", "h4", "blockquote", "ul", "ol"):
            self.flush()
        if tag == "li":
            self.prefix = "- "
        elif tag == "blockquote":
            self.quote += 1
        elif tag == "br":
            self.current.append(self._BREAK)
        elif tag == "a":
            self.href = dict(attrs).get("href")
            self.link_start = len(self.current)

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self.href:
            shown = " ".join("".join(self.current[self.link_start :]).split())
            if shown not in (self.href, self.href.removeprefix("mailto:")):
                self.current.append(f" ({self.href})")
            self.href = None
        elif tag in ("p", "li", "h3", "h4", "ul", "ol"):
            self.flush()
        elif tag == "blockquote":
            self.flush()
            self.quote = max(0, self.quote - 1)

    def handle_data(self, data: str) -> None:
        self.current.append(data)


def body_to_text(body_html: str) -> str:
    """Readable plain text with links written out; list items stay on consecutive lines."""
    writer = _TextWriter()
    writer.feed(body_html)
    writer.close()
    writer.flush()
    out = ""
    for i, (block, is_item) in enumerate(writer.blocks):
        if i:
            out += "\n" if is_item and writer.blocks[i - 1][1] else "\n\n"
        out += block
    return out


def _require_http(item: Item) -> None:
    """Autoescape cannot make a `javascript:` href safe; the loader checks too, this is cheap."""
    for field, value in (("url", item.url), ("image", item.image)):
        if value is not None and not re.match(r"https?://", value, re.IGNORECASE):
            raise ValueError(f"item {item.id!r}: {field} is not an http(s) URL: {value!r}")


def _imprint_html(imprint: str) -> Markup:
    return Markup("<br>\n").join(escape(line) for line in imprint.strip().splitlines())


def _email_context(
    campaign: Campaign,
    item: Item,
    day: dt.date,
    published: Sequence[tuple[dt.date, Item]],
    imprint: str = "Beispiel-Impressum",
    public_url: str = "http://127.0.0.1:8080",
    *,
    lang: str,
) -> dict[str, Any]:
    body_html = body_to_html(item.body) if item.body else Markup("")
    site = public_url.rstrip("/")
    return {
        "lang": lang,
        "campaign": campaign,
        "item": item,
        "day": day,
        "published": list(published),
        "body_html": body_html,
        "body_text": body_to_text(body_html),
        "imprint": imprint.strip(),
        "imprint_html": _imprint_html(imprint),
        "public_url": site,
        "archive_url": site + campaign.path_prefix(lang) + "/archive",
        "unsubscribe_url": UNSUBSCRIBE_PLACEHOLDER,
        "greeting": GREETING_PLACEHOLDER,
    }


def render_email(
    env: jinja2.Environment,
    campaign: Campaign,
    item: Item,
    *,
    day: dt.date,
    published: Sequence[tuple[dt.date, Item]],
    imprint: str,
    public_url: str,
    lang: str | None = None,
) -> RenderedEmail:
    """The shared part of one day's newsletter in `lang` (default: the campaign's); see
    `RenderedEmail.personalise`. `item` and `published` are the items as stored; each is
    shown in its `lang` edition, and an earlier item without one is left out of the list.
    `ValueError` if the day's item has no edition for `lang` (fallback `skip`)."""
    wanted = campaign.reader_language(lang)
    lang = campaign.edition_language(item, wanted)
    edition = None if lang is None else campaign.edition(item, lang)
    if lang is None or edition is None:
        raise ValueError(f"item {item.id!r} has no {wanted} version and the fallback is skip")
    shown_before = [
        (before, shown)
        for before, earlier in published
        if (shown := campaign.edition(earlier, lang)) is not None
    ]
    for shown in (edition, *(p for _, p in shown_before)):
        _require_http(shown)
    campaign = campaign.in_language(lang)
    context = _email_context(campaign, edition, day, shown_before, imprint, public_url, lang=lang)
    subject_name, html_name, text_name = EMAIL_TEMPLATES
    subject = " ".join(_render(env, subject_name, context).split())  # a header is one line
    context["subject"] = subject
    document = _INLINER.inline(_render(env, html_name, context))
    text = _render(env, text_name, context).strip() + "\n"
    return RenderedEmail(subject=subject, html=document, text=text, lang=lang)


# --- posts -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RenderedPost:
    channel: str  #: "mastodon", "bluesky", "linkedin", "webhook", "x"
    text: str  #: exactly what is sent (for LinkedIn: already little-escaped)
    length: int  #: by that network's own rule
    limit: int | None  #: None for webhooks
    link: str  #: item.url; LinkedIn sends it as the article card, not in `text`
    hashtags: tuple[str, ...]  #: those that appear in `text`, as "#Tag"
    shortened: bool = False  #: the teaser was cut ("…") to fit the network's limit
    lang: str = i18n.SOURCE_LANGUAGE  #: the language the post is written in


def _post_context(
    campaign: Campaign, item: Item, day: dt.date, teaser: str, lang: str
) -> dict[str, Any]:
    tags = tuple(dict.fromkeys(post_length.hashtag(tag) for tag in item.tags))
    return {
        "lang": lang,
        "campaign": campaign,
        "item": item,
        "day": day,
        "title": item.title,
        "teaser": teaser,
        "url": item.url,
        "hashtags": tags,
    }


def _tidy(text: str) -> str:
    """Template whitespace is not the author's intent: no trailing blanks, one blank line max."""
    lines = [line.rstrip() for line in text.strip().splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines))


def _linkedin_commentary(text: str, hashtags: Sequence[str]) -> str:
    escaped = post_length.linkedin_escape(text)
    for tag in hashtags:
        pattern = re.escape(post_length.linkedin_escape(tag)) + r"(?!\w)"
        element = post_length.linkedin_hashtag(tag).replace("\\", "\\\\")  # re.sub template
        escaped = re.sub(pattern, element, escaped)
    return escaped


def render_post(
    env: jinja2.Environment,
    channel: Channel | str,
    campaign: Campaign,
    item: Item,
    *,
    day: dt.date,
    lang: str | None = None,
) -> RenderedPost:
    """The post for one network in `lang` (default: the campaign's), fitted by shortening
    only the teaser (never link or tags). `item` is the item as stored; the post shows its
    `lang` edition (`ValueError` if it has none under fallback `skip`)."""
    wanted = campaign.reader_language(lang)
    lang = campaign.edition_language(item, wanted)
    edition = None if lang is None else campaign.edition(item, lang)
    if lang is None or edition is None:
        raise ValueError(f"item {item.id!r} has no {wanted} version and the fallback is skip")
    item = edition
    campaign = campaign.in_language(lang)
    name = str(channel)
    if name not in post_length.RULES:
        raise ValueError(
            f"no post rule for channel {name!r}; known: {', '.join(post_length.RULES)}"
        )
    rule = post_length.RULES[name]
    template = required_templates(name)[0]
    tags: tuple[str, ...] = _post_context(campaign, item, day, "", lang)["hashtags"]

    def build(teaser: str) -> str:
        text = _tidy(_render(env, template, _post_context(campaign, item, day, teaser, lang)))
        return _linkedin_commentary(text, tags) if name == "linkedin" else text

    teaser = " ".join(item.teaser.split())
    fitted = post_length.shorten_at_word(teaser, lambda t: rule.fits(build(t)))
    text = build(fitted)
    if not rule.fits(text):
        raise ValueError(
            f"item {item.id!r} does not fit on {name} even without its teaser: "
            f"{rule.length(text)} > {rule.limit or post_length.WEBHOOK_SOFT_LIMIT}"
        )
    shown = _present(text, tags, linkedin=name == "linkedin")
    return RenderedPost(
        name, text, rule.length(text), rule.limit, item.url, shown, shortened=fitted != teaser,
        lang=lang,
    )  # fmt: skip


def _present(text: str, tags: Sequence[str], *, linkedin: bool) -> tuple[str, ...]:
    form: Callable[[str], str] = post_length.linkedin_hashtag if linkedin else (lambda t: t)
    return tuple(t for t in tags if re.search(re.escape(form(t)) + r"(?!\w)", text))
