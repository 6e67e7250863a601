"""VQA evaluation: the official metric on hand-computed cases, and `eval vqa` end to end on both backends."""

from __future__ import annotations

import json

import pytest

from mmdemo.chat.evaluate import exact_match, normalize_answer, read_questions, summarize, vqa_accuracy
from tests.conftest import REPO

SAMPLE = REPO / "assets" / "vqa_sample.jsonl"


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("Yes!", "yes"), ("The cat.", "cat"), ("a dog", "dog"), ("Two", "2"), ("none", "0"),
        ("dont know", "don't know"), ("3,000", "3000"), ("hot-dog", "hot dog"), ("t-shirt", "t shirt"),
        ("  Red \n", "red"), ("2.5", "2.5"), ("what's up?", "what's up"), ("an apple, please", "apple please"),
    ],
)  # fmt: skip
def test_answers_are_normalised_as_the_official_evaluation_does(raw, normal):
    assert normalize_answer(raw) == normal


def test_vqa_accuracy_is_the_official_leave_one_out_average():
    ten = ["2"] * 3 + ["3"] * 7
    # Leaving out one of the three "2"s leaves 2 matches (2/3); leaving out a "3" leaves 3 (1.0).
    assert vqa_accuracy("2", ten) == pytest.approx((3 * 2 / 3 + 7 * 1.0) / 10)  # 0.9
    assert vqa_accuracy("two", ten) == pytest.approx(0.9)  # number words normalised
    assert vqa_accuracy("3", ten) == pytest.approx(1.0)
    assert vqa_accuracy("4", ten) == 0.0
    once = ["cat"] + ["dog"] * 9
    assert vqa_accuracy("cat", once) == pytest.approx(9 / 10 * 1 / 3)  # 0.3
    # A hand-made set's few references are alternatives: any of them counts fully.
    assert vqa_accuracy("The USA.", ["american", "usa"]) == 1.0 and vqa_accuracy("france", ["usa"]) == 0.0
    assert exact_match("usa", ["american", "usa"]) == 0.0 and exact_match("3", ten) == 1.0


def test_the_sample_set_names_bundled_photos_and_summaries_break_down_by_type():
    questions = read_questions(SAMPLE)
    assert 20 <= len(questions) <= 40 and all(q.image.is_file() for q in questions)
    assert {q.type for q in questions} == {"yes/no", "number", "other"}
    assert len({q.id for q in questions}) == len(questions)
    row = {"exact_match": 1.0, "decode_s": 1.0}
    rows = [{**row, "type": "a", "accuracy": 1.0, "latency_s": 1.0, "tokens": 4},
            {**row, "type": "b", "accuracy": 0.0, "exact_match": 0.0, "latency_s": 3.0, "tokens": 6}]  # fmt: skip
    summary = summarize(rows)
    assert (summary.accuracy, summary.by_type, summary.latency_p50, summary.tokens_per_second) == (
        0.5, {"a": 1.0, "b": 0.0}, 2.0, 5.0)  # fmt: skip


def test_eval_vqa_in_process_writes_predictions_and_resumes(data_dir, tmp_path, capsys):
    from mmdemo.commands.cli import main

    common = ["--profile", "tiny", "--data-dir", str(data_dir), "--dtype", "float32", "--preload", ""]
    out = tmp_path / "run"
    assert main(["eval", "vqa", "--data", str(SAMPLE), "--limit", "3", "--out", str(out), *common]) == 0
    printed = capsys.readouterr().out
    assert "model: tiny-qwen2.5-vl" in printed and "VQA accuracy:" in printed and "latency p50" in printed
    first = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert [r["id"] for r in first] == ["q00", "q01", "q02"] and all(r["tokens"] > 0 for r in first)
    # Resumed: the three answered questions are not asked again.
    assert main(["eval", "vqa", "--data", str(SAMPLE), "--limit", "5", "--out", str(out), *common]) == 0
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == ["q00", "q01", "q02", "q03", "q04"] and rows[:3] == first
    summary = json.loads((out / "summary.json").read_text())
    assert summary["questions"] == 5 and 0.0 <= summary["accuracy"] <= 1.0


def test_eval_vqa_on_an_inference_server(vlm_server, data_dir, tmp_path, capsys):
    from mmdemo.commands.cli import main

    url, model = vlm_server
    argv = ["eval", "vqa", "--data", str(SAMPLE), "--limit", "2", "--out", str(tmp_path),
            "--profile", "tiny", "--data-dir", str(data_dir), "--preload", "", "--vlm-url", url,
            "--vlm-served-model", model]  # fmt: skip
    assert main(argv) == 0
    assert f"model: {url}" in capsys.readouterr().out
    rows = [json.loads(line) for line in (tmp_path / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(r["latency_s"] > 0 for r in rows)


def test_a_bad_record_is_named(tmp_path, capsys):
    from mmdemo.commands.cli import main

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"image": "x.jpg", "question": "?"}\n')
    assert main(["eval", "vqa", "--data", str(bad), "--profile", "tiny", "--preload", ""]) == 2
    assert "bad.jsonl, line 1: not a VQA record" in capsys.readouterr().err
