"""The decode-while-encoding pipeline: same numbers as open_clip, order kept, bad files skipped."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from mmdemo.images import open_image
from mmdemo.ingest import ImageFile, embed_files


def test_prepare_matches_open_clips_own_preprocess(session_manager, tmp_path):
    clip = session_manager.get("clip")
    pictures = [Image.new("RGB", (300, 200), (10, 200, 90)), Image.effect_mandelbrot((97, 131), (-2, -1, 1, 1), 50)]
    ours = clip.pixels(pictures)
    reference = torch.stack([clip.preprocess(p.convert("RGB")) for p in pictures])
    torch.testing.assert_close(ours, reference, atol=1e-6, rtol=0)


def test_embed_files_keeps_order_across_chunks_and_skips_bad_files(session_manager, tmp_path):
    clip = session_manager.get("clip")
    rng = np.random.default_rng(0)
    files = []
    for i in range(2 * clip.batch_size + 5):  # three chunks, the last one partial
        path = tmp_path / f"{i:03d}.jpg"
        if i in (3, clip.batch_size + 1):
            path.write_bytes(b"not a jpeg")
        else:
            Image.fromarray(rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)).save(path)
        files.append(ImageFile(str(path), path.name))
    batches = list(embed_files(clip, files, 10**8, path_of=lambda f: f, workers=3))
    names = [f.name for b in batches for f in b.items]
    assert names == [f.name for i, f in enumerate(files) if i not in (3, clip.batch_size + 1)]
    assert [s.name for b in batches for s in b.skipped] == ["003.jpg", f"{clip.batch_size + 1:03d}.jpg"]
    by_name = dict(zip(names, np.concatenate([b.vectors for b in batches]), strict=True))
    picked = [files[i] for i in (0, 40, 2 * clip.batch_size + 4)]
    direct = clip.encode_images([open_image(f.path, 10**8) for f in picked])
    np.testing.assert_allclose([by_name[f.name] for f in picked], direct, atol=1e-5)


def test_ingest_works_while_a_model_load_has_changed_the_default_dtype(session_manager, images):
    """transformers' from_config(dtype=bf16) switches torch's global default dtype while a model is
    built; an ingest running meanwhile (the startup library warm-up) must not inherit it."""
    clip = session_manager.get("clip")
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        batches = list(embed_files(clip, [ImageFile(str(p), p.name) for p in images], 10**8, path_of=lambda f: f))
        assert clip.pixels([Image.open(images[0])]).dtype == torch.float32
    finally:
        torch.set_default_dtype(previous)
    assert sum(len(b.items) for b in batches) == len(images)
