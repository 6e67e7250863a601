"""The model manager with tiny real models: one load per id, LRU eviction, pinning, freeing."""

import gc
import threading
import weakref

import pytest

from mmdemo.errors import ModelUnavailableError
from mmdemo.models.factory import build_manager


def test_eight_threads_asking_for_one_model_cause_one_load(tiny_settings):
    manager = build_manager(tiny_settings)
    barrier, got = threading.Barrier(8), []

    def ask():
        barrier.wait()
        got.append(manager.get("clip"))

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 8 and all(m is got[0] for m in got)
    (stats,) = manager.stats()
    assert (stats.id, stats.loads, stats.roles) == ("tiny-clip", 1, ("clip",))


def test_least_recently_used_model_is_evicted_to_fit_the_budget(tiny_settings):
    probe = build_manager(tiny_settings)
    clip_bytes = probe.get("clip").resident_bytes
    vlm_bytes = probe.get("vlm").resident_bytes
    # Room for either model alone, never for both.
    budget = max(clip_bytes, vlm_bytes) + min(clip_bytes, vlm_bytes) // 2
    manager = build_manager(tiny_settings.replace(memory_budget_gb=budget / 1e9))
    manager.get("clip")
    manager.get("vlm")
    assert not manager.is_loaded("clip") and manager.is_loaded("vlm")
    manager.get("clip")
    assert manager.is_loaded("clip") and not manager.is_loaded("vlm")
    assert {s.id: s.loads for s in manager.stats()} == {"tiny-clip": 2}
    assert manager.resident_bytes <= manager.budget_bytes


def test_pinned_models_survive_eviction(tiny_settings):
    probe = build_manager(tiny_settings)
    sizes = {name: probe.get(name).resident_bytes for name in ("clip", "vlm", "tiny-qwen3-vl")}
    budget = sizes["clip"] + max(sizes["vlm"], sizes["tiny-qwen3-vl"]) * 1.5
    manager = build_manager(tiny_settings.replace(memory_budget_gb=budget / 1e9, pinned=("clip",)))
    manager.get("clip")
    manager.get("vlm")
    manager.get("tiny-qwen3-vl")  # over budget: the unpinned VLM goes, the pinned CLIP stays
    assert manager.is_loaded("clip") and manager.is_loaded("tiny-qwen3-vl") and not manager.is_loaded("vlm")
    assert [s.pinned for s in manager.stats() if s.id == "tiny-clip"] == [True]


def test_unload_really_frees_the_weights(tiny_settings):
    manager = build_manager(tiny_settings)
    vlm = manager.get("vlm")
    weights = weakref.ref(vlm.model)
    assert manager.resident_bytes == vlm.resident_bytes > 0
    del vlm
    assert manager.unload("vlm") is True
    gc.collect()
    assert weights() is None, "the model is still referenced somewhere"
    assert manager.resident_bytes == 0 and manager.stats() == []
    assert manager.unload("vlm") is False


def test_stats_describe_each_resident_model(tiny_settings):
    manager = build_manager(tiny_settings)
    clip = manager.get("clip")
    vlm = manager.get("vlm")
    stats = {s.id: s for s in manager.stats()}
    assert list(stats) == ["tiny-qwen2.5-vl", "tiny-clip"]  # most recently used first
    for model, s in ((clip, stats["tiny-clip"]), (vlm, stats["tiny-qwen2.5-vl"])):
        params = sum(p.numel() for p in model.model.parameters())
        assert (s.device, s.dtype, s.quantization) == ("cpu", "float32", "none")
        assert s.parameters == params and s.resident_bytes >= params * 4
        assert s.load_seconds > 0 and s.loads == 1
    assert stats["tiny-clip"].family == "clip" and stats["tiny-qwen2.5-vl"].family == "qwen_vl"


def test_quantization_request_on_cpu_loads_unquantized_with_a_note(tiny_settings):
    manager = build_manager(tiny_settings.replace(quantization="8bit"))
    manager.get("vlm")
    (stats,) = manager.stats()
    assert stats.quantization == "none" and "needs a CUDA GPU" in stats.notes[0]


