"""Changing the queue from the desk: hold, release, pin, move, edit, restore; the history.

Routes (docs/desk.md, "Die Queue ändern"):

- `POST /desk/items/{item_id}/queue`: `action` = hold | release | pin (with `day`) | unpin |
  move-up | move-down.
- `GET /desk/items/{item_id}/bearbeiten`: the text form; `POST` with `action` = preview (the
  email's text part, the Markdown body and every post as they would go out, nothing written)
  or save.
- `GET /desk/history`, `GET /desk/history/{change_id}` (the diff), `POST
  /desk/history/{change_id}/restore` (the item as it was before that change, as a new change).

Every form carries the CSRF token and the file's `version`; every change goes through
`delivery.queue_changes.apply_change` (the ledger's past, the freeze window, the lock, the
validation before writing, the history row). A change within the freeze window answers with
a confirmation form that replays the same fields with `confirm=1`. After a change the process
reloads the campaign at once (`WebState.campaign_changed`), so the desk shows the new state.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from dispatcher import i18n
from dispatcher.campaign import editing
from dispatcher.campaign.loading import CampaignError, load_campaign_text
from dispatcher.campaign.model import Campaign, Channel, Item
from dispatcher.content.rendering import TemplateProblem, body_to_html
from dispatcher.delivery import queue_changes
from dispatcher.ledger import changes
from dispatcher.ledger.engine import reader
from dispatcher.web.desk import actions, items, pages
from dispatcher.web.desk.pages import N_
from dispatcher.web.desk.session import Editor
from dispatcher.web.state import WebState

QUEUE_ACTIONS = ("hold", "release", "pin", "unpin", "move-up", "move-down")
RUNNING_NOTE = N_(
    "Ein Versand dieses Beitrags läuft bereits und wird zu Ende geführt; zurückgehalten wird, "
    "was noch nicht begonnen hat. Um den laufenden Versand zu stoppen: „Versand … abbrechen“ "
    "auf der Beitragsseite."
)
NO_SUCH_CHANGE = N_("Diese Änderung gibt es im Verlauf nicht.")


@dataclass(frozen=True)
class FormValues:
    """The text form as typed (shown again after a preview, a problem or a conflict)."""

    title: str
    teaser: str
    body: str
    tags: str  #: comma-separated
    image: str
    image_alt: str
    channels: tuple[str, ...]

    @classmethod
    def of_item(cls, item: Item, campaign: Campaign) -> FormValues:
        used = item.channels if item.channels is not None else campaign.channels
        return cls(
            title=item.title,
            teaser=item.teaser,
            body=(item.body or "").strip(),  # as `of_form` reads it: no change by itself
            tags=", ".join(item.tags),
            image=item.image or "",
            image_alt=item.image_alt or "",
            channels=tuple(c.value for c in used),
        )

    @classmethod
    def of_form(cls, form: FormData) -> FormValues:
        def text(name: str) -> str:
            value = form.get(name)
            # Browsers send CRLF in a textarea; the file has LF.
            return value.replace("\r\n", "\n").strip() if isinstance(value, str) else ""

        return cls(
            title=text("title"),
            teaser=text("teaser"),
            body=text("body"),
            tags=text("tags"),
            image=text("image"),
            image_alt=text("image_alt"),
            channels=tuple(v for v in form.getlist("channels") if isinstance(v, str)),
        )

    def changes_from(self, item: Item, campaign: Campaign) -> dict[str, str | list[str] | None]:
        """The `EditFields` values: only the keys whose value differs from the file's."""
        old = FormValues.of_item(item, campaign)
        values: dict[str, str | list[str] | None] = {}
        for name in ("title", "teaser", "body", "image", "image_alt"):
            if getattr(self, name) != getattr(old, name):
                values[name] = getattr(self, name) or None
        tags = [t.strip() for t in self.tags.split(",") if t.strip()]
        if tags != list(item.tags):
            values["tags"] = tags or None
        if set(self.channels) != set(old.channels):
            every = {c.value for c in campaign.channels}
            chosen: list[str] = [c.value for c in Channel if c.value in self.channels]
            # All of the campaign's channels is what an item without `channels:` gets.
            values["channels"] = None if set(chosen) == every else chosen
        return values


