"""Errors whose message is meant for the person using the app.

The UI shows `str(error)` of any `UserFacingError` as-is (no stack trace); everything else is
logged with its traceback and reported as a short generic message.
"""

from __future__ import annotations


class UserFacingError(Exception):
    """An error whose message is written for the user of the app.

    Either a message as is (`UserFacingError("...")`, English), or a key of the app's words with
    its fields (`UserFacingError(key="search.empty_query")`): then `str()` is the English text and
    `translated(language)` the text in the visitor's language.
    """

    def __init__(self, message: str = "", /, *, key: str | None = None, **fields: object) -> None:
        if key is not None:
            from mmdemo.i18n import DEFAULT, text

            message = text(key, DEFAULT, **fields)
        super().__init__(message)
        self.key, self.fields = key, fields

    def again(self) -> UserFacingError:
        """A new error with the same message and key (to raise once more, in another thread)."""
        fresh = UserFacingError(str(self))
        fresh.key, fresh.fields = self.key, self.fields
        return fresh

    def translated(self, language: str) -> str:
        """The message in `language` (as is when it was not given as a key)."""
        if self.key is None:
            return str(self)
        from mmdemo.i18n import text

        return text(self.key, language, **self.fields)


class UnknownModelError(UserFacingError):
    """A model id that is neither in the registry nor a usable local path."""


class ModelUnavailableError(UserFacingError):
    """A model whose files are not on this machine and could not be downloaded."""

    def __init__(self, model_id: str, what: str, download_hint: str, cause: str):
        from huggingface_hub import constants  # where transformers and open_clip both cache

        self.model_id = model_id
        self.cache_dir = cache_dir = str(constants.HF_HUB_CACHE)
        super().__init__(
            f"Model '{model_id}' ({what}) is not available offline and could not be downloaded.\n"
            f"Looked in the Hugging Face cache: {cache_dir}\n"
            f"Fix: on a machine with network run `{download_hint}` (then copy the cache, or set "
            f"HF_HOME), or point the setting at a local copy, e.g. "
            f"MMDEMO_VLM_MODEL=/path/to/model-dir or MMDEMO_CLIP_MODEL=ARCH:/path/to/weights.\n"
            f"Cause: {cause}"
        )
