"""Qwen-VL loader: AutoProcessor + the model class transformers maps the checkpoint to.

`AutoModelForImageTextToText` resolves Qwen2.5-VL checkpoints to
`Qwen2_5_VLForConditionalGeneration` and Qwen3-VL ones to `Qwen3VLForConditionalGeneration`, so
one code path serves both families; only the image patch size differs (14 vs 16 pixels).
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmdemo.errors import ModelUnavailableError
from mmdemo.models import compute
from mmdemo.models.device import Placement, footprint
from mmdemo.models.registry import ModelSpec

log = logging.getLogger(__name__)


@dataclass
class VisionLanguageModel:
    """A resident Qwen-VL model and its processor (tokenizer, chat template, image processor)."""

    model_id: str
    model: Any  # transformers PreTrainedModel
    processor: Any  # transformers ProcessorMixin
    placement: Placement
    arch: str  # "qwen2_5_vl" or "qwen3_vl"
    num_parameters: int = 0
    resident_bytes: int = 0

    @property
    def image_patch_size(self) -> int:
        """Pixels per vision patch side; qwen_vl_utils resizes images to multiples of 2x this."""
        return 16 if self.arch == "qwen3_vl" else 14

    def close(self) -> None:
        """Drop the references to the weights so they can be freed."""
        self.model = None
        self.processor = None


def quantization_config(quantization: str) -> Any:
    """bitsandbytes settings: int8, or nf4 with double quantization and bf16 compute."""
    import torch
    from transformers import BitsAndBytesConfig

    if quantization == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    if quantization == "4bit":
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16,
        )
    return None


FILES = ["*.json", "*.safetensors", "*.txt", "*.jinja", "*.model", "*.tiktoken"]  # what from_pretrained reads


def fetch_vlm(spec: ModelSpec) -> Path | None:
    """The local folder of a hub model, downloaded first if needed; None for local or random models.

    Pure I/O, so it runs on the requesting thread, not the compute thread: a 15 GB first download
    must not hold up other visitors' searches (only reading the local files into memory does).
    """
    if spec.random_weights or spec.tiny or Path(spec.source).expanduser().is_dir():
        return None
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(spec.source, allow_patterns=FILES))
    except (OSError, ValueError) as exc:  # offline and not cached, no such repo, a network error
        what, hint = f"transformers {spec.source}", f"hf download {spec.download}"
        raise ModelUnavailableError(spec.id, what, hint, str(exc)) from exc


def load_vlm(spec: ModelSpec, placement: Placement, location: Path | None = None) -> VisionLanguageModel:
    """Load processor and model from a HF repo id or local folder onto `placement`.

    `location` is the built folder of a tiny or random model. Random models (profile "random")
    are initialised from the real config instead of reading weights: real sizes, no download.
    """
    import torch
    from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

    source = str(location) if location is not None else spec.source
    # The processor (tokenizer, chat template: a second of Python, no torch op) loads on a helper
    # thread meanwhile: on the compute thread it would be a second with no safe point for others.
    helper = ThreadPoolExecutor(1, thread_name_prefix="mmdemo-processor")
    processor_future = helper.submit(AutoProcessor.from_pretrained, source)
    helper.shutdown(wait=False)
    try:
        if spec.random_weights:
            config = AutoConfig.from_pretrained(source)
            with torch.device(placement.device):
                model = AutoModelForImageTextToText.from_config(config, dtype=placement.torch_dtype)
            model = model.to(placement.torch_dtype)
        else:
            quant = quantization_config(placement.quantization)
            model = AutoModelForImageTextToText.from_pretrained(
                source,
                dtype=placement.torch_dtype,
                device_map=placement.device,
                **({"quantization_config": quant} if quant is not None else {}),
            )
        processor = compute.result(processor_future)  # short jobs run while it waits
    except OSError as exc:  # transformers reports missing repos/files (and no network) as OSError
        raise ModelUnavailableError(
            spec.id, f"transformers {source}", f"hf download {spec.download}", str(exc)
        ) from exc
    model.eval()
    params, nbytes = footprint(model)
    log.info("loaded %s (%s) on %s in %s", spec.id, type(model).__name__, placement.device, placement.dtype)
    return VisionLanguageModel(
        model_id=spec.id,
        model=model,
        processor=processor,
        placement=placement,
        arch=spec.arch or "qwen2_5_vl",
        num_parameters=params,
        resident_bytes=nbytes,
    )
