"""Settings from the outside: `MMDEMO_*` strings and `python app.py` flags, turned into a settings dataclass's fields.

Generic over the dataclass (mmdemo.config.Settings passes itself), so that the one dataclass stays the one
place where options are defined, and this file knows nothing of any option.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any, get_type_hints

ENV_PREFIX = "MMDEMO_"


_TYPES: dict[type, dict[str, Any]] = {}


def _types(cls: type) -> dict[str, Any]:
    if cls not in _TYPES:
        _TYPES[cls] = get_type_hints(cls)
    return _TYPES[cls]


def parse_value(cls: type, name: str, raw: str) -> Any:
    """Turn an environment/CLI string into the type of `cls`'s field `name`."""
    kind = _types(cls)[name]
    if kind is bool:
        if raw.strip().lower() in ("1", "true", "yes", "on"):
            return True
        if raw.strip().lower() in ("0", "false", "no", "off", ""):
            return False
        raise ValueError(f"{ENV_PREFIX}{name.upper()} must be true or false, got {raw!r}")
    if kind == tuple[str, ...]:
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    if kind is Path:
        return Path(raw)
    try:
        return kind(raw)
    except ValueError:
        raise ValueError(f"{ENV_PREFIX}{name.upper()} must be a {kind.__name__}, got {raw!r}") from None


def build_parser(defaults: Any, secrets: Collection[str] = ()) -> argparse.ArgumentParser:
    """An argparse parser with one flag per field of `defaults`' dataclass (values stay None unless given);
    the fields in `secrets` show only whether they are set."""
    cls = type(defaults)
    parser = argparse.ArgumentParser(
        prog="python app.py",
        description="mmdemo: VQA chat, gallery search and zero-shot classification in one Gradio app.",
    )
    for f in dataclasses.fields(cls):
        flag = "--" + f.name.replace("_", "-")
        current = getattr(defaults, f.name)
        env = ENV_PREFIX + f.name.upper()
        shown = ",".join(current) if isinstance(current, tuple) else current
        if f.name in secrets:
            shown = "(set)" if current else "(not set)"
        help_text = f"{f.metadata['help']} [env {env}; now: {shown}]"
        if _types(cls)[f.name] is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            # A list field's choices are its items' (the dataclass checks them): the flag itself is "a,b".
            choices = None if isinstance(current, tuple) else f.metadata["choices"]
            parser.add_argument(flag, default=None, choices=choices, help=help_text)
    return parser


def env_values(cls: type, environ: Mapping[str, str]) -> dict[str, Any]:
    """The fields of dataclass `cls` that `MMDEMO_<FIELD>` variables in `environ` set, parsed."""
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        raw = environ.get(ENV_PREFIX + f.name.upper())
        if raw is not None:
            values[f.name] = parse_value(cls, f.name, raw)
    return values


def cli_values(defaults: Any, argv: Sequence[str] | None, secrets: Collection[str]) -> dict[str, Any]:
    """The fields that flags in `argv` set (`--clip-model ...`), parsed; `defaults` (a dataclass) shown in --help."""
    cls = type(defaults)
    args = vars(build_parser(defaults, secrets).parse_args(argv))
    return {k: parse_value(cls, k, v) if isinstance(v, str) else v for k, v in args.items() if v is not None}
