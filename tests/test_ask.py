"""Ask your photos, in process: the yes/no judge, the re-rank and its cache, references, ask every image."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from mmdemo.ask.about import Shown, ask_budget, ask_history, cited, linked
from mmdemo.ask.each import EachRow, ask_each, read_questions, write_csv
from mmdemo.ask.rerank import RERANK_QUESTION, Candidate, ScoreCache, judge_messages, rerank, rerank_question
from mmdemo.chat.judge import YES_WORDS, prepare_batch, read_choice, score_batch, yes_no_ids
from mmdemo.chat.local import LocalVLM
from mmdemo.chat.pipeline import GenerationParams
from mmdemo.chat.prompt import PATCH_AREA
from mmdemo.errors import UserFacingError

BUDGET = ask_budget(64 * PATCH_AREA, 10_000_000)


def noisy(path: Path, size: tuple[int, int], seed: int) -> str:
    import numpy as np
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return str(path)


@pytest.fixture
def photos(tmp_path: Path) -> list[str]:
    """Five different images of different sizes (so a batch needs padding)."""
    return [noisy(tmp_path / f"p{i}.png", (56 + 28 * i, 84 - 7 * i), i) for i in range(5)]


def test_yes_and_no_are_the_tokenizers_own_ids(session_manager):
    tokenizer = session_manager.get("vlm").processor.tokenizer
    yes, no = yes_no_ids(tokenizer)
    assert tokenizer.encode("yes", add_special_tokens=False)[0] in yes
    assert tokenizer.encode("no", add_special_tokens=False)[0] in no
    assert {tokenizer.decode([i]).strip().lower() for i in yes} == {"yes"}
    assert {tokenizer.decode([i]).strip().lower() for i in no} == {"no"}
    assert len(yes) <= len(YES_WORDS)


def test_scores_of_a_batch_equal_the_images_scored_one_by_one(lively_vlm, photos):
    """Left padding and the batch do not change a row's score (greedy: a prefill, no sampling)."""
    question = rerank_question("a red bicycle")
    conversations = [judge_messages(p, question, BUDGET) for p in photos]
    lively = lively_vlm
    batch = prepare_batch(lively, conversations)
    assert batch["attention_mask"].min() == 0, "the batch should need padding for this test to mean anything"
    together = score_batch(lively, conversations)
    alone = [score_batch(lively, [c])[0] for c in conversations]
    assert together == pytest.approx(alone, abs=1e-4)
    assert len(set(round(s, 4) for s in alone)) > 1, "random weights should still tell these images apart"
    assert all(0.0 <= s <= 1.0 for s in together)


def test_rerank_orders_by_p_yes_and_a_repeated_query_comes_from_the_cache(session_manager, photos):
    backend, cache = LocalVLM(session_manager, "cpu"), ScoreCache()
    candidates = [Candidate(f"hash{i}", p, 0.5 - i / 10) for i, p in enumerate(photos)]
    first = rerank(backend, "a dog", candidates, BUDGET, cache, batch_size=2)
    assert first.cached == 0 and first.exact
    assert sorted(first.order) == list(range(5))
    assert [first.scores[i] for i in first.order] == sorted(first.scores, reverse=True)
    again = rerank(backend, "a dog", candidates, BUDGET, cache, batch_size=2)
    assert again.cached == 5 and again.scores == first.scores and again.order == first.order
    other = rerank(backend, "a cat", candidates[:2], BUDGET, cache, batch_size=2)
    assert other.cached == 0  # another question is another score


def test_the_rerank_question_is_the_documented_template():
    assert rerank_question("  a   dog\non grass ") == RERANK_QUESTION.format(query="a dog on grass")


def test_references_are_read_and_linked():
    answer = "Dogs are in [2] and [5]; [9] does not exist, [2] again."
    assert cited(answer, 6) == [2, 5]
    linked_answer = linked(answer, 6)
    assert "[\\[2\\]](#result-2)" in linked_answer and "[\\[5\\]](#result-5)" in linked_answer
    assert "[9]" in linked_answer and "#result-9" not in linked_answer


def test_the_question_turn_numbers_each_image():
    turn = ask_history([Shown(1, "a.jpg", "/x/a.jpg"), Shown(2, "b.jpg", "/x/b.jpg")], "Which is red?")
    assert turn[0]["content"] == "[1] a.jpg" and turn[1]["content"] == {"path": "/x/a.jpg"}
    assert turn[2]["content"] == "[2] b.jpg" and "Which is red?" in turn[-1]["content"]


class Token:
    def __init__(self, token: str, logprob: float, top: list | None = None) -> None:
        self.token, self.logprob, self.top_logprobs = token, logprob, top or []