def _queue_edit(item_id: str, form: FormData, lang: str) -> editing.Edit | str:
    """The edit a queue form asks for, or why the form makes no sense (in `lang`)."""
    action = form.get("action")
    match action:
        case "hold":
            return editing.Hold(item_id)
        case "release":
            return editing.Release(item_id)
        case "unpin":
            return editing.Pin(item_id, None)
        case "move-up":
            return editing.Move(item_id, "up")
        case "move-down":
            return editing.Move(item_id, "down")
        case "pin":
            day = form.get("day")
            try:
                return editing.Pin(item_id, dt.date.fromisoformat(str(day)))
            except ValueError:
                return i18n.gettext(lang, items.NOT_A_DAY, value=str(day))
    return i18n.gettext(
        lang, "Unbekannte Aktion „%(action)s“ (erlaubt: %(allowed)s).", action=str(action),
        allowed=", ".join(QUEUE_ACTIONS),
    )  # fmt: skip


def _replay(form: FormData) -> list[tuple[str, str]]:
    """The form's fields for the confirmation form (without token and confirmation)."""
    return [
        (name, value)
        for name, value in form.multi_items()
        if isinstance(value, str) and name not in ("csrf_token", "confirm")
    ]


def routes(state: WebState) -> list[BaseRoute]:
    settings = state.settings
    path = settings.campaign_file
    freeze = dt.timedelta(minutes=settings.desk_freeze_minutes)

    def file_item(item_id: str) -> Item | None:
        return next((i for i in state.campaign().items if i.id == item_id), None)

    def outcome_page(request: Request, kind: str, status: int, **context: Any) -> HTMLResponse:
        context.setdefault("values", None)
        return pages.render(state, request, "change_outcome.html.j2", status=status,
                            kind=kind, **context)  # fmt: skip

    async def apply(
        request: Request,
        form: FormData,
        edit: editing.Edit,
        *,
        values: FormValues | None = None,
    ) -> Response:
        editor: Editor = request.state.editor
        version = str(form.get("version") or "")
        lang = pages.language(state, request)
        try:
            outcome = await run_in_threadpool(
                lambda: queue_changes.apply_change(
                    state.engine,
                    path,
                    state.campaign(),
                    edit,
                    expected_version=version,
                    editor_id=editor.id,
                    now=state.clock(),
                    freeze=freeze,
                    confirmed=form.get("confirm") == "1",
                    lang=lang,
                )
            )
        except editing.EditConflict:
            return outcome_page(request, "conflict", 409, item_id=edit.item_id, values=values)
        except editing.EditRefused as refused:
            return outcome_page(request, "refused", 409, item_id=edit.item_id,
                                reason=refused.in_language(lang), values=values)  # fmt: skip
        except queue_changes.ChangeRefusedError as refused:
            return outcome_page(request, "refused", 409, item_id=edit.item_id,
                                reason=str(refused), values=values)  # fmt: skip
        except CampaignError as invalid:
            problems = [str(p) for p in invalid.problems]
            if values is not None:
                return await edit_form(request, values=values, problems=problems,
                                       version=version, status=422)  # fmt: skip
            return outcome_page(request, "invalid", 422, item_id=edit.item_id,
                                problems=problems)  # fmt: skip
        if isinstance(outcome, queue_changes.ConfirmationNeeded):
            return outcome_page(request, "confirm", 200, item_id=edit.item_id,
                                sends=outcome.sends, fields=_replay(form),
                                action_url=request.url.path,
                                freeze_minutes=settings.desk_freeze_minutes)  # fmt: skip
        await run_in_threadpool(
            pages.record, state, editor, "queue_change",
            f"Änderung {outcome.change_id}: {editing.action_name(edit)} {edit.item_id}",
        )  # fmt: skip
        await run_in_threadpool(state.campaign_changed)
        query = {"gespeichert": "1", **({"laeuft": "1"} if outcome.notes else {})}
        return RedirectResponse(
            f"/desk/history/{outcome.change_id}?{urlencode(query)}", 303, headers=pages.PRIVATE
        )

    @pages.signed_in
    async def queue_action(request: Request) -> Response:
        form = await request.form()
        pages.require_csrf(request, form)
        item_id = request.path_params["item_id"]
        edit = _queue_edit(item_id, form, pages.language(state, request))
        if isinstance(edit, str):
            return outcome_page(request, "refused", 400, item_id=item_id, reason=edit)
        return await apply(request, form, edit)

    async def edit_form(
        request: Request,
        *,
        values: FormValues | None = None,
        problems: list[str] | None = None,
        version: str | None = None,
        preview: items.ItemView | None = None,
        status: int = 200,
    ) -> Response:
        item_id = request.path_params["item_id"]
        item = file_item(item_id)
        if item is None:
            return pages.render(state, request, "item_not_found.html.j2", status=404,
                                reason=pages.text(request, N_("Einen Beitrag „%(item)s“ hat die "
                                                  "Datei nicht."), item=item_id),
                                items=state.campaign().items)  # fmt: skip
        lang = pages.language(state, request)

        def read() -> actions.ItemActions | None:
            with reader(state.engine).connect() as connection:
                return actions.item_actions(
                    connection, state.campaign(), path, item_id, now=state.clock(), lang=lang
                )

        allowed = await run_in_threadpool(read)
        assert allowed is not None
        campaign = state.campaign()
        return pages.render(
            state, request, "item_edit.html.j2", status=status, item=item,
            values=values or FormValues.of_item(item, campaign), allowed=allowed,
            version=version or allowed.version, problems_here=problems or [],
            preview=preview,
            channels=[(c.value, i18n.gettext(lang, items.CHANNEL_LABELS[c]))
                      for c in campaign.channels],
            body_html=body_to_html(values.body) if preview is not None and values and values.body else None,
        )  # fmt: skip

    @pages.signed_in
    async def edit_page(request: Request) -> Response:
        return await edit_form(request)

    def preview_of(
        item_id: str, values: Mapping[str, str | list[str] | None], lang: str
    ) -> items.ItemView:
        """The item page's view of the file as it would be with `values` (nothing written):
        the default language's email and posts, as the form edits the item's own texts."""
        campaign = state.campaign()
        if values:
            text = editing.read_campaign_text(path)
            edited = editing.apply_edit(text, editing.EditFields(item_id, values))
            campaign = load_campaign_text(edited, str(path))
        with reader(state.engine).connect() as connection:
            return items.item_view(settings, state.templates, campaign, connection, item_id,
                                   now=state.clock(), lang=lang,
                                   editions=[campaign.language])  # fmt: skip

    @pages.signed_in
    async def edit_submit(request: Request) -> Response:
        form = await request.form()
        pages.require_csrf(request, form)
        item_id = request.path_params["item_id"]
        item = file_item(item_id)
        lang = pages.language(state, request)
        if item is None:
            return outcome_page(request, "refused", 409, item_id=item_id,
                                reason=i18n.gettext(lang, "Einen Beitrag „%(item)s“ hat die "
                                                    "Datei nicht mehr.", item=item_id))  # fmt: skip
        values = FormValues.of_form(form)
        wanted = values.changes_from(item, state.campaign())
        version = str(form.get("version") or "")
        if form.get("action") == "preview":
            try:
                view = await run_in_threadpool(preview_of, item_id, wanted, lang)
            except CampaignError as invalid:
                return await edit_form(request, values=values, version=version, status=422,
                                       problems=[str(p) for p in invalid.problems])  # fmt: skip
            except editing.EditRefused as refused:
                return await edit_form(request, values=values, version=version, status=422,
                                       problems=[refused.in_language(lang)])  # fmt: skip
            except (items.ItemNotFoundError, TemplateProblem) as refused:
                return await edit_form(request, values=values, version=version, status=422,
                                       problems=[str(refused)])  # fmt: skip
            return await edit_form(request, values=values, version=version, preview=view)
        if not wanted:
            return outcome_page(request, "refused", 409, item_id=item_id, values=values,
                                reason=i18n.gettext(lang, "Sie haben nichts geändert; die Datei "
                                                    "bleibt, wie sie ist."))  # fmt: skip
        return await apply(request, form, editing.EditFields(item_id, wanted), values=values)

    def history_rows() -> list[changes.ChangeRow]:
        with reader(state.engine).connect() as connection:
            return changes.recent_changes(connection, limit=200)

    def summary(request: Request) -> Callable[[changes.ChangeRow], str]:
        """How the pages word a history row: in the editor's language."""
        lang, campaign = pages.language(state, request), state.campaign()
        return lambda row: queue_changes.summary_in(
            lang, campaign, action=row.action, summary=row.summary, diff=row.diff
        )

    @pages.signed_in
    async def history_page(request: Request) -> Response:
        rows = await run_in_threadpool(history_rows)
        return pages.render(state, request, "history.html.j2", rows=rows,
                            summary=summary(request))  # fmt: skip

    def change_detail(
        change_id: int, lang: str
    ) -> tuple[changes.ChangeRow | None, actions.ItemActions | None]:
        with reader(state.engine).connect() as connection:
            row = changes.get_change(connection, change_id)
            if row is None:
                return None, None
            allowed = actions.item_actions(
                connection, state.campaign(), path, row.item_id, now=state.clock(), lang=lang
            )
            return row, allowed

    @pages.signed_in
    async def change_page(request: Request) -> Response:
        lang = pages.language(state, request)
        row, allowed = await run_in_threadpool(change_detail, _change_id(request), lang)
        if row is None:
            return outcome_page(request, "refused", 404, item_id=None,
                                reason=i18n.gettext(lang, NO_SUCH_CHANGE))  # fmt: skip
        running = request.query_params.get("laeuft") == "1"
        return pages.render(
            state, request, "change.html.j2", row=row, allowed=allowed,
            summary=summary(request), saved=request.query_params.get("gespeichert") == "1",
            running_note=i18n.gettext(lang, RUNNING_NOTE) if running else None,
        )  # fmt: skip

    def change_row(change_id: int) -> changes.ChangeRow | None:
        with reader(state.engine).connect() as connection:
            return changes.get_change(connection, change_id)

    @pages.signed_in
    async def restore(request: Request) -> Response:
        form = await request.form()
        pages.require_csrf(request, form)
        row = await run_in_threadpool(change_row, _change_id(request))
        if row is None:
            return outcome_page(request, "refused", 404, item_id=None,
                                reason=pages.text(request, NO_SUCH_CHANGE))  # fmt: skip
        return await apply(request, form, editing.RestoreItem(row.item_id, row.text_before))

    return [
        Route("/items/{item_id}/queue", queue_action, methods=["POST"]),
        Route("/items/{item_id}/bearbeiten", edit_page, methods=["GET"]),
        Route("/items/{item_id}/bearbeiten", edit_submit, methods=["POST"]),
        Route("/history", history_page, methods=["GET"]),
        Route("/history/{change_id:int}", change_page, methods=["GET"]),
        Route("/history/{change_id:int}/restore", restore, methods=["POST"]),
    ]


def _change_id(request: Request) -> int:
    value = request.path_params["change_id"]
    assert isinstance(value, int)
    return value


__all__ = ["FormValues", "routes"]
