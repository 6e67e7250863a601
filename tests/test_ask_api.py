"""Ask your photos through the API (gradio_client against `python app.py`): /search's rerank,
/ask_results and /ask_each, and what bad input gets."""

from __future__ import annotations

import csv
import io

import pytest


@pytest.fixture(scope="module")
def client(served_app):
    from gradio_client import Client

    return Client(served_app[0], verbose=False, download_files=False)


def test_search_reranks_on_request_and_says_what_it_cost(client):
    shown, table, line = client.predict("a red bicycle", None, 6, -1.0, 4, api_name="/search")
    assert table["headers"][:6] == ["rank", "CLIP rank", "score", "P(yes)", "name", "gallery"]
    assert sorted(row[1] for row in table["data"][:4]) == [1, 2, 3, 4] and table["data"][4][3] is None
    assert line.startswith("Re-ranked the top 4 with the chat model in") and len(shown) == 6
    _, plain, line = client.predict("a red bicycle", None, 6, -1.0, api_name="/search")  # rerank left out: off
    assert plain["headers"][:4] == ["rank", "score", "name", "gallery"] and line == ""
    # More than there are results: all of them; more than the cap: a clear message.
    _, _, line = client.predict("a red bicycle", None, 3, -1.0, 10, api_name="/search")
    assert line.startswith("Re-ranked the top 3")
    with pytest.raises(Exception, match=r"at most 32 results can be re-ranked \(MMDEMO_RERANK_MAX\)"):
        client.predict("a red bicycle", None, 3, -1.0, 33, api_name="/search")


def test_ask_results_answers_about_the_top_results_and_names_them(client):
    said = client.predict("Which of these is outdoors?", "a landscape", 3, 0, "", api_name="/ask_results")
    listed = said.splitlines()[-3:]
    assert [line[:4] for line in listed] == ["[1] ", "[2] ", "[3] "] and all("/media/" in x for x in listed)
    with pytest.raises(Exception, match="Type a question first"):
        client.predict("  ", "a landscape", 3, 0, "", api_name="/ask_results")
    with pytest.raises(Exception, match="A question of 8001 characters: at most 8000"):
        client.predict("x" * 8001, "a landscape", 3, 0, "", api_name="/ask_results")
    with pytest.raises(Exception, match="top_k"):
        client.predict("Why?", "a landscape", 9, 0, "", api_name="/ask_results")  # over MMDEMO_ASK_MAX_IMAGES


def test_ask_each_returns_a_row_per_image_and_question(client):
    table = client.predict("What is it?\nIs it red?", "a red square", 3, "", api_name="/ask_each")
    rows = list(csv.reader(io.StringIO(table)))
    assert rows[0] == ["image", "question", "answer"] and len(rows) == 1 + 3 * 2
    with pytest.raises(Exception, match="at most 200 at a time"):
        client.predict("\n".join(f"Q{i}?" for i in range(101)), "a red square", 2, "", api_name="/ask_each")
    with pytest.raises(Exception, match=r"unknown|collection"):
        client.predict("What is it?", "", 3, "", api_name="/ask_each")  # no query, no collection
