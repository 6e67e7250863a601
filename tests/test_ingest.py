"""The decode-while-encoding pipeline: same numbers as open_clip, order kept, bad files skipped."""

from __future__ import annotations

import dataclasses
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter

from mmdemo.embedding import ingest
from mmdemo.embedding.images import open_image
from mmdemo.embedding.ingest import ImageFile, embed_files
from mmdemo.models import compute


def test_pixels_match_open_clips_own_preprocess(session_manager):
    """Resizing runs in torch's uint8 kernels rather than Pillow's: within 2 levels, nearly all equal."""
    clip = session_manager.get("clip")
    rng = np.random.default_rng(1)
    photo = Image.fromarray(rng.integers(0, 255, (150, 200, 3), dtype=np.uint8)).filter(ImageFilter.GaussianBlur(2))
    pictures = [
        photo,  # upscaled, landscape
        photo.transpose(Image.Transpose.ROTATE_90).resize((450, 600)),  # downscaled, portrait
        Image.new("RGB", (300, 200), (10, 200, 90)),
        Image.effect_mandelbrot((97, 131), (-2, -1, 1, 1), 50),  # grey
    ]
    pixels = clip.pixels(pictures)
    assert pixels.dtype == torch.uint8 and pixels.shape == (4, 3, *clip.image_size)
    # Normalised as the model would get them, here kept in float32 to compare closely.
    as_fp32 = dataclasses.replace(clip, placement=dataclasses.replace(clip.placement, dtype="float32"))
    ours = compute.run(as_fp32.model_input, pixels)
    reference = torch.stack([clip.preprocess(p.convert("RGB")) for p in pictures])
    level = 1 / 255 / min(clip._transform_parts[1].std)  # one uint8 step, normalised
    torch.testing.assert_close(ours, reference, atol=2 * level + 1e-6, rtol=0)
    assert ((ours - reference).abs() > 1e-5).float().mean() < 0.01
    assert compute.run(clip.model_input, pixels).dtype == clip.placement.torch_dtype
    arrays = clip.pixels([np.array(p.convert("RGB")) for p in pictures])
    assert torch.equal(arrays, pixels)


@pytest.mark.parametrize(("batches_per_turn", "overlap"), [(1, False), (8, False), (8, True)])
def test_embed_files_keeps_order_across_chunks_and_skips_bad_files(
    session_manager, tmp_path, monkeypatch, batches_per_turn, overlap
):
    # Several turns or one on a CPU; or a batch a turn decoded ahead, as on a GPU.
    monkeypatch.setattr(ingest, "CPU_BATCHES_PER_TURN", batches_per_turn)
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

    def store(item: ImageFile, image: Image.Image) -> None:
        if item.name == "007.jpg":  # its thumbnail cannot be written
            raise OSError(28, "No space left on device")

    batches = list(embed_files(clip, files, 10**8, lambda f: f, workers=3, on_decoded=store, overlap=overlap))
    names = [f.name for b in batches for f in b.items]
    assert names == [f.name for i, f in enumerate(files) if i not in (3, 7, clip.batch_size + 1)]
    skipped = [(s.name, s.reason) for b in batches for s in b.skipped]
    assert [name for name, _ in skipped] == ["003.jpg", "007.jpg", f"{clip.batch_size + 1:03d}.jpg"]
    assert skipped[1][1] == "cannot be stored (No space left on device)"
    by_name = dict(zip(names, np.concatenate([b.vectors for b in batches]), strict=True))
    picked = [files[i] for i in (0, 40, 2 * clip.batch_size + 4)]
    direct = clip.encode_images([open_image(f.path, 10**8) for f in picked])
    np.testing.assert_allclose([by_name[f.name] for f in picked], direct, atol=1e-5)


