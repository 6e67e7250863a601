"""Known models, as data, and the rules that turn a setting into a `ModelSpec`.

Nothing here imports torch: the registry is read by the CLI, the settings help and the UI.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from mmdemo.errors import UnknownModelError

Family = Literal["clip", "qwen_vl"]
VlmArch = Literal["qwen2_5_vl", "qwen3_vl"]

# Bytes per parameter, used only to plan evictions before a load (the real footprint is
# measured after it). Quantized figures include the layers bitsandbytes leaves in bf16.
_BYTES_PER_PARAM = {"float32": 4.0, "bfloat16": 2.0, "float16": 2.0, "8bit": 1.15, "4bit": 0.65}

GB = 1_000_000_000  # decimal: GPU makers sell "24 GB" cards that hold 24e9 bytes, not 24 GiB


@dataclass(frozen=True)
class ModelSpec:
    """One loadable model: what it is, where it comes from and roughly what it costs."""

    id: str
    family: Family
    source: str  # open_clip architecture (or local-dir:/hf-hub: name), or a HF repo id / local dir
    params: int  # approximate parameter count
    license: str
    pretrained: str | None = None  # open_clip pretrained tag or weights file; None = random weights
    arch: VlmArch | None = None  # VLM architecture: decides the image patch size, etc.
    download: str = ""  # HF repo a user can pre-download ("" when nothing can be downloaded)
    multilingual: bool = False
    tiny: bool = False  # built offline by mmdemo.models.tiny (random weights)
    random_weights: bool = False  # real architecture, random weights (profile "random")
    note: str = ""

    def approx_bytes(self, dtype: str, quantization: str = "none") -> int:
        """Approximate resident size for planning evictions."""
        key = quantization if quantization in ("8bit", "4bit") else dtype
        return int(self.params * _BYTES_PER_PARAM.get(key, 4.0))

    @property
    def synthetic(self) -> bool:
        """True when the weights are random (tiny or random profile)."""
        return self.tiny or self.random_weights


_LAION = "MIT (LAION / open_clip)"
_APACHE = "Apache-2.0"
_QWEN_RESEARCH = "Qwen Research License: non-commercial use only"

MODELS: tuple[ModelSpec, ...] = (
    # CLIP family. laion2b_s34b_b79k: ImageNet zero-shot 66.6% vs 63.3% for OpenAI's weights,
    # at the same cost (open_clip's results table), so it is the default.
    ModelSpec(
        "clip-vit-b-32",
        "clip",
        "ViT-B-32",
        151_277_313,
        _LAION,
        pretrained="laion2b_s34b_b79k",
        download="laion/CLIP-ViT-B-32-laion2B-s34B-b79K",
    ),
    ModelSpec(
        "clip-vit-b-32-openai",
        "clip",
        "ViT-B-32",
        151_277_313,
        "MIT (OpenAI)",
        pretrained="openai",
        download="timm/vit_base_patch32_clip_224.openai",
    ),
    ModelSpec(
        "clip-xlm-roberta-b-32",
        "clip",
        "xlm-roberta-base-ViT-B-32",
        366_137_857,
        _LAION,
        pretrained="laion5b_s13b_b90k",
        download="laion/CLIP-ViT-B-32-xlm-roberta-base-laion5B-s13B-b90k",
        multilingual=True,
        note="multilingual text encoder: queries in ~100 languages",
    ),
    # Multilingual: the default for MMDEMO_LANGUAGE=zh is NLLB-CLIP base (see MULTILINGUAL_CLIP).
    ModelSpec(
        "clip-nllb-siglip-b",
        "clip",
        "nllb-clip-base-siglip",
        507_000_000,
        "CC-BY-NC-4.0 (NLLB text encoder): non-commercial use only",
        pretrained="v1",
        download="visheratin/nllb-clip-base-siglip",
        multilingual=True,
        note="multilingual (NLLB-200's 200 languages): Chinese text-to-image R@1 48.8% on Crossmodal-3600",
    ),
    ModelSpec(
        "clip-siglip-i18n-b-16",
        "clip",
        "ViT-B-16-SigLIP-i18n-256",
        370_000_000,
        _APACHE,
        pretrained="webli",
        download="timm/ViT-B-16-SigLIP-i18n-256",
        multilingual=True,
        note="multilingual SigLIP (WebLI, no language filter), 250k-token vocabulary",
    ),
    ModelSpec("random-clip-vit-b-32", "clip", "ViT-B-32", 151_277_313, "n/a (random weights)", random_weights=True),
    ModelSpec(
        "tiny-clip-multilingual",
        "clip",
        "mmdemo-tiny-mclip",
        1_000_000,
        "n/a (random weights)",
        pretrained="open_clip_model.safetensors",
        multilingual=True,
        tiny=True,
        note="a tiny XLM-R-architecture text tower with a Chinese+English tokenizer (tests)",
    ),
    ModelSpec(
        "tiny-clip",
        "clip",
        "mmdemo-tiny-clip",
        3_500_000,
        "n/a (random weights)",
        pretrained="open_clip_model.safetensors",
        tiny=True,
    ),
    # Qwen-VL family.
    ModelSpec(
        "qwen2.5-vl-3b",
        "qwen_vl",
        "Qwen/Qwen2.5-VL-3B-Instruct",
        3_754_622_976,
        _QWEN_RESEARCH,
        arch="qwen2_5_vl",
        download="Qwen/Qwen2.5-VL-3B-Instruct",
    ),
    ModelSpec(
        "qwen2.5-vl-7b",
        "qwen_vl",
        "Qwen/Qwen2.5-VL-7B-Instruct",
        8_292_166_656,
        _APACHE,
        arch="qwen2_5_vl",
        download="Qwen/Qwen2.5-VL-7B-Instruct",
    ),
    ModelSpec(
        "qwen3-vl-2b",
        "qwen_vl",
        "Qwen/Qwen3-VL-2B-Instruct",
        2_127_532_032,
        _APACHE,
        arch="qwen3_vl",
        download="Qwen/Qwen3-VL-2B-Instruct",
    ),
    ModelSpec(
        "qwen3-vl-4b",
        "qwen_vl",
        "Qwen/Qwen3-VL-4B-Instruct",
        4_437_815_808,
        _APACHE,
        arch="qwen3_vl",
        download="Qwen/Qwen3-VL-4B-Instruct",
    ),
    ModelSpec(
        "qwen3-vl-8b",
        "qwen_vl",
        "Qwen/Qwen3-VL-8B-Instruct",
        8_767_123_696,
        _APACHE,
        arch="qwen3_vl",
        download="Qwen/Qwen3-VL-8B-Instruct",
    ),
    ModelSpec(
        "random-qwen2.5-vl-3b",
        "qwen_vl",
        "random-qwen2.5-vl-3b",
        3_754_622_976,
        "n/a (random weights)",
        arch="qwen2_5_vl",
        random_weights=True,
    ),
    ModelSpec(
        "tiny-qwen2.5-vl",
        "qwen_vl",
        "tiny-qwen2.5-vl",
        10_100_000,
        "n/a (random weights)",
        arch="qwen2_5_vl",
        tiny=True,
    ),
    ModelSpec(
        "tiny-qwen3-vl", "qwen_vl", "tiny-qwen3-vl", 10_300_000, "n/a (random weights)", arch="qwen3_vl", tiny=True
    ),
)
REGISTRY: dict[str, ModelSpec] = {spec.id: spec for spec in MODELS}

# The CLIP for Chinese (MMDEMO_LANGUAGE=zh). Published figures, open_clip's own table
# (docs/openclip_multilingual_retrieval_results.csv): NLLB-CLIP base, Chinese text-to-image recall@1
# 48.8% on Crossmodal-3600 and 58.4% on multilingual MS-COCO (R@10 92.4%); the table's only other
# entry under 1B parameters is NLLB-CLIP large (52.1% on Crossmodal-3600), and xlm-roberta-large
# ViT-H-14, at 59.1%, is a ViT-H. It lists no figures for xlm-roberta-base ViT-B-32 or SigLIP i18n.
# Its licence is non-commercial: a commercial deployment picks clip-xlm-roberta-b-32 (MIT).
MULTILINGUAL_CLIP = "clip-nllb-siglip-b"

# What each profile uses when a role's setting is "auto". The default profile's VLM depends on
# the GPU and is picked by `default_vlm`.
PROFILE_DEFAULTS: dict[str, dict[str, str]] = {
    "default": {"clip": "clip-vit-b-32", "vlm": "auto"},
    "tiny": {"clip": "tiny-clip", "vlm": "tiny-qwen2.5-vl"},
    "random": {"clip": "random-clip-vit-b-32", "vlm": "random-qwen2.5-vl-3b"},
}


@dataclass(frozen=True)
class VlmChoice:
    """The VLM picked for some hardware, and why (shown in the System tab and the log)."""

    model_id: str
    quantization: str
    reason: str


def default_vlm(gpu_total_bytes: int | None) -> VlmChoice:
    """Pick the VLM for the hardware: see the hardware table in docs/models.md for the reasoning."""
    if gpu_total_bytes is None:
        return VlmChoice("qwen2.5-vl-3b", "none", "no GPU: the 3B model is the one that runs at usable speed")
    gb = gpu_total_bytes / GB
    if gb >= 24:
        return VlmChoice("qwen2.5-vl-7b", "none", f"{gb:.0f} GB GPU: the 7B model fits in bf16")
    if gb >= 12:
        # 7B in nf4 (~6 GB) scores above 3B in bf16 (~7.5 GB) on the Qwen2.5-VL benchmarks, fits
        # the same memory, and is Apache-2.0 where the 3B is research-only.
        return VlmChoice("qwen2.5-vl-7b", "4bit", f"{gb:.0f} GB GPU: the 7B model in 4-bit (nf4)")
    return VlmChoice("qwen2.5-vl-3b", "none", f"{gb:.0f} GB GPU: only the 3B model fits")


def resolve(name: str) -> ModelSpec:
    """Turn a model setting (registry id, open_clip name, or local path) into a spec."""
    if name in REGISTRY:
        return REGISTRY[name]
    if name.startswith(("local-dir:", "hf-hub:")):
        return ModelSpec(name, "clip", name, 0, "see the model's own card", download=name.split(":", 1)[1])
    path = Path(name).expanduser()
    if path.is_dir() and (path / "config.json").is_file():
        return _local_vlm_spec(name, path)
    if ":" in name and not path.exists():
        arch, tag = name.split(":", 1)
        return ModelSpec(name, "clip", arch, 0, "see the model's own card", pretrained=tag or None)
    known = ", ".join(REGISTRY)
    raise UnknownModelError(
        f"Unknown model '{name}'. Use one of: {known}; or an open_clip 'ARCH:TAG', "
        "'local-dir:/path', 'hf-hub:org/repo', or a local Hugging Face model directory."
    )


def _local_vlm_spec(name: str, path: Path) -> ModelSpec:
    config = json.loads((path / "config.json").read_text())
    model_type = config.get("model_type", "")
    arch: VlmArch = "qwen3_vl" if model_type.startswith("qwen3_vl") else "qwen2_5_vl"
    text = config.get("text_config", config)
    hidden, layers = text.get("hidden_size", 0), text.get("num_hidden_layers", 0)
    vocab = text.get("vocab_size", config.get("vocab_size", 0))
    params = 12 * hidden * hidden * layers + 2 * vocab * hidden  # decoder-only rule of thumb
    return replace(
        ModelSpec(name, "qwen_vl", str(path), params, "see the model's own card", arch=arch),
        download=str(path),
    )
