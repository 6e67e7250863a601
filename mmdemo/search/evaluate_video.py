"""Finding a moment, measured: hit@1 by an image of a scene and by the words of a sign on screen, on the
videos of `python -m mmdemo eval make-video-set` (`python -m mmdemo eval moments`). A hit is the right
video, and a moment that holds the scene's middle second."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from mmdemo.search.store import Hit
from mmdemo.video.samples import Scene

Search = Callable[[str, str | None], list[Hit]]  # (words, an image's path or None) -> hits, best first


@dataclass(frozen=True)
class MomentResult:
    """Hits at 1 over the queries of one kind."""

    kind: str  # "image" or "text"
    queries: int
    hits: int

    @property
    def hit_at_1(self) -> float:
        return self.hits / self.queries if self.queries else 0.0


def found(hit: Hit, scene: Scene) -> bool:
    middle = (scene.start + scene.end) / 2
    return hit.item.moment and Path(hit.item.name).name == scene.video and hit.item.start <= middle < hit.item.end


def evaluate_moments(search: Search, truth: Sequence[Scene], stills: Path) -> list[MomentResult]:
    """Each scene looked for by a still of it (its middle frame, in `stills`); each sign by its words."""
    by_image = [bool(hits) and found(hits[0], s) for s in truth for hits in [search("", str(stills / s.still))]]
    signs = [s for s in truth if s.sign]
    by_text = [bool(hits) and found(hits[0], s) for s in signs for hits in [search(s.sign.lower(), None)]]
    return [MomentResult("image", len(truth), sum(by_image)), MomentResult("text", len(signs), sum(by_text))]


def table(results: Sequence[MomentResult]) -> str:
    lines = ["| query by | queries | hit@1 |", "|---|---|---|"]
    return "\n".join([*lines, *(f"| {r.kind} | {r.queries} | {r.hit_at_1:.3f} |" for r in results)])