def test_a_transform_mmdemo_does_not_recognise_runs_whole(session_manager, tmp_path):
    clip = session_manager.get("clip")
    custom = dataclasses.replace(clip, preprocess=lambda image: clip.preprocess(image))  # no .transforms
    assert custom.pixels([Image.new("RGB", (50, 40))]).dtype == torch.float32
    path = tmp_path / "a.png"
    Image.effect_mandelbrot((97, 131), (-2, -1, 1, 1), 50).convert("RGB").save(path)
    files = [ImageFile(str(path), path.name), ImageFile(str(tmp_path / "missing.png"), "missing.png")]
    (batch,) = embed_files(custom, files, 10**8, path_of=lambda f: f)
    assert [s.name for s in batch.skipped] == ["missing.png"]
    reference = clip.encode_pixels(clip.preprocess(open_image(path, 10**8)).unsqueeze(0))
    np.testing.assert_allclose(batch.vectors, reference, atol=1e-5)


def test_ingest_works_while_a_model_load_has_changed_the_default_dtype(session_manager, images):
    """transformers' from_config(dtype=bf16) switches torch's global default dtype while a model is
    built; an ingest running meanwhile (the startup library warm-up) must not inherit it."""
    clip = session_manager.get("clip")
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        batches = list(embed_files(clip, [ImageFile(str(p), p.name) for p in images], 10**8, path_of=lambda f: f))
        assert clip.pixels([Image.open(images[0])]).dtype == torch.uint8
    finally:
        torch.set_default_dtype(previous)
    assert sum(len(b.items) for b in batches) == len(images)


def test_on_a_cpu_decoding_waits_while_another_model_job_runs(session_manager, tmp_path):
    """A decoder beside a CPU forward slows the forward several-fold: decoders wait their turn."""
    clip = session_manager.get("clip")
    assert clip.placement.device == "cpu"
    paths = []
    for i in range(5):
        paths.append(tmp_path / f"{i}.png")
        Image.new("RGB", (40, 30), (i * 40, 0, 0)).save(paths[-1])
    release, started = threading.Event(), threading.Event()
    other_user = compute.submit(lambda: (started.set(), release.wait(10)))  # e.g. a chat reply
    started.wait(5)
    decoded: list[str] = []
    files = [ImageFile(str(p), p.name) for p in paths]
    with ThreadPoolExecutor(1) as pool:
        batches = pool.submit(
            lambda: list(embed_files(clip, files, 10**8, lambda f: f, on_decoded=lambda f, _: decoded.append(f.name)))
        )
        time.sleep(0.5)
        assert decoded == [] and not batches.done()
        release.set()
        assert sum(len(b.items) for b in batches.result(timeout=30)) == 5
    assert other_user.result() == (None, True) and sorted(decoded) == sorted(p.name for p in paths)


def test_an_ingest_run_as_a_model_job_does_not_wait_for_itself(session_manager, tmp_path):
    clip = session_manager.get("clip")
    path = tmp_path / "a.png"
    Image.new("RGB", (40, 30), (9, 9, 9)).save(path)
    files = [ImageFile(str(path), path.name)]
    job = compute.submit(lambda: list(embed_files(clip, files, 10**8, lambda f: f)))
    assert len(job.result(timeout=30)[0].items) == 1


def test_light_compute_jobs_let_decoders_run_but_model_jobs_do_not():
    """Resizing (a light job, one core) runs beside decoders; a forward queued behind it holds them."""
    release, started = threading.Event(), threading.Event()
    light = compute.submit_light(lambda: (started.set(), release.wait(10)))
    assert started.wait(5)
    assert compute.wait_idle(timeout=0.2) and not compute.busy()
    heavy = compute.submit(lambda: "forward")
    assert not compute.wait_idle(timeout=0.2)
    release.set()
    assert light.result(5) == (None, True) and heavy.result(5) == "forward" and compute.wait_idle(5)


def test_a_light_job_from_the_compute_thread_runs_at_once_and_keeps_its_error():
    def nested() -> tuple[int, Exception | None]:
        done = compute.submit_light(lambda: 7)
        failed = compute.submit_light(lambda: 1 / 0)
        return done.result(), failed.exception()

    value, error = compute.run(nested)
    assert value == 7 and isinstance(error, ZeroDivisionError)