class Choice:
    def __init__(self, content=None, text: str = "") -> None:
        self.logprobs = type("L", (), {"content": content})() if content is not None else None
        self.message = type("M", (), {"content": text})()


def test_a_servers_top_logprobs_give_p_yes_and_a_plain_answer_is_coarse():
    import math

    tops = [Token("Yes", math.log(0.6)), Token(" yes", math.log(0.1)), Token("No", math.log(0.2)), Token("A", -3)]
    score, exact = read_choice(Choice([Token("Yes", math.log(0.6), tops)], "Yes"))
    assert exact and score == pytest.approx(0.7 / 0.9)
    assert read_choice(Choice(None, "Yes.")) == (1.0, False)
    assert read_choice(Choice(None, "no")) == (0.0, False)


def test_questions_are_read_one_per_line_with_clear_limits():
    assert read_questions("What colour?\n\n  Is it outdoors? \n", 5, 100) == ["What colour?", "Is it outdoors?"]
    bad = (("  \n ", "ask.no_question"), ("a\nb\nc", "ask.too_many_questions"), ("x" * 101, "ask.question_too_long"))
    for text, key in bad:
        with pytest.raises(UserFacingError) as caught:
            read_questions(text, 2, 100)
        assert caught.value.key == key


def test_ask_each_answers_every_image_and_question_and_stop_keeps_the_rows(session_manager, photos, tmp_path):
    backend = LocalVLM(session_manager, "cpu")
    shown = [Shown(i + 1, Path(p).name, p) for i, p in enumerate(photos[:3])]
    params, stop = GenerationParams(max_new_tokens=4, greedy=True), threading.Event()
    rows = list(ask_each(backend, shown, ["What is it?", "Colour?"], BUDGET, params, stop, 4096))
    assert [(r.image, r.question) for r in rows] == [(s.name, q) for s in shown for q in ("What is it?", "Colour?")]
    kept: list[EachRow] = []
    for row in ask_each(backend, shown, ["What is it?"], BUDGET, params, stop, 4096):
        kept.append(row)
        stop.set()
    assert len(kept) == 1
    out = write_csv(kept, tmp_path / "answers.csv")
    assert out.read_text(encoding="utf-8-sig").splitlines()[0] == "image,question,answer"


def test_results_deleted_meanwhile_are_left_out_and_counted(tiny_settings, session_manager, images, tmp_path):
    from mmdemo.ask.service import PhotoAsker
    from mmdemo.embedding.ingest import ImageFile
    from mmdemo.search.galleries import Galleries, session_gallery

    settings = tiny_settings.replace(data_dir=tmp_path / "data")
    galleries = Galleries(settings, session_manager)
    mine = galleries.get(session_gallery("a" * 32))
    mine.add_files([ImageFile(str(p), p.name) for p in images])
    ids = [["yours", it.id] for it in mine.store.items()]
    mine.remove([ids[1][1]])
    asker = PhotoAsker(settings, galleries, LocalVLM(session_manager, "cpu"))
    found = asker.found([*ids, ["yours", 10**30], "junk", ["elsewhere", 1]], "a" * 32)
    assert [s.rank for s in found.shown] == [1, 3] and found.gone == 4
    assert asker.found(ids, None).gone == 3  # another session's results are not its own
    assert [s.name for s in asker.yours("a" * 32)] == [images[0].name, images[2].name]


def test_eval_retrieval_reports_recall_with_and_without_the_rerank(tmp_path, capsys):
    import json

    from mmdemo.commands.cli import main
    from tests.conftest import SHARED

    flickr = SHARED / "data" / "flickr8k_1k"
    if not flickr.is_dir():
        pytest.skip("../shared is absent (a user's clone)")
    common = ["--profile", "tiny", "--data-dir", str(tmp_path), "--dtype", "float32"]
    argv = ["eval", "retrieval", "--images", str(flickr / "images"), "--captions", str(flickr / "captions.csv")]
    out_json = tmp_path / "retrieval.json"
    assert main([*argv, "--rerank", "5", "--queries", "12", "--json", str(out_json), *common]) == 0
    out = capsys.readouterr().out
    assert "captions: 12  images: 1000  re-ranked: top 5" in out and "re-rank cost:" in out
    rerank = json.loads(out_json.read_text())["rerank"]
    clip, after = rerank["clip"], rerank["reranked"]
    assert clip["captions"] == after["captions"] == 12 and rerank["seconds_per_query"] > 0
    # Re-ranking the top 5 only moves images within it: R@10 and the median rank stay.
    assert clip["recall_at_10"] == after["recall_at_10"] and clip["median_rank"] == after["median_rank"]
