"""The app's words, in English and Simplified Chinese, as data (`mmdemo/locales/<language>.json`).

Keys are dotted names ("search.button"); texts may hold `{name}` fields, filled by `text()`. The
layout's fixed strings reach the browser through Gradio's `gr.I18n` (the page picks by the
browser's language); what handlers say (warnings, errors, reports) is filled in here, in the
language of the request (its Accept-Language, which the browser sends from the same setting).
No gradio here: feature code raises keyed errors through `mmdemo.errors` without importing a UI.
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path

LANGUAGES = ("en", "zh-CN")
DEFAULT = "en"
LOCALES = Path(__file__).resolve().parent / "locales"
# Kana, CJK ideographs (and extension A, compatibility), Hangul: text an English-only CLIP cannot read.
CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")


@functools.cache
def catalog(language: str) -> dict[str, str]:
    """Every key -> text of `language` (one of LANGUAGES)."""
    return json.loads((LOCALES / f"{language}.json").read_text(encoding="utf-8"))


def text(key: str, language: str = DEFAULT, **fields: object) -> str:
    """The text for `key` in `language` (English where it has none), with `fields` filled in.

    Texts are format strings: a literal brace is doubled. (Texts only the page shows, through
    `gr.I18n`, are not formatted.)
    """
    template = catalog(language).get(key) or catalog(DEFAULT)[key]
    return template.format(**fields)


def language_of(accept_language: str | None) -> str:
    """The UI language for a request's Accept-Language header: its first language decides, as the
    browser's own first language decides the page's (Chinese of any region -> zh-CN, else English)."""
    first = (accept_language or "").split(",")[0].split(";")[0].strip().lower()
    return "zh-CN" if first.startswith("zh") else DEFAULT


def has_cjk(typed: str) -> bool:
    """True when `typed` holds Chinese, Japanese or Korean characters."""
    return bool(CJK.search(typed or ""))
