"""open_clip loader and the small wrapper the features use: images/texts in, unit vectors out."""

from __future__ import annotations

import functools
import importlib.util
import json
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mmdemo.errors import ModelUnavailableError, UnknownModelError
from mmdemo.models import compute
from mmdemo.models.device import Placement, footprint
from mmdemo.models.registry import ModelSpec

log = logging.getLogger(__name__)


@dataclass
class ClipModel:
    """A resident open_clip model with its own preprocessing and tokenizer.

    `encode_*` return float32 arrays of L2-normalised rows, whatever dtype the model runs in.
    """

    model_id: str
    model: Any  # open_clip.CLIP (torch.nn.Module)
    preprocess: Callable[[Any], Any]  # PIL image -> CHW float tensor (open_clip's eval transform)
    tokenizer: Callable[[Sequence[str]], Any]
    placement: Placement
    embed_dim: int  # dimension of the joint embedding space
    batch_size: int = 32
    siglip: bool = False  # sigmoid scores (independent per label) instead of a softmax
    num_parameters: int = 0
    resident_bytes: int = 0
    # Names these exact weights and dtype, for caches of embeddings. Random weights differ on
    # every load: their key is unique to this load ("random:..."), never reused across loads.
    weights_key: str = ""

    @property
    def input_size(self) -> int:
        """Shorter side, in pixels, that preprocessing resizes images to."""
        return min(self.image_size)

    @property
    def stable_weights(self) -> bool:
        """Whether embeddings from these weights may be cached on disk."""
        return bool(self.weights_key) and not self.weights_key.startswith("random:")

    @property
    def logit_scale(self) -> float:
        """exp(learned temperature): multiplies cosine similarities before softmax/sigmoid."""
        return float(self.model.logit_scale.detach().exp())

    @property
    def logit_bias(self) -> float:
        """SigLIP's learned bias (0 for CLIP)."""
        bias = getattr(self.model, "logit_bias", None)
        return float(bias.detach()) if bias is not None else 0.0

    @property
    def image_size(self) -> tuple[int, int]:
        """(height, width) of one preprocessed image."""
        size = getattr(self.model.visual, "image_size", 224)
        height, width = size if isinstance(size, tuple | list) else (size, size)
        return int(height), int(width)

    @functools.cached_property
    def _transform_parts(self) -> tuple[Any, Any]:
        return _split_transform(self.preprocess)

    def pixels(self, images: Sequence[Any]) -> Any:
        """Preprocess decoded images (PIL, or uint8 (H, W, 3) arrays) into one model batch.

        Runs on the compute thread: open_clip's geometric steps (resize, crop) become
        torchvision's uint8 tensor kernels, several times faster than Pillow's on a CPU and
        within 2 levels of Pillow's pixels (usually equal; tested). The result is uint8
        (N, 3, H, W); ToTensor + Normalize happen in `encode_pixels`, on the model's device.
        For a transform we do not recognise, open_clip's whole preprocess runs instead and the
        batch is float32.
        """
        return compute.run(self._pixels, images)

    def _pixels(self, images: Sequence[Any]) -> Any:
        import torch
        from PIL import Image

        steps, _ = self._transform_parts
        if steps is None:
            as_pil = [Image.fromarray(im) if isinstance(im, np.ndarray) else im.convert("RGB") for im in images]
            return torch.stack([self.preprocess(im) for im in as_pil]).to(torch.float32)
        # Stored (N, H, W, 3) like the images themselves (the kernels keep that layout, so each
        # copy into the batch is a plain one), handed out as an (N, 3, H, W) view. The copies go
        # through numpy: torch's copy_ wakes its OpenMP team, whose spinning workers then take
        # the cores that decoder threads run on beside this job (ingest.py). The resize kernels
        # gain nothing from a second thread here: a batch takes as long with one as with two.
        batch = np.empty((len(images), *self.image_size, 3), dtype=np.uint8)
        for image, slot in zip(images, batch, strict=True):
            array = image if isinstance(image, np.ndarray) else np.array(image.convert("RGB"))
            chw = torch.from_numpy(array).permute(2, 0, 1)
            for step in steps:
                chw = step(chw)
            np.copyto(slot, chw.permute(1, 2, 0).numpy())
        return torch.from_numpy(batch).permute(0, 3, 1, 2)

    def encode_pixels(self, pixels: Any) -> np.ndarray:
        """Embed a batch from `pixels` (or an already normalised float (N, 3, H, W) batch)."""
        return compute.run(self._encode_pixels, pixels)

    def _encode_pixels(self, pixels: Any) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return _unit_rows(self.model.encode_image(self.model_input(pixels)))

    def model_input(self, pixels: Any) -> Any:
        """A pixel batch as the model takes it: normalised (N, 3, H, W), its dtype, its device.

        uint8 pixels get open_clip's ToTensor + Normalize, (x / 255 - mean) / std, computed in
        float32 as (x - 255 mean) / (255 std) on the model's device.
        """
        import torch

        device, dtype = self.placement.device, self.placement.torch_dtype
        if pixels.dtype != torch.uint8:
            return pixels.to(device, dtype)
        _, normalize = self._transform_parts
        mean = torch.tensor(normalize.mean, dtype=torch.float32, device=device).view(1, 3, 1, 1) * 255
        scale = 1 / (torch.tensor(normalize.std, dtype=torch.float32, device=device).view(1, 3, 1, 1) * 255)
        x = pixels.to(device, non_blocking=True).to(torch.float32, memory_format=torch.contiguous_format)
        return x.sub_(mean).mul_(scale).to(dtype)

    def encode_images(self, images: Sequence[Any]) -> np.ndarray:
        """Embed decoded images (PIL, or uint8 (H, W, 3) arrays) in batches: (N, D) float32, unit norm.

        One compute-thread job per batch: preprocessing and forward back to back.
        """
        size = self.batch_size
        out = [
            compute.run(lambda batch: self._encode_pixels(self._pixels(batch)), images[i : i + size])
            for i in range(0, len(images), size)
        ]
        return np.concatenate(out) if out else np.zeros((0, self.embed_dim), np.float32)

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Embed texts in batches: (N, D) float32, unit norm."""
        return compute.run(self._encode_texts, texts)

    def _encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        out = []
        with torch.inference_mode():
            for i in range(0, len(texts), self.batch_size):
                tokens = self.tokenizer(list(texts[i : i + self.batch_size])).to(self.placement.device)
                out.append(_unit_rows(self.model.encode_text(tokens)))
        return np.concatenate(out) if out else np.zeros((0, self.embed_dim), np.float32)

    def similarity(self, queries: np.ndarray, keys: np.ndarray) -> np.ndarray:
        """queries (N, D) @ keys (M, D).T as float32 numpy, computed by torch.

        Not numpy: its OpenBLAS threads busy-wait after each call and slowed the next model
        forward ~3x on a 2-core CPU; torch's pool on the compute thread is the one the model uses.
        """
        return compute.run(_matmul_t, queries, keys)

    def close(self) -> None:
        """Drop the references to the weights so they can be freed."""
        self.model = None


def _matmul_t(queries: np.ndarray, keys: np.ndarray) -> np.ndarray:
    import torch

    with torch.inference_mode():
        return (torch.from_numpy(queries) @ torch.from_numpy(keys).T).numpy()


def _split_transform(preprocess: Any) -> tuple[Any, Any]:
    """open_clip's eval Compose -> (its geometric steps as uint8 tensor ops, its Normalize).

    (None, None) when the transform is not the usual [Resize, CenterCrop?, RGB conversion,
    ToTensor, Normalize]: the caller then runs it whole. The steps keep open_clip's own
    parameters (size, interpolation, max_size) and go to torchvision.transforms.v2, whose
    uint8 kernels follow Pillow's resampling; the v1 classes would resize in float.
    """
    from torchvision.transforms.v2 import functional as F

    steps = list(getattr(preprocess, "transforms", []))
    names = [type(step).__name__ for step in steps]
    if len(steps) < 3 or names[-1] != "Normalize" or names[-2] not in ("ToTensor", "MaybeToTensor"):
        return None, None
    ops: list[Callable[[Any], Any]] = []
    for step, name in zip(steps[:-2], names[:-2], strict=True):
        if name == "Resize":
            ops.append(
                functools.partial(
                    F.resize, size=step.size, interpolation=step.interpolation, max_size=step.max_size, antialias=True
                )
            )
        elif name == "CenterCrop":
            ops.append(functools.partial(F.center_crop, output_size=list(step.size)))
        elif name == "MaybeConvertMode" or getattr(step, "__name__", "") == "_convert_to_rgb":
            continue  # the pixels are RGB already
        else:
            return None, None
    return ops, steps[-1]


def _unit_rows(features: Any) -> np.ndarray:
    features = features.float()  # normalise in fp32: bf16 norms are off by ~1e-2
    features = features / features.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return features.cpu().numpy()


# Where open_clip looks on the Hub, in order (open_clip.pretrained.download_pretrained_from_hf).
HUB_WEIGHTS = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


def needs_transformers(spec: ModelSpec) -> bool:
    """Does this CLIP need transformers (a Hugging Face text tower or tokenizer)? Read from its
    open_clip config file, without importing open_clip; True when that cannot be told."""
    if spec.tiny:
        return spec.multilingual  # tiny-clip-multilingual: an XLM-R tower (see tiny.py)
    if spec.source.startswith(("hf-hub:", "local-dir:")):
        return True
    found = importlib.util.find_spec("open_clip")
    folders = list(found.submodule_search_locations or []) if found else []
    config = next((Path(f) / "model_configs" / f"{spec.source}.json" for f in folders), None)
    if config is None or not config.is_file():
        return True
    text_cfg = json.loads(config.read_text()).get("text_cfg", {})
    return "hf_model_name" in text_cfg or "hf_tokenizer_name" in text_cfg


def require_cached_clip(spec: ModelSpec) -> None:
    """Offline: raise ModelUnavailableError at once if `spec`'s weights are in no local cache
    (instead of after importing torch and building the model). Lenient where unsure: weights open_clip
    fetches from a URL (OpenAI's) may sit in ~/.cache/clip, and local files are open_clip's to find."""
    if not spec.pretrained or not spec.download or Path(spec.pretrained).expanduser().exists():
        return
    from huggingface_hub import try_to_load_from_cache

    if any(isinstance(try_to_load_from_cache(spec.download, name), str) for name in HUB_WEIGHTS):
        return
    if any(Path("~/.cache/clip").expanduser().glob("*.pt")):
        return
    raise ModelUnavailableError(
        spec.id,
        f"open_clip {spec.source} / {spec.pretrained}",
        f"hf download {spec.download}",
        "offline (no route to the Hugging Face Hub), and not in the local cache",
    )


def load_clip(spec: ModelSpec, placement: Placement, location: Path | None = None, batch_size: int = 32) -> ClipModel:
    """Load an open_clip model exactly as open_clip documents it, onto `placement`.

    `spec.source` is an open_clip model name (built-in or registered architecture, or a
    `local-dir:`/`hf-hub:` name) and `spec.pretrained` a tag, a weights file, or None (random
    weights). Tiny models live in `location`: their architecture is registered the way a user
    registers a custom config, and their weights load as a local checkpoint file.
    """
    import open_clip

    name, pretrained = spec.source, spec.pretrained
    if spec.tiny:
        if location is None:
            raise ValueError(f"{spec.id} is built offline: pass the folder it was built in")
        open_clip.add_model_config(location / f"{name}.json")
        pretrained = str(location / str(spec.pretrained))
    if not name.startswith(("local-dir:", "hf-hub:")) and open_clip.get_model_config(name) is None:
        raise UnknownModelError(f"'{name}' is not an open_clip architecture (see open_clip.list_models()).")
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(
            name, pretrained=pretrained, device=placement.device, precision=_precision(placement.dtype)
        )
    except (OSError, RuntimeError) as exc:
        if not _looks_like_missing_files(exc):
            raise
        repo = spec.download or (open_clip.get_pretrained_cfg(name, pretrained or "") or {}).get("hf_hub", "")
        hint = (
            f"hf download {repo.rstrip('/')}"
            if repo
            else f"python -c \"import open_clip; open_clip.create_model('{name}', pretrained='{pretrained}')\""
        )
        raise ModelUnavailableError(spec.id, f"open_clip {name} / {pretrained}", hint, str(exc)) from exc
    model.eval()
    params, nbytes = footprint(model)
    return ClipModel(
        model_id=spec.id,
        model=model,
        preprocess=preprocess,
        tokenizer=open_clip.get_tokenizer(name),
        placement=placement,
        embed_dim=int(open_clip.get_model_config(name)["embed_dim"]),
        batch_size=batch_size,
        siglip=getattr(model, "logit_bias", None) is not None,
        num_parameters=params,
        resident_bytes=nbytes,
        weights_key=_weights_key(name, pretrained, placement.dtype),
    )


def _weights_key(name: str, pretrained: str | None, dtype: str) -> str:
    if not pretrained:
        return f"random:{uuid.uuid4().hex}"
    weights = Path(pretrained)
    if weights.is_file():  # a local checkpoint: its path alone would not notice a rebuild
        stat = weights.stat()
        pretrained = f"{weights.resolve()}@{stat.st_size}:{stat.st_mtime_ns}"
    return f"{name}|{pretrained}|{dtype}"


def _precision(dtype: str) -> str:
    # open_clip's "pure_bf16"/"pure_fp16" cast every weight, so the forward runs in that dtype.
    return {"float32": "fp32", "bfloat16": "pure_bf16", "float16": "pure_fp16"}[dtype]


def _looks_like_missing_files(exc: BaseException) -> bool:
    text = str(exc).lower()
    return isinstance(exc, OSError) or any(w in text for w in ("download", "offline", "connect"))
