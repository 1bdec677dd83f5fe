"""The stop switch over the API: cancel a dispatch, pause and resume sending.

The same calls as `dispatcher cancel|pause|resume` (`delivery.controls`), so the same rules
hold for every process on the ledger (docs/operations.md); the token's name is recorded as
who did it (`api:<name>`). Pause and resume are idempotent and answer with every pause in
force afterwards; cancelling a cancelled dispatch says `already`.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool

from dispatcher.delivery import controls
from dispatcher.ledger.engine import reader
from dispatcher.web.api import models
from dispatcher.web.api.problems import ProblemError
from dispatcher.web.api.routing import Answer, Call, Endpoint, PathParameter
from dispatcher.web.state import WebState

TAG = "stop switch"
MAX_ID = 2**31 - 1  #: the ledger's integer ids; a larger one cannot exist
DISPATCH_PARAMETER = {
    "dispatch_id": PathParameter(
        {"type": "integer", "minimum": 1, "maximum": MAX_ID},
        "the dispatch's id, as `status` lists it",
        1,
    )
}


def endpoints(state: WebState) -> list[Endpoint]:
    def unknown(dispatch_id: int) -> ProblemError:
        return ProblemError(
            404,
            f"no dispatch with id {dispatch_id}; GET /api/v1/status lists them",
            kind="unknown-dispatch",
        )

    def stop(call: Call, dispatch_id: int) -> models.Cancelled:
        try:
            done = controls.cancel_dispatch(
                state.engine, dispatch_id, by=call.by, reason=call.body.reason, now=call.now
            )
        except KeyError:
            raise unknown(dispatch_id) from None
        except ValueError as error:
            raise ProblemError(409, str(error), kind="dispatch-finished") from None
        return models.Cancelled(
            dispatch_id=done.dispatch_id,
            state=done.state,
            cancelled=done.cancelled,
            sent=done.sent,
            already=done.already,
        )

    async def cancel(call: Call) -> Answer:
        dispatch_id = call.request.path_params["dispatch_id"]
        if not 1 <= dispatch_id <= MAX_ID:
            raise unknown(dispatch_id)
        return Answer(await run_in_threadpool(stop, call, dispatch_id))

    def in_force() -> models.Pauses:
        with reader(state.engine).connect() as connection:
            found = controls.pauses(connection)
        return models.Pauses(
            paused=[
                models.PauseInfo(channel=p.channel, paused_at=p.paused_at, by=p.by) for p in found
            ]
        )

    def hold(call: Call) -> models.Pauses:
        controls.pause(state.engine, call.body.channel, by=call.by, now=call.now)
        return in_force()

    def release(call: Call) -> models.Pauses:
        controls.resume(state.engine, call.body.channel, by=call.by, now=call.now)
        return in_force()

    async def pause(call: Call) -> Answer:
        return Answer(await run_in_threadpool(hold, call))

    async def resume(call: Call) -> Answer:
        return Answer(await run_in_threadpool(release, call))

    return [
        Endpoint(
            "POST",
            "/dispatches/{dispatch_id:int}/cancel",
            "cancelDispatch",
            "Stop a dispatch: nothing more is sent, the unsent rest becomes cancelled",
            "dispatch:control",
            cancel,
            models.Cancelled,
            body=models.CancelRequest,
            body_required=False,
            problems={
                404: "no dispatch with this id",
                409: "the dispatch has finished (done, partial, failed, missed)",
            },
            parameters=DISPATCH_PARAMETER,
            description="Messages in flight finish (at most one claim batch per process). "
            "A cancelled email dispatch is sent again only with `dispatcher resend`.",
            tag=TAG,
        ),
        Endpoint(
            "POST",
            "/pause",
            "pauseSending",
            "Hold all sending, or one channel's, in every process",
            "dispatch:control",
            pause,
            models.Pauses,
            body=models.PauseRequest,
            body_required=False,
            description="Nothing is lost: deliveries stay queued and go out after resume.",
            tag=TAG,
        ),
        Endpoint(
            "POST",
            "/resume",
            "resumeSending",
            "Lift a pause (all sending, or one channel's)",
            "dispatch:control",
            resume,
            models.Pauses,
            body=models.PauseRequest,
            body_required=False,
            description="The pause of all sending and a channel's own pause are lifted separately.",
            tag=TAG,
        ),
    ]
