"""The MCP tools, driven by the real `mcp` client over streamable HTTP against `python app.py --mcp`."""

from __future__ import annotations

import asyncio
import base64
import functools
import http.server
import io
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.conftest import REPO, start_app, stop_app

TOOLS = {
    "search_images",
    "ask_image",
    "ask_results",
    "ask_each",
    "classify_image",
    "add_images",
    "list_images",
    "delete_images",
    "read_text",
}


def _png(color: tuple[int, int, int], size: tuple[int, int] = (64, 48)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, "PNG")
    return out.getvalue()


def data_uri(color: tuple[int, int, int]) -> str:
    return "data:image/png;base64," + base64.b64encode(_png(color)).decode()


@pytest.fixture(scope="module")
def image_server(tmp_path_factory):
    """A plain web server on loopback with two images: what an agent's image URLs point to."""
    folder = tmp_path_factory.mktemp("served-images")
    (folder / "red.png").write_bytes(_png((220, 20, 20)))
    (folder / "blue.png").write_bytes(_png((20, 20, 220)))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="module")
def mcp_app(data_dir, tmp_path_factory):
    log = tmp_path_factory.mktemp("mcp") / "app.log"
    # 127.0.0.1 allowed by name: the test's image server stands in for an intranet photo server.
    url, proc = start_app(
        data_dir, log, MMDEMO_MCP="1", MMDEMO_URL_ALLOWED_HOSTS="127.0.0.1", MMDEMO_PRELOAD="clip,vlm"
    )
    yield url
    stop_app(proc)


def call(url: str, steps: list[tuple[str, dict[str, Any]]]) -> tuple[list[Any], list[Any]]:
    """One MCP session: list the tools, then call each (name, arguments); (tools, results)."""
    from mcp import ClientSession
    from mcp.client.streamable_http import streamablehttp_client

    async def session() -> tuple[list[Any], list[Any]]:
        async with (
            streamablehttp_client(url + "gradio_api/mcp/") as (read, write, _),
            ClientSession(read, write) as client,
        ):
            await client.initialize()
            tools = (await client.list_tools()).tools
            return tools, [await client.call_tool(name, args) for name, args in steps]

    return asyncio.run(session())


def text(result: Any) -> str:
    assert not result.isError, result.content
    return "\n".join(c.text for c in result.content if c.type == "text")


def test_an_agent_sees_nine_described_tools_and_no_ui_internals(mcp_app):
    tools, _ = call(mcp_app, [])
    assert {t.name for t in tools} == TOOLS
    for tool in tools:
        assert tool.description, tool.name
        for name, schema in tool.inputSchema["properties"].items():
            assert schema.get("description"), f"{tool.name}.{name} has no description"
    search = next(t for t in tools if t.name == "search_images")
    assert search.inputSchema.get("required", []) == []  # text or image: neither is required


def test_an_agent_searches_by_text_and_by_image_url_and_fetches_a_result(mcp_app, image_server):
    import httpx

    _, (by_text, by_url) = call(
        mcp_app,
        [
            ("search_images", {"query": "a rocket on its launch pad", "top_k": 3}),
            ("search_images", {"image": image_server + "/red.png", "top_k": 2}),
        ],
    )
    lines = text(by_text).splitlines()
    assert len(lines) == 3 and lines[0].startswith("1. score ")
    assert len(text(by_url).splitlines()) == 2
    thumbnail = re.search(r"(http://\S+)$", lines[0]).group(1)
    answer = httpx.get(thumbnail)
    assert answer.status_code == 200 and Image.open(io.BytesIO(answer.content)).size[0] > 0


