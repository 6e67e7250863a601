"""Build tiny random-weight models of the real architectures, offline, and save them to disk.

No weights can be downloaded on CI or dev machines, yet the code users run must be exercised.
So these builders write ordinary checkpoint folders (open_clip: architecture JSON + safetensors;
Qwen-VL: `save_pretrained` model + processor) that load through the production loaders.

Tokenizer and processor files come from the real Qwen release when `../shared/qwen/` (or
`MMDEMO_QWEN_FILES`) is present; otherwise a small byte-level BPE is trained with `tokenizers`
and wrapped with the real Qwen chat template bundled in `configs/`.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

BUILD_VERSION = "5"  # bump when a builder changes, so cached builds are rebuilt
CONFIGS = Path(__file__).parent / "configs"
QWEN_7B_CONFIG = CONFIGS / "qwen2.5-vl-7b-instruct.config.json"
QWEN_CHAT_TEMPLATE = CONFIGS / "qwen2.5-vl.chat_template.jinja"

# Qwen2.5-VL-3B-Instruct differs from the bundled 7B config in exactly these fields.
QWEN_3B_OVERRIDES: dict[str, Any] = {
    "hidden_size": 2048,
    "intermediate_size": 11008,
    "max_window_layers": 70,
    "num_attention_heads": 16,
    "num_hidden_layers": 36,
    "num_key_value_heads": 2,
    "tie_word_embeddings": True,
    "vocab_size": 151936,
    "vision_config": {"out_hidden_size": 2048},
}

# ViT-B-32's shape, shrunk: same image size, patch size and tokenizer, so the real preprocessing
# and tokenization run; 2 narrow layers per tower keep a forward pass at a few milliseconds.
TINY_CLIP_ARCH = "mmdemo-tiny-clip"
TINY_CLIP_CONFIG: dict[str, Any] = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 224, "layers": 2, "width": 64, "patch_size": 32, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}

# The Qwen2.5-VL special tokens, in the release's order.
QWEN_SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]


def shared_qwen_files() -> Path | None:
    """The real Qwen2.5-VL tokenizer/processor folder, if this checkout has one beside it."""
    env = os.environ.get("MMDEMO_QWEN_FILES")
    candidates = [Path(env)] if env else []
    candidates.append(Path(__file__).resolve().parents[3] / "shared" / "qwen" / "Qwen2.5-VL-7B-Instruct")
    return next((p for p in candidates if (p / "vocab.json").is_file()), None)


def ensure_built(model_id: str, root: Path) -> Path:
    """Build `model_id` under `root` unless an up-to-date build is there; return its folder.

    Builds go to a temporary folder renamed into place, so a crash or a concurrent builder never
    leaves a half-written model behind.
    """
    target = root / model_id
    marker = target / ".mmdemo-build"
    if marker.is_file() and marker.read_text() == BUILD_VERSION:
        return target
    builder = BUILDERS[model_id]
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{model_id}-", dir=root))
    try:
        log.info("building %s in %s (one-off, cached)", model_id, target)
        builder(tmp)
        (tmp / ".mmdemo-build").write_text(BUILD_VERSION)
        if target.exists():
            shutil.rmtree(target, ignore_errors=True)
        try:
            tmp.rename(target)
        except OSError:  # another process won the race: use its build
            if not marker.is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def build_tiny_clip(out: Path) -> None:
    """A shrunk ViT-B-32 CLIP: `<arch>.json` (open_clip model config) + `open_clip_model.safetensors`."""
    import open_clip
    import torch
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    config_file = out / f"{TINY_CLIP_ARCH}.json"
    config_file.write_text(json.dumps(TINY_CLIP_CONFIG, indent=2))
    open_clip.add_model_config(config_file)
    torch.manual_seed(0)
    model = open_clip.create_model(TINY_CLIP_ARCH, pretrained=None)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, out / "open_clip_model.safetensors")


TINY_MCLIP_ID, TINY_MCLIP_ARCH = "tiny-clip-multilingual", "mmdemo-tiny-mclip"
# What the stand-in tokenizer learns from: the app's own Chinese and English words (its examples,
# CIFAR-10 names, zero-shot templates), enough for whole words and characters to be tokens.
TOKENIZER_CORPUS = (
    "夕阳下的海滩 海滩上的一只狗 沙发上的猫 一张{}的照片。 一张{}的图片。 一张模糊的{}的照片。 一幅{}的画。 "
    "飞机 汽车 鸟 猫 鹿 狗 青蛙 马 船 卡车 红色 绿色 蓝色 方块 人 树 山 水 天空 城市 夜晚",
    "a beach at sunset a dog on the beach a cat on a sofa a photo of a {}. a blurry photo of the {}. "
    "airplane automobile bird cat deer dog frog horse ship truck red green blue square person tree car",
)


def build_tiny_multilingual_clip(out: Path) -> None:
    """A tiny CLIP with an XLM-RoBERTa text tower, built the way open_clip builds
    `xlm-roberta-base-ViT-B-32`: the text tower and its tokenizer load through Hugging Face
    (open_clip's HFTextEncoder and HFTokenizer), here from a local folder holding a tiny XLM-R
    config and a small Chinese+English Unigram tokenizer (standing in for XLM-R's sentencepiece)."""
    import open_clip
    import torch
    from safetensors.torch import save_file

    text = out / "text"
    _tiny_xlmr_text(text)

    def config(text_dir: Path) -> dict[str, Any]:
        return {
            "embed_dim": 32,
            "vision_cfg": {"image_size": 224, "layers": 2, "width": 64, "patch_size": 32, "head_width": 32},
            "text_cfg": {
                "hf_model_name": str(text_dir),
                "hf_tokenizer_name": str(text_dir),
                "hf_pooler_type": "mean_pooler",
                "context_length": 77,
            },
        }

    config_file = out / f"{TINY_MCLIP_ARCH}.json"
    config_file.write_text(json.dumps(config(text), indent=2))  # to build from here, now
    open_clip.add_model_config(config_file)
    torch.manual_seed(0)
    model = open_clip.create_model(TINY_MCLIP_ARCH, pretrained=None, pretrained_text=False)  # random, offline
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, out / "open_clip_model.safetensors")
    # Where the folder will be once ensure_built has renamed it into place: what the app loads.
    config_file.write_text(json.dumps(config(out.parent / TINY_MCLIP_ID / "text"), indent=2))


def _tiny_xlmr_text(text: Path) -> None:
    """A tiny XLM-R config and a small Chinese+English Unigram tokenizer (XLM-R's special ids) in `text`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast, XLMRobertaConfig

    text.mkdir(parents=True, exist_ok=True)
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]  # XLM-R's ids 0-4
    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.train_from_iterator(
        TOKENIZER_CORPUS, trainers.UnigramTrainer(vocab_size=400, special_tokens=specials, unk_token="<unk>")
    )
    tok.post_processor = processors.TemplateProcessing(single="<s> $A </s>", special_tokens=[("<s>", 0), ("</s>", 2)])
    PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        cls_token="<s>",
        sep_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        mask_token="<mask>",
        model_max_length=80,
    ).save_pretrained(text)
    XLMRobertaConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=96,
        type_vocab_size=1,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
    ).save_pretrained(text)


TINY_QWEN2_5_VL: dict[str, Any] = {  # the tiny Qwen2.5-VL: what differs from the real 7B config
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_window_layers": 2,
    "tie_word_embeddings": True,
    "vocab_size": 151936,
    # mrope_section must sum to head_dim / 2 = 64 / 4 / 2
    "rope_scaling": {"type": "mrope", "mrope_section": [2, 3, 3]},
    # Depth 3: llama.cpp's converter names the merger's layers by block ids below the depth
    # (visual.merger.mlp.2 needs a block 2), and the llama.cpp tests serve this model.
    "vision_config": {
        "depth": 3,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_heads": 4,
        "out_hidden_size": 64,
        "fullatt_block_indexes": [1],
    },
}


def qwen_config(arch: str, size: str) -> dict[str, Any]:
    """A Qwen-VL config dict: the real 7B/3B one, or a tiny one of the same architecture."""
    base = json.loads(QWEN_7B_CONFIG.read_text())
    base.pop("torch_dtype", None)
    if size == "3b":
        return _merge(base, QWEN_3B_OVERRIDES)
    if size == "7b":
        return base
    if size != "tiny":
        raise ValueError(f"unknown size {size!r}")
    if arch == "qwen2_5_vl":
        return _merge(base, copy.deepcopy(TINY_QWEN2_5_VL))  # a caller may change its copy
    return _tiny_qwen3_vl(base)


def _tiny_qwen3_vl(base: dict[str, Any]) -> dict[str, Any]:
    """A tiny Qwen3-VL config, its special token ids and bos/eos from the real Qwen2.5-VL `base`."""
    ids = {k: base[k] for k in ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id")}
    return {
        "model_type": "qwen3_vl",
        "architectures": ["Qwen3VLForConditionalGeneration"],
        **ids,
        "tie_word_embeddings": True,
        "text_config": {
            "vocab_size": 151936,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 16,
            "tie_word_embeddings": True,
            "bos_token_id": base["bos_token_id"],
            "eos_token_id": base["eos_token_id"],
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 5_000_000.0,
                "mrope_section": [2, 3, 3],
                "mrope_interleaved": True,
            },
        },
        "vision_config": {
            "depth": 2,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_heads": 4,
            "out_hidden_size": 64,
            "num_position_embeddings": 64,
            "deepstack_visual_indexes": [0, 1],
        },
    }


def build_qwen_processor(arch: str) -> Any:
    """The Qwen-VL processor: real release files when present, else a tiny trained tokenizer."""
    from transformers import AutoProcessor, Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    real = shared_qwen_files()
    if real is not None:
        qwen25 = AutoProcessor.from_pretrained(real)
        tokenizer, template = qwen25.tokenizer, qwen25.chat_template
    else:
        tokenizer, template = _fallback_tokenizer(), QWEN_CHAT_TEMPLATE.read_text()
    if arch == "qwen2_5_vl":
        return Qwen2_5_VLProcessor(
            image_processor=Qwen2VLImageProcessor(),
            video_processor=Qwen2VLVideoProcessor(),
            tokenizer=tokenizer,
            chat_template=template,
        )
    from transformers import Qwen3VLProcessor
    from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor

    # Qwen3-VL: 16-pixel patches and mean/std 0.5, as in its released preprocessor_config.json.
    norm: dict[str, Any] = {"image_mean": [0.5] * 3, "image_std": [0.5] * 3, "patch_size": 16}
    return Qwen3VLProcessor(
        image_processor=Qwen2VLImageProcessor(**norm),
        video_processor=Qwen3VLVideoProcessor(**norm),
        tokenizer=tokenizer,
        chat_template=template,
    )


def build_tiny_qwen(out: Path, arch: str) -> None:
    """A tiny random-weight Qwen2.5-VL or Qwen3-VL, saved with `save_pretrained`."""
    import torch
    from transformers import AutoConfig, AutoModelForImageTextToText

    processor = build_qwen_processor(arch)
    config_dict = qwen_config(arch, "tiny")
    tokenizer = processor.tokenizer
    if shared_qwen_files() is None:  # small fallback vocabulary: point the config at its ids
        config_dict = _retarget_token_ids(config_dict, tokenizer)
    config = AutoConfig.for_model(**config_dict)
    torch.manual_seed(0)
    # One dtype throughout: built from a config, some parameters would otherwise stay bf16.
    model = AutoModelForImageTextToText.from_config(config).to(torch.float32)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    # As the real checkpoints ship it: a server that honours the request's temperature only when the
    # model samples by default (transformers serve) then samples here too.
    model.generation_config.do_sample = True
    model.save_pretrained(out)
    processor.save_pretrained(out)


def build_random_qwen_dir(out: Path) -> None:
    """Config + processor of the real Qwen2.5-VL-3B, no weights: the loader initialises randomly."""
    from transformers import AutoConfig

    AutoConfig.for_model(**qwen_config("qwen2_5_vl", "3b")).save_pretrained(out)
    build_qwen_processor("qwen2_5_vl").save_pretrained(out)


BUILDERS: dict[str, Callable[[Path], None]] = {
    "tiny-clip": build_tiny_clip,
    TINY_MCLIP_ID: build_tiny_multilingual_clip,
    "tiny-qwen2.5-vl": lambda out: build_tiny_qwen(out, "qwen2_5_vl"),
    "tiny-qwen3-vl": lambda out: build_tiny_qwen(out, "qwen3_vl"),
    "random-qwen2.5-vl-3b": build_random_qwen_dir,
}


def _fallback_tokenizer() -> Any:
    """A small byte-level BPE with Qwen's special tokens (used when the real files are absent)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    corpus = [
        QWEN_CHAT_TEMPLATE.read_text(),
        "What is in this image? Describe the photo in one sentence. "
        "A cat, a dog and a person stand near the red car on a sunny beach by the sea.",
    ]
    trainer = trainers.BpeTrainer(
        vocab_size=1000, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=QWEN_SPECIAL_TOKENS
    )
    bpe.train_from_iterator(corpus * 20, trainer)
    return Qwen2Tokenizer(
        # Qwen's tokenizer has no unknown or beginning token (byte-level BPE); transformers types them as str.
        tokenizer_object=bpe,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,  # type: ignore[arg-type]
        bos_token=None,
    )


def _retarget_token_ids(config: dict[str, Any], tokenizer: Any) -> dict[str, Any]:
    ids = {
        "image_token_id": "<|image_pad|>",
        "video_token_id": "<|video_pad|>",
        "vision_start_token_id": "<|vision_start|>",
        "vision_end_token_id": "<|vision_end|>",
        "vision_token_id": "<|vision_pad|>",
        "eos_token_id": "<|im_end|>",
        "bos_token_id": "<|endoftext|>",
    }
    config = copy.deepcopy(config)
    for section in (config, config.get("text_config")):
        if section is None:
            continue
        for key, token in ids.items():
            if key in section:
                section[key] = tokenizer.convert_tokens_to_ids(token)
        if "vocab_size" in section:  # rows past the tokenizer would decode to nothing
            section["vocab_size"] = len(tokenizer)
    return config


def _merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key != "rope_scaling":
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out