@pytest.mark.parametrize("setting", ["clip_model", "vlm_model"])
def test_a_model_missing_offline_gives_one_clear_message(tiny_settings, setting):
    model_id = {"clip_model": "clip-vit-b-32", "vlm_model": "qwen2.5-vl-3b"}[setting]
    manager = build_manager(tiny_settings.replace(**{setting: model_id}))
    with pytest.raises(ModelUnavailableError) as info:
        manager.get(model_id)
    message = str(info.value)
    assert model_id in message and "hub" in message and "hf download" in message and "MMDEMO_" in message
    assert "Traceback" not in message
    assert manager.errors[model_id] == message and not manager.is_loaded(model_id)


def test_background_preload_records_failures_instead_of_raising(tiny_settings):
    manager = build_manager(tiny_settings.replace(clip_model="clip-vit-b-32"))
    manager.preload(["clip", "vlm"], background=True).join(timeout=120)
    assert manager.is_loaded("vlm") and not manager.is_loaded("clip")
    assert "clip-vit-b-32" in manager.errors


def test_an_unknown_clip_architecture_is_not_reported_as_a_missing_download(tiny_settings):
    from mmdemo.errors import UnknownModelError

    manager = build_manager(tiny_settings.replace(clip_model="ViT-B-99:openai"))
    with pytest.raises(UnknownModelError, match="'ViT-B-99' is not an open_clip architecture"):
        manager.get("clip")


def test_any_open_clip_tag_missing_offline_names_its_hub_repo(tiny_settings):
    manager = build_manager(tiny_settings.replace(clip_model="ViT-B-16:laion2b_s34b_b88k"))
    with pytest.raises(ModelUnavailableError, match=r"hf download laion/CLIP-ViT-B-16-laion2B-s34B-b88K\b"):
        manager.get("clip")


def _double_on_the_compute_thread(x: int) -> int:
    from mmdemo.models import compute

    return compute.run(lambda: 2 * x)


def test_the_compute_thread_works_in_a_forked_child():
    """ZeroGPU runs GPU calls in a fork of the server: the child needs a compute thread of its own."""
    import multiprocessing

    from mmdemo.models import compute

    assert compute.run(lambda: 1) == 1  # the parent's compute thread exists before the fork
    context = multiprocessing.get_context("fork")
    with context.Pool(1) as pool:
        assert pool.apply_async(_double_on_the_compute_thread, (21,)).get(timeout=20) == 42


def test_a_query_for_a_resident_model_does_not_wait_for_another_models_load(tiny_settings):
    """A load runs on the compute thread with safe points: while a real-size ViT-B-32 is built
    (random weights, seconds of torch work, as reading a 7B VLM is minutes), a text query to the
    resident tiny CLIP answers, with the same vectors as when nothing loads."""
    import threading
    import time

    import numpy as np

    from mmdemo.models import compute
    from mmdemo.models.factory import build_manager

    manager = build_manager(tiny_settings)
    clip = manager.get("clip")
    expected = clip.encode_texts(["a red square"])
    loaded = threading.Event()

    def load() -> None:
        manager.get("random-clip-vit-b-32")
        loaded.set()

    loader = threading.Thread(target=load)
    loader.start()
    try:
        deadline = time.monotonic() + 30
        while not compute.busy() and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.3)  # the long job has begun: a short one queued now would wait for it without safe points
        assert not loaded.is_set(), "the load was too quick to overlap with anything"
        started = time.monotonic()
        vectors = clip.encode_texts(["a red square"])
        waited = time.monotonic() - started
        assert not loaded.is_set(), f"the query waited {waited:.1f}s, for the whole load"
        np.testing.assert_allclose(vectors, expected, rtol=1e-5, atol=1e-6)
        assert vectors.dtype == expected.dtype
    finally:
        loader.join(timeout=120)
    assert manager.is_loaded("random-clip-vit-b-32")
