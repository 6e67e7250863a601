"""What every tab shares: turning errors into messages, and the look of the app."""

from __future__ import annotations

import functools
import inspect
import logging
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import gradio as gr

from mmdemo.errors import UserFacingError
from mmdemo.files import session_key
from mmdemo.i18n import DEFAULT
from mmdemo.serving import metrics
from mmdemo.ui.i18n import language, say

if TYPE_CHECKING:
    from mmdemo.search.stages import Stages
    from mmdemo.search.videoqueue import LineState

log = logging.getLogger("mmdemo.ui")

CSS = """
.mmdemo-banner { background: #fff3cd; color: #664d03; border-radius: 8px; padding: 6px 12px; }
footer { display: none !important; }
"""


def upload_path(value: Any) -> str | None:
    """The server path of an uploaded file, as a handler with `preprocess=False` receives it.

    Image inputs skip Gradio's preprocessing: it opens every upload with Pillow and would answer
    a corrupt file or a decompression bomb with Pillow's own error (and the server path) instead
    of ours. Gradio still checks that the path is one of its uploads before the handler runs.
    """
    if value is None or isinstance(value, str):
        return value
    path = value.get("path") if isinstance(value, dict) else getattr(value, "path", None)
    if not path:
        raise UserFacingError(key="error.not_a_file")
    return str(path)


def session(request: gr.Request | None) -> str:
    """This request's session key: the one name any per-session file, folder or dict entry may use.

    `session_hash` is whatever the client sent (any text: `/`, `..`, NUL, 10 kB); the key is a hash
    of it, 32 hex characters, so it never becomes a path and never grows a dict by more than that.
    """
    return session_key(getattr(request, "session_hash", None))


def number(value: Any, low: float, high: float, name: str) -> float:
    """`value` as a float within [low, high]; a clear refusal otherwise.

    For inputs of events that skip Gradio's preprocessing (which would check a slider's bounds):
    an API client can send anything there.
    """
    try:
        result = float(value)
    except (TypeError, ValueError):
        result = math.nan
    if not low <= result <= high:  # NaN fails this too
        raise UserFacingError(key="error.out_of_range", name=name, low=low, high=high, value=str(value)[:40])
    return result


def text_input(value: Any, name: str) -> str:
    """`value` as text ('' for None); a clear refusal for anything else (a list, a number, a dict)."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise UserFacingError(key="error.not_text", name=name)
    return value


def theme() -> gr.themes.Base:
    """The app's theme."""
    return gr.themes.Soft(primary_hue="indigo", secondary_hue="sky")


def _to_gradio_error(exc: Exception, fn_name: str, lang: str) -> gr.Error:
    if isinstance(exc, gr.Error):
        return exc
    # print_exception=False: a user's mistake is not a server error, and real errors are logged
    # here once, with their traceback, rather than twice.
    if isinstance(exc, UserFacingError):
        return gr.Error(exc.translated(lang), print_exception=False)
    log.exception("unexpected error in %s", fn_name)
    return gr.Error(
        UserFacingError(key="error.unexpected", kind=type(exc).__name__).translated(lang), print_exception=False
    )


def _language(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    """The UI language of the request among a handler's arguments (English without one)."""
    request = next((a for a in (*args, *kwargs.values()) if isinstance(a, gr.Request)), None)
    return language(request) if request is not None else DEFAULT


def friendly_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Show users a clear gr.Error for any failure of `fn` (plain function or generator).

    Known errors (UserFacingError) keep their message, in the language of the request when the
    handler takes one (`request: gr.Request`); anything else is logged with its traceback and
    shown as a short generic message, never as a stack trace.
    """
    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def gen_wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                yield from fn(*args, **kwargs)
            except Exception as exc:  # converted for the user
                raise _to_gradio_error(exc, fn.__name__, _language(args, kwargs)) from exc

        return gen_wrapper

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # converted for the user
            raise _to_gradio_error(exc, fn.__name__, _language(args, kwargs)) from exc

    return wrapper


def _outcome(exc: BaseException | None) -> str:
    if exc is None:
        return "ok"
    if isinstance(exc, GeneratorExit):
        return "cancelled"
    return "refused" if isinstance(exc, UserFacingError | gr.Error) else "error"


def _waited(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Record how long this request waited in its queue (stamped when it joined: ui/fairness.py)."""
    request = next((a for a in (*args, *kwargs.values()) if isinstance(a, gr.Request)), None)
    state = getattr(getattr(request, "request", None), "state", None)
    joined, queue = getattr(state, "mmdemo_joined", None), getattr(state, "mmdemo_queue", None)
    if state is not None and joined is not None and queue is not None and not getattr(state, "mmdemo_waited", False):
        state.mmdemo_waited = True  # once per request (a generator's handler is entered once)
        metrics.record_wait(queue, time.monotonic() - joined)


def measured(feature: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """Count `fn`'s requests as `feature` (outcome and seconds) for /metrics and the System tab.

    Inside friendly_errors, so that it sees what really happened (a refusal or a failure)."""
    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def gen_wrapper(*args: Any, **kwargs: Any) -> Any:
            _waited(args, kwargs)
            start, failure = time.perf_counter(), None
            try:
                yield from fn(*args, **kwargs)
            except BaseException as exc:  # counted, then passed on unchanged
                failure = exc
                raise
            finally:
                metrics.record_request(feature, _outcome(failure), time.perf_counter() - start)

        return gen_wrapper

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        _waited(args, kwargs)
        start, failure = time.perf_counter(), None
        try:
            return fn(*args, **kwargs)
        except BaseException as exc:  # counted, then passed on unchanged
            failure = exc
            raise
        finally:
            metrics.record_request(feature, _outcome(failure), time.perf_counter() - start)

    return wrapper


def videos_said(state: LineState, request: gr.Request | None) -> str:
    """A gallery's videos in the background: the one being cut and how far, those waiting, the last ones done
    (and why one could not be cut); '' when there are none."""
    from mmdemo.video.scenes import clock

    lines = []
    if state.cutting:
        percent = round(100 * state.done_s / state.total_s) if state.total_s else 0
        done, total = clock(state.done_s), clock(state.total_s)
        lines.append(say(request, "videos.cutting", name=state.cutting, done=done, total=total, percent=percent))
    if state.waiting:
        lines.append(say(request, "videos.waiting", names=", ".join(state.waiting)))
    lines += [say(request, "videos.finished", name=name, n=n) for name, n in state.finished]
    lang = language(request)
    lines += [say(request, "search.skipped", name=s.name, reason=s.said(lang)) for s in state.failed]
    return "\n\n".join(lines)


def indexing_said(stages: Stages | None, request: gr.Request | None) -> str:
    """What the indexing stages are reading in the background now ('' when nothing)."""
    if stages is None:
        return ""
    lines = [
        say(request, f"stages.{name}", done=p.done, total=p.total, failed=p.failed)
        for name, p in stages.progress.items()
        if p.busy
    ]
    return "\n\n".join(lines)
