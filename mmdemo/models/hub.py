"""Can models be downloaded? Asked once, quickly; if not, the Hub libraries go offline.

Without this, a machine with no route to the Hugging Face Hub (an offline laptop, a firewall that
drops packets) waits on each library's download retries and back-off for every model — minutes
before the first request hears that a model is missing. With `HF_HUB_OFFLINE` set nothing is asked;
otherwise one HTTP request with a short timeout decides, and offline mode makes every later lookup
answer from the local cache at once (models already there still load).
"""

from __future__ import annotations

import logging
import os
import threading
import urllib.error
import urllib.request

log = logging.getLogger(__name__)
PROBE_TIMEOUT = 3.0  # seconds: the Hub answers in well under one where it is reachable

_lock = threading.Lock()
_reachable: bool | None = None


def hub_reachable(timeout: float = PROBE_TIMEOUT) -> bool:
    """True if the Hub (HF_ENDPOINT) answers; else offline mode is switched on. Probed once."""
    global _reachable
    with _lock:
        if _reachable is not None:
            return _reachable
        from huggingface_hub import constants

        if constants.is_offline_mode():
            _reachable = False
            return False
        endpoint = constants.ENDPOINT.rstrip("/")
        try:
            urllib.request.urlopen(
                urllib.request.Request(endpoint + "/api/models?limit=1", method="HEAD"), timeout=timeout
            )
            _reachable = True
        except urllib.error.HTTPError:  # it answered (a 4xx/5xx is still a reachable Hub)
            _reachable = True
        except (OSError, ValueError) as exc:
            _reachable = False
            reason = getattr(exc, "reason", None) or exc
            log.warning(
                "Hugging Face Hub unreachable at %s (%s): offline mode, models load from the local cache only",
                endpoint,
                reason,
            )
            go_offline()
        return _reachable


def go_offline() -> None:
    """Offline mode for huggingface_hub (and through it transformers and open_clip), from now on."""
    from huggingface_hub import constants

    os.environ["HF_HUB_OFFLINE"] = "1"
    constants.HF_HUB_OFFLINE = True


def probe_in_background() -> None:
    """Start the probe now (it overlaps the seconds torch and transformers take to import);
    the first model plan then finds the answer, or waits for the rest of it."""
    threading.Thread(target=hub_reachable, name="mmdemo-hub-probe", daemon=True).start()
