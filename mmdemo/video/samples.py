"""Videos with scenes of known times, made from photos, to measure finding a moment.

Each scene shows one photo for a few seconds, slowly zoomed in (so that its frames differ, as a
filmed scene's do); some scenes carry a sign (on-screen text). `truth.csv` gives each scene's
video, start, end, photo and sign. Encoded by PyAV (H.264, yuv420p: what a phone writes).
"""

from __future__ import annotations

import csv
import random
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
from PIL import Image

SIGNS = ("HARBOUR FERRY", "CAKE SHOP", "PLATFORM 4", "MUSEUM EXIT")


@dataclass(frozen=True)
class Scene:
    """One scene of a generated video (a row of truth.csv)."""

    video: str
    start: float
    end: float
    photo: str
    sign: str = ""
    still: str = ""  # a frame from its middle, as a JPEG (a query image), when made


def make_video(
    photos: list[Path],
    path: Path,
    seconds: list[float],
    size: tuple[int, int] = (640, 360),
    fps: int = 15,
    signs: dict[int, str] | None = None,
    stills: Path | None = None,
    tags: dict[str, str] | None = None,
) -> list[Scene]:
    """A video of one scene per photo, each `seconds[i]` long; `signs` draws a sign on some scenes (by index);
    with `stills`, each scene's middle frame is saved there too (what someone with a still would search by);
    `tags`, the container's metadata as phones write it (creation_time, location, make, model: a .mov keeps all).
    """
    import av

    from mmdemo.text.signs import Damage, draw_sign

    signs = signs or {}
    scenes, start = [], 0.0
    path.parent.mkdir(parents=True, exist_ok=True)
    # QuickTime's own keys (com.apple.quicktime.*) are written as an iPhone writes them only when asked.
    options = {"movflags": "use_metadata_tags"} if any("." in key for key in tags or {}) else {}
    with av.open(str(path), "w", options=options) as container:
        container.metadata.update(tags or {})
        stream = container.add_stream("libx264", rate=fps, options={"preset": "ultrafast", "crf": "23"})
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        for number, (photo, length) in enumerate(zip(photos, seconds, strict=True)):
            with Image.open(photo) as img:
                picture = img.convert("RGB").resize(size)
            if sign := signs.get(number, ""):
                picture = draw_sign(picture, sign, Damage(), seed=number)
            frames = max(1, round(length * fps))
            still = f"{path.stem}-{number}.jpg" if stills else ""
            for n in range(frames):
                zoom = 1 + 0.08 * n / frames  # a slow push in: the scene's frames are alike, not equal
                w, h = size[0] / zoom, size[1] / zoom
                box = ((size[0] - w) / 2, (size[1] - h) / 2, (size[0] + w) / 2, (size[1] + h) / 2)
                shot = picture.resize(size, box=box)
                if stills and n == frames // 2:
                    stills.mkdir(parents=True, exist_ok=True)
                    shot.save(stills / still, quality=90)
                container.mux(stream.encode(av.VideoFrame.from_ndarray(np.asarray(shot), format="rgb24")))
            scenes.append(Scene(path.name, round(start, 3), round(start + frames / fps, 3), photo.name, sign, still))
            start += frames / fps
        container.mux(stream.encode(None))
    return scenes


def read_scenes(path: Path) -> list[Scene]:
    """truth.csv, as written by make_video_set."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [Scene(r["video"], float(r["start"]), float(r["end"]), r["photo"], r["sign"], r["still"]) for r in rows]


def make_video_set(photos: list[Path], out: Path, videos: int = 4, scenes: int = 6, seed: int = 0) -> list[Scene]:
    """`videos` videos of `scenes` scenes (2 to 8 s each) from distinct photos, one sign in each video, in
    `out/videos`; each scene's middle frame in `out/stills`; `out/truth.csv` lists every scene."""
    rng = random.Random(seed)
    pool = iter(photos)
    rows: list[Scene] = []
    for number in range(videos):
        chosen = [next(pool) for _ in range(scenes)]
        lengths = [rng.choice([2.0, 3.0, 4.0, 6.0, 8.0]) for _ in chosen]
        sign = {rng.randrange(scenes): SIGNS[number % len(SIGNS)]}
        rows += make_video(
            chosen, out / "videos" / f"clip-{number:02d}.mp4", lengths, signs=sign, stills=out / "stills"
        )
    with open(out / "truth.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, [field.name for field in fields(Scene)])
        writer.writeheader()
        writer.writerows(asdict(row) for row in rows)
    return rows
