"""The UI's words: fixed layout strings through Gradio's `gr.I18n`, handler messages per request.

`t(key)` marks a fixed string (a label, a button, a placeholder): the page translates it in the
browser, by the browser's language. `say(request, key, ...)` is for what a handler returns or
raises (it knows numbers and names the page cannot): filled in on the server, in the language
the request's Accept-Language names. Both read `mmdemo/locales/` (see mmdemo.i18n).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gradio as gr

from mmdemo.i18n import DEFAULT, catalog, language_of, text

# "zh" as well as "zh-CN": the page looks a browser's "zh-TW" or "zh-Hans-CN" up under "zh" next.
I18N = gr.I18n(en=catalog("en"), **{"zh-CN": catalog("zh-CN"), "zh": catalog("zh-CN")})


def t(key: str) -> Any:
    """A fixed UI string, translated in the browser."""
    catalog(DEFAULT)[key]  # a typo fails when the layout is built, not as a raw key on the page
    return I18N(key)


def language(request: gr.Request | None) -> str:
    """The UI language of this request ("en" or "zh-CN")."""
    headers = getattr(request, "headers", None)
    return language_of(headers.get("accept-language") if headers is not None else None)


def say(request: gr.Request | None, key: str, **fields: object) -> str:
    """A handler's message for this request, in its language."""
    return text(key, language(request), **fields)


def headers(prefix: str, columns: Sequence[str], lang: str = DEFAULT) -> list[str]:
    """A table's column names in `lang`: the texts of `<prefix>.<column>`."""
    return [text(f"{prefix}.{column}", lang) for column in columns]


def table_value(
    prefix: str, columns: Sequence[str], rows: list[list[Any]], request: gr.Request | None
) -> dict[str, Any]:
    """A Dataframe value with its headers in the request's language (an API client gets English)."""
    return {"headers": headers(prefix, columns, language(request)), "data": rows}
