"""The chat model as a judge: the probability that it answers "yes" to a yes/no question about an image.

Re-ranking (mmdemo.ask.rerank) asks each candidate image one fixed question and sorts by this.
In process it is a prefill only, no generation: a batch of prompts, left-padded, one forward
that keeps the last position's logits, and P(yes) = p(yes tokens) / (p(yes tokens) + p(no tokens)),
the token ids read from the model's own tokenizer. On a server it is the first answer token's
`top_logprobs` where the server returns them (vLLM, SGLang, llama.cpp), else a one-token answer
read as yes (1.0) or no (0.0): `exact` is then False, and the ranking coarse.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mmdemo.errors import UserFacingError
from mmdemo.models import compute

if TYPE_CHECKING:
    from mmdemo.models.vlm import VisionLanguageModel

YES_WORDS = ("yes", "Yes", "YES")
# The longest prompt one judged conversation may have, checked before the forward pass. One image at the ask
# budget (MMDEMO_ASK_MAX_PIXELS: 256 tokens) and a query of MMDEMO_MAX_QUERY_CHARS (1,000) fit with room;
# a batch of 8 is then at most 32k tokens of prefill, whatever a client sends.
MAX_JUDGE_TOKENS = 4096
NO_WORDS = ("no", "No", "NO")


@dataclass(frozen=True)
class YesScores:
    """P(yes) per conversation, and whether they are probabilities (False: 1.0/0.0 read from a one-token answer)."""

    scores: list[float]
    exact: bool = True


def yes_no_ids(tokenizer: Any) -> tuple[list[int], list[int]]:
    """The token ids of the answer words "yes" and "no" (each spelling that is one token of its own)."""

    def single(words: Sequence[str]) -> list[int]:
        ids = [tokenizer.encode(word, add_special_tokens=False) for word in words]
        return sorted({i[0] for i in ids if len(i) == 1})

    yes, no = single(YES_WORDS), single(NO_WORDS)
    if not yes or not no:
        raise ValueError("this tokenizer has no single token for 'yes' or 'no'")
    return yes, no


def prepare_batch(vlm: VisionLanguageModel, conversations: Sequence[list[dict[str, Any]]]) -> Any:
    """Model inputs for several one-turn conversations at once, left-padded (the last position of each
    row is then its own next-token position)."""
    from qwen_vl_utils import process_vision_info

    processor = vlm.processor
    texts = [processor.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in conversations]
    images, _ = process_vision_info(list(conversations), image_patch_size=vlm.image_patch_size)
    extra = {"do_resize": False} if vlm.arch == "qwen3_vl" else {}
    inputs = processor(text=texts, images=images, padding=True, padding_side="left", return_tensors="pt", **extra)
    if (length := int(inputs["input_ids"].shape[1])) > MAX_JUDGE_TOKENS:
        raise UserFacingError(key="ask.prompt_too_long", n=length, limit=MAX_JUDGE_TOKENS)
    return inputs.to(vlm.model.device)


def score_batch(vlm: VisionLanguageModel, conversations: Sequence[list[dict[str, Any]]]) -> list[float]:
    """P(yes) for each conversation, from one prefill of them all (on the compute thread)."""
    import torch

    yes, no = yes_no_ids(vlm.processor.tokenizer)
    inputs = prepare_batch(vlm, conversations)
    # Safe points inside the forward: a search issued meanwhile runs between its torch calls.
    with compute.safe_points(), torch.inference_mode():
        logits = vlm.model(**inputs, logits_to_keep=1).logits[:, -1, :].float()
    probs = logits.softmax(-1)
    p_yes, p_no = probs[:, yes].sum(-1), probs[:, no].sum(-1)
    return (p_yes / (p_yes + p_no).clamp_min(1e-30)).tolist()


def score_local(vlm: VisionLanguageModel, conversations: Sequence[list[dict[str, Any]]], batch_size: int) -> YesScores:
    """P(yes) for each conversation, in batches of `batch_size`, each a long job on the compute thread
    (short jobs, such as searches, run between two batches and inside each)."""
    scores: list[float] = []
    size = max(1, batch_size)
    for start in range(0, len(conversations), size):
        scores += compute.run(score_batch, vlm, conversations[start : start + size], long=True)
    return YesScores(scores)


def read_choice(choice: Any) -> tuple[float, bool]:
    """(P(yes), exact) from a chat completion choice: its first token's top_logprobs when present
    (the OpenAI / vLLM schema: choice.logprobs.content[0].top_logprobs[i].token / .logprob), else
    its text read as yes or no."""
    content = getattr(getattr(choice, "logprobs", None), "content", None)
    if content:
        first = content[0]
        tops = list(getattr(first, "top_logprobs", None) or []) or [first]
        p_yes = sum(math.exp(t.logprob) for t in tops if _word(t.token) == "yes")
        p_no = sum(math.exp(t.logprob) for t in tops if _word(t.token) == "no")
        if p_yes + p_no > 0:
            return p_yes / (p_yes + p_no), True
    text = getattr(getattr(choice, "message", None), "content", None) or ""
    return (1.0 if _word(text) == "yes" else 0.0), False


def _word(token: str) -> str:
    return token.strip().strip(".,!").lower()
