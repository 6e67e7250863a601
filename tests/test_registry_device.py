import json

import pytest
import torch

from mmdemo.errors import UnknownModelError
from mmdemo.models import device as dev
from mmdemo.models.registry import GB, REGISTRY, default_vlm, resolve
from mmdemo.models.tiny import QWEN_7B_CONFIG, qwen_config
from tests.conftest import SHARED, needs_shared


def test_resolve_registry_open_clip_pairs_and_local_dirs(tmp_path):
    assert resolve("clip-vit-b-32").pretrained == "laion2b_s34b_b79k"
    spec = resolve("ViT-L-14:datacomp_xl_s13b_b90k")
    assert (spec.family, spec.source, spec.pretrained) == ("clip", "ViT-L-14", "datacomp_xl_s13b_b90k")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "qwen3_vl", "text_config": {"hidden_size": 8}}))
    local = resolve(str(tmp_path))
    assert (local.family, local.arch, local.source) == ("qwen_vl", "qwen3_vl", str(tmp_path))


def test_unknown_model_lists_the_choices():
    with pytest.raises(UnknownModelError, match=r"Unknown model 'gpt-9'.*qwen2\.5-vl-7b"):
        resolve("gpt-9")


@pytest.mark.parametrize(
    ("gpu_gb", "model", "quant"),
    [(None, "qwen2.5-vl-3b", "none"), (80, "qwen2.5-vl-7b", "none"), (24, "qwen2.5-vl-7b", "none"),
     (16, "qwen2.5-vl-7b", "4bit"), (12, "qwen2.5-vl-7b", "4bit"), (8, "qwen2.5-vl-3b", "none")],
)  # fmt: skip
def test_default_vlm_follows_gpu_memory(gpu_gb, model, quant):
    choice = default_vlm(None if gpu_gb is None else int(gpu_gb * GB))
    assert (choice.model_id, choice.quantization) == (model, quant)
    assert choice.reason


def test_memory_estimates_shrink_with_precision():
    spec = REGISTRY["qwen2.5-vl-7b"]
    sizes = [spec.approx_bytes("float32"), spec.approx_bytes("bfloat16"), spec.approx_bytes("bfloat16", "8bit"),
             spec.approx_bytes("bfloat16", "4bit")]  # fmt: skip
    assert sizes == sorted(sizes, reverse=True)
    assert 16e9 < sizes[1] < 17e9


def test_quantization_on_cpu_falls_back_with_a_note():
    p = dev.placement_for("cpu", "auto", "4bit")
    assert p.quantization == "none" and "CUDA" in p.notes[0]
    assert dev.placement_for("cpu", "float32", "8bit").quantization == "none"


def test_cpu_dtype_follows_bf16_support():
    assert dev.pick_dtype("cpu") == ("bfloat16" if dev.cpu_has_bf16() else "float32")
    assert dev.pick_dtype("cpu", "float16") == "float16"


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_forcing_a_missing_device_is_an_error():
    with pytest.raises(ValueError, match="not available"):
        dev.pick_device("cuda")


def test_footprint_counts_parameters_and_buffers():
    module = torch.nn.BatchNorm1d(10)  # 20 parameters + 21 buffer elements (mean, var, count)
    params, nbytes = dev.footprint(module)
    assert params == 20 and nbytes == 20 * 4 + 20 * 4 + 8


@needs_shared
def test_bundled_config_is_the_real_7b_and_derives_the_real_3b():
    real_7b = json.loads((SHARED / "qwen/Qwen2.5-VL-7B-Instruct/config.json").read_text())
    assert json.loads(QWEN_7B_CONFIG.read_text()) == real_7b
    real_3b = json.loads((SHARED / "qwen/Qwen2.5-VL-3B-Instruct/config.json").read_text())
    real_3b.pop("torch_dtype")
    assert qwen_config("qwen2_5_vl", "3b") == real_3b


def test_registry_parameter_count_matches_the_3b_architecture():
    from transformers import AutoConfig, AutoModelForImageTextToText

    config = AutoConfig.for_model(**qwen_config("qwen2_5_vl", "3b"))
    with torch.device("meta"):  # no memory: just the shapes
        model = AutoModelForImageTextToText.from_config(config)
    params = sum(p.numel() for p in model.parameters())
    assert abs(params - REGISTRY["qwen2.5-vl-3b"].params) / params < 0.01
