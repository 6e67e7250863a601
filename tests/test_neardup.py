"""Near-duplicates: copies that differ in bytes (resized, re-encoded, cropped, EXIF-rotated) are found."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmdemo.embedding.ingest import ImageFile
from mmdemo.search.gallery import open_gallery
from tests.conftest import SHARED, needs_shared

PHOTOS = SHARED / "data" / "photos"


def copies_of(original: Path, out: Path) -> dict[str, str]:
    """Four altered copies of `original` in `out`: copy name -> original name."""
    image = Image.open(original).convert("RGB")
    w, h = image.size
    stem = original.stem
    image.resize((w // 2, h // 2)).save(out / f"{stem}-half.png")
    image.save(out / f"{stem}-q50.jpg", quality=50)
    image.crop((w // 40, h // 40, w - w // 40, h - h // 40)).save(out / f"{stem}-crop.png")  # 5% of each side
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to view": the pixels below are stored turned the other way
    image.rotate(90, expand=True).save(out / f"{stem}-exif.jpg", quality=95, exif=exif)
    return {f"{stem}-{kind}": original.name for kind in ("half.png", "q50.jpg", "crop.png", "exif.jpg")}


def gallery(settings, manager, name: str, mode: str = "report"):
    return open_gallery(settings.data_dir, manager.get("clip"), name, None, settings.replace(near_duplicates=mode))


def test_a_resized_copy_is_a_near_duplicate_and_a_different_image_is_not(tiny_settings, session_manager, tmp_path):
    rng = np.random.default_rng(1)
    a = Image.fromarray(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)).resize((512, 384), Image.BICUBIC)
    b = Image.fromarray(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)).resize((512, 384), Image.BICUBIC)
    a.save(tmp_path / "a.png")
    a.resize((256, 192)).save(tmp_path / "a-small.jpg", quality=60)
    b.save(tmp_path / "b.png")
    g = gallery(tiny_settings, session_manager, "near-unit")
    g.add_files([ImageFile(str(tmp_path / "a.png"), "a.png")])
    report = g.add_files([ImageFile(str(tmp_path / n), n) for n in ("a-small.jpg", "b.png")])
    assert report.near_duplicates == (("a-small.jpg", "a.png"),) and len(g) == 3  # reported, indexed anyway
    assert "near-duplicate **a-small.jpg** of a.png (indexed anyway)" in report.summary()


@needs_shared
def test_every_altered_copy_of_the_shared_photos_is_found_and_no_original_matches_another(
    tiny_settings, session_manager, tmp_path
):
    originals = sorted(p for p in PHOTOS.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    expected: dict[str, str] = {}
    for original in originals:
        expected |= copies_of(original, tmp_path)
    g = gallery(tiny_settings, session_manager, "near-shared")
    first = g.add_files([ImageFile(str(p), p.name) for p in originals])
    assert len(first.added) == len(originals) and first.near_duplicates == ()  # no false match among them
    report = g.add_files([ImageFile(str(tmp_path / name), name) for name in expected])
    # Each copy is matched to its original, or to another copy of it added just before (closer still).
    family = {**expected, **{p.name: p.name for p in originals}}
    found = {name: family[match] for name, match in report.near_duplicates}
    assert found == expected, {k: (v, found.get(k)) for k, v in expected.items() if found.get(k) != v}
    print(f"near-duplicates: {len(found)}/{len(expected)} copies found, 0 false matches among {len(originals)}")
    # Skip mode: the copies are reported and left out.
    strict = gallery(tiny_settings, session_manager, "near-skip", mode="skip")
    strict.add_files([ImageFile(str(p), p.name) for p in originals])
    skipped = strict.add_files([ImageFile(str(tmp_path / name), name) for name in expected])
    assert skipped.added == () and len(strict) == len(originals) and "not indexed" in skipped.summary()


@pytest.mark.parametrize("mode", ["off"])
def test_off_looks_for_nothing(tiny_settings, session_manager, tmp_path, mode):
    Image.new("RGB", (64, 64), (200, 10, 10)).save(tmp_path / "red.png")
    Image.new("RGB", (32, 32), (200, 10, 10)).save(tmp_path / "red-small.png")
    g = gallery(tiny_settings, session_manager, "near-off", mode=mode)
    report = g.add_files([ImageFile(str(tmp_path / n), n) for n in ("red.png", "red-small.png")])
    assert report.near_duplicates == () and len(g) == 2