def test_an_agent_classifies_against_labels_and_asks_about_an_image(mcp_app, image_server):
    from gradio_client import Client, handle_file

    _, (labels, asked) = call(
        mcp_app,
        [
            ("classify_image", {"image": data_uri((200, 30, 30)), "labels": "red, green, blue"}),
            (
                "ask_image",
                {"image": image_server + "/blue.png", "question": "What colour is it?", "max_new_tokens": 12},
            ),
        ],
    )
    scores = dict(line.rsplit(": ", 1) for line in text(labels).splitlines())
    assert set(scores) == {"red", "green", "blue"} and abs(sum(map(float, scores.values())) - 1) < 0.01
    # The same question through the Chat tab's API, greedy: the same model path, the same answer.
    blue = Path(REPO / "test-artifacts" / "blue.png")
    blue.parent.mkdir(exist_ok=True)
    blue.write_bytes(_png((20, 20, 220)))
    history, _ = Client(mcp_app, verbose=False).predict(
        {"text": "What colour is it?", "files": [handle_file(str(blue))]},
        [],
        max_new_tokens=12,
        greedy=True,
        api_name="/chat",
    )
    assert text(asked) == history[-1]["content"][0]["text"].strip()


def test_an_agent_asks_about_search_results_reranks_them_and_asks_every_image(mcp_app):
    import csv

    _, (reranked, about, each) = call(
        mcp_app,
        [
            ("search_images", {"query": "a cup of coffee", "top_k": 6, "rerank": 4}),
            ("ask_results", {"question": "Which one is a drink?", "query": "a cup of coffee", "top_k": 3}),
            ("ask_each", {"questions": "What is it?\nIs it outdoors?", "query": "a cat", "top_k": 2}),
        ],
    )
    lines = text(reranked).splitlines()
    assert sum("P(yes)" in line for line in lines) == 4 and "Re-ranked the top 4" in lines[-1]
    answer_lines = text(about).splitlines()
    assert [line[:4] for line in answer_lines[-3:]] == ["[1] ", "[2] ", "[3] "]  # the results it was about
    rows = list(csv.reader(io.StringIO(text(each))))
    assert rows[0] == ["image", "question", "answer"] and len(rows) == 1 + 2 * 2
    assert [r[1] for r in rows[1:]] == ["What is it?", "Is it outdoors?"] * 2


def test_an_agent_keeps_its_images_in_a_collection(mcp_app, image_server):
    _, (added,) = call(mcp_app, [("add_images", {"images": [image_server + "/red.png", data_uri((20, 200, 20))]})])
    report = text(added)
    assert "Indexed **2**" in report
    token = re.search(r'collection="([0-9a-f]{32})"', report).group(1)
    _, (listed, found, deleted, after) = call(
        mcp_app,
        [
            ("list_images", {"collection": token}),
            ("search_images", {"image": image_server + "/red.png", "top_k": 1, "collection": token}),
            ("delete_images", {"collection": token, "which": "all"}),
            ("list_images", {"collection": token}),
        ],
    )
    assert len(text(listed).splitlines()) == 2
    assert "· red.png · collection ·" in text(found)  # its own copy, found first
    assert "Removed 2" in text(deleted) or "2" in text(deleted)
    assert "nothing" in text(after).lower() or text(after) != text(listed)


def test_an_agent_is_told_plainly_what_it_cannot_do(mcp_app):
    _, (private, not_url, unknown) = call(
        mcp_app,
        [
            ("search_images", {"image": "http://localhost:1/secret.png"}),  # loopback, not allowed by name
            ("classify_image", {"image": "/etc/passwd", "labels": "a, b"}),
            ("list_images", {"collection": "0" * 32}),
        ],
    )
    said = [" ".join(c.text for c in r.content) for r in (private, not_url, unknown)]
    assert all(r.isError for r in (private, not_url, unknown)), said
    assert "private or local network" in said[0]
    assert "http(s) URL or a data URI" in said[1]
    assert "Unknown collection" in said[2]


def test_the_readme_mcp_example_runs(mcp_app):
    readme = (REPO / "docs" / "api.md").read_text()
    example = re.search(r"```python\n(# An MCP client session.*?)```", readme, re.DOTALL).group(1)
    script = example.replace("http://127.0.0.1:7860/", mcp_app)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "search_images" in done.stdout and "1. score " in done.stdout
