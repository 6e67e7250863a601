"""The UI's words: both languages complete, no visible literal outside them, keyed errors, README.zh-CN."""

from __future__ import annotations

import ast
import re
import string
from pathlib import Path

import pytest

from mmdemo.errors import UserFacingError
from mmdemo.i18n import LANGUAGES, catalog, language_of, text
from tests.conftest import REPO

UI = REPO / "mmdemo" / "ui"
SHOWN = {"label", "placeholder", "info", "value"}  # component arguments the page shows as text
MESSAGES = {"Error", "Warning", "Info"}  # gr.Error / gr.Warning / gr.Info
KEY = r"""["']([a-z_]+\.[a-z0-9_.\-]+)["']"""
LOOKUP = re.compile(r"\b(?:t|say|text)\(\s*(?:request,\s*)?" + KEY)  # t("k"), say(request, "k"), text("k", ...)
KEYED = re.compile(r"key=" + KEY)  # UserFacingError(key="k", ...)


def fields(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def test_both_languages_have_the_same_keys_and_fields():
    english, chinese = catalog("en"), catalog("zh-CN")
    assert english.keys() == chinese.keys()
    for key in english:
        assert english[key].strip() and chinese[key].strip(), key
        assert fields(english[key]) == fields(chinese[key]), key
    assert LANGUAGES == ("en", "zh-CN")


def test_every_key_the_code_names_exists():
    used = set()
    for path in (REPO / "mmdemo").rglob("*.py"):
        source = path.read_text()
        used |= set(LOOKUP.findall(source)) | set(KEYED.findall(source))
    assert used, "the scan found no keys at all"
    assert not used - catalog("en").keys()


def _literal_text(node: ast.AST) -> str | None:
    """The words of a string literal or f-string argument, if it has any."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        words = node.value
    elif isinstance(node, ast.JoinedStr):
        words = "".join(v.value for v in node.values if isinstance(v, ast.Constant) and isinstance(v.value, str))
    else:
        return None
    return words if re.search(r"[A-Za-z]{2}", words) else None


def test_no_user_visible_literal_in_the_tabs():
    """A scan of mmdemo/ui/: component labels, placeholders, infos and values, button texts and
    gr.Error / gr.Warning / gr.Info messages come from the locales, never from a literal."""
    found = []
    for path in UI.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            if not (isinstance(node.func.value, ast.Name) and node.func.value.id == "gr"):
                continue
            hidden = any(k.arg == "visible" and getattr(k.value, "value", True) is False for k in node.keywords)
            if hidden and node.func.attr == "Button":  # an API endpoint's invisible trigger
                continue
            shown = [k.value for k in node.keywords if k.arg in SHOWN]
            if node.func.attr in MESSAGES or node.func.attr in {"Button", "Markdown", "Tab", "Accordion"}:
                shown += node.args[:1]
            found += [f"{path.name}:{n.lineno}: {_literal_text(n)!r}" for n in shown if _literal_text(n)]
    assert not found, "\n".join(found)


def test_errors_raised_for_the_tabs_are_keyed():
    """UserFacingError in the code the tabs run is raised with a key, so it reaches a visitor in
    their language. (The command line's own errors, and the servers' failures, stay in English.)"""
    rooms = [UI, REPO / "mmdemo" / "classify", REPO / "mmdemo" / "search", REPO / "mmdemo" / "chat"]
    english_only = {"evaluate.py", "remote.py", "serve.py"}  # CLI input files; server failures; startup settings
    found = []
    for path in (p for room in rooms for p in room.glob("*.py") if p.name not in english_only):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "UserFacingError" and node.args:
                found.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert not found, found


def test_a_keyed_error_speaks_english_and_translates():
    error = UserFacingError(key="classify.too_many", n=30, limit=20)
    assert str(error) == "30 images; the limit is 20 per batch."
    assert error.translated("zh-CN") == "共 30 张图片；每批上限是 20 张。"
    assert UserFacingError("as is").translated("zh-CN") == "as is"


@pytest.mark.parametrize(
    ("header", "language"),
    [("zh-CN,zh;q=0.9,en;q=0.8", "zh-CN"), ("zh-TW", "zh-CN"), ("zh", "zh-CN"), ("en-US,en;q=0.9", "en"),
     ("fr-FR,zh;q=0.5", "en"), ("", "en"), (None, "en")],
)  # fmt: skip
def test_the_request_language_is_the_browsers_first(header, language):
    assert language_of(header) == language


def test_text_fills_fields_and_falls_back_to_english():
    assert text("search.holds", "zh-CN", n=3) == "你的图库中有 3 张图片。"
    assert text("search.holds", "en", n=3) == "Your gallery holds 3 image(s)."


def _bash_blocks(path: Path) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", path.read_text(), re.S)


def test_readme_zh_cn_keeps_the_english_readmes_commands():
    """README.zh-CN.md's command blocks are the English README's and guides', verbatim: set-up, deploy, command line."""
    english = [
        block for page in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))] for block in _bash_blocks(page)
    ]
    chinese = _bash_blocks(REPO / "README.zh-CN.md")
    assert chinese and chinese[0] == english[0], "the two set-up commands differ"
    assert [block for block in chinese if block not in english] == []
    assert set(english) <= set(chinese), "the English README or guides have command blocks README.zh-CN.md lacks"
    headings = re.findall(r"^## (.+)$", (REPO / "README.zh-CN.md").read_text(), re.M)
    assert {"快速开始", "配置", "部署"} <= set(headings)


# --- Chinese users, through the real code paths (tiny models) -------------------------------------


@pytest.fixture(scope="module")
def zh_manager(tiny_settings):
    """MMDEMO_LANGUAGE=zh on the tiny profile: the multilingual tiny CLIP plays the "clip" role."""
    from mmdemo.models.factory import build_manager

    return build_manager(tiny_settings.replace(language="zh"))


def test_the_multilingual_clip_tokenises_through_open_clips_own_tokenizer(zh_manager):
    import numpy as np
    import open_clip

    clip = zh_manager.get("clip")
    assert zh_manager.resolve_id("clip") == "tiny-clip-multilingual"
    assert isinstance(clip.tokenizer, open_clip.tokenizer.HFTokenizer)  # a Hugging Face tokenizer, via open_clip
    ids = clip.tokenizer(["夕阳下的海滩"])[0]
    tokens = clip.tokenizer.tokenizer.convert_ids_to_tokens(ids[ids != 1].tolist())  # 1: <pad>
    assert tokens[0] == "<s>" and tokens[-1] == "</s>" and "<unk>" not in tokens
    assert "海滩" in tokens or {"海", "滩"} <= set(tokens)
    vectors = clip.encode_texts(["夕阳下的海滩", "a beach at sunset", "夕阳下的海滩"])
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(vectors[0], vectors[2], rtol=1e-5)
    assert not np.allclose(vectors[0], vectors[1])


def test_chinese_labels_for_a_multilingual_model_get_the_chinese_templates(zh_manager, session_manager, tmp_path):
    from mmdemo.classify.templates import (
        CHINESE_TEMPLATES,
        CIFAR10_ZH,
        DEFAULT_TEMPLATE,
        preset_labels,
        templates_for,
        templates_for_labels,
    )
    from mmdemo.classify.zeroshot import cached_classifier, parse_labels
    from mmdemo.embedding.vectorcache import VectorCache

    assert preset_labels("CIFAR-10 (中文)") == CIFAR10_ZH and len(CIFAR10_ZH) == 10
    labels, _ = parse_labels("猫，狗、汽车", 10, 50)  # Chinese commas separate labels too
    assert labels == ["猫", "狗", "汽车"]
    assert templates_for_labels("custom", DEFAULT_TEMPLATE, labels, True) == (CHINESE_TEMPLATES, True)
    assert templates_for_labels("openai-7", "", labels, True) == (CHINESE_TEMPLATES, True)
    assert templates_for_labels("custom", DEFAULT_TEMPLATE, labels, False)[1] is False  # English-only model
    assert templates_for_labels("custom", "{}的照片", labels, True) == (("{}的照片",), False)  # typed: kept
    assert templates_for_labels("custom", DEFAULT_TEMPLATE, ["cat", "dog"], True)[1] is False
    assert all(t.count("{}") == 1 for t in templates_for("zh"))

    # The label cache keys by weights and templates: the same label under Chinese and English
    # templates (or another model) is its own entry, never a stale vector.
    clip, cache = zh_manager.get("clip"), VectorCache(tmp_path / "labels.sqlite3")
    chinese = cached_classifier(clip, ["猫", "狗"], CHINESE_TEMPLATES, cache)
    english = cached_classifier(clip, ["猫", "狗"], (DEFAULT_TEMPLATE,), cache)
    assert chinese.encoded == 2 and english.encoded == 2
    assert cached_classifier(clip, ["狗", "猫"], CHINESE_TEMPLATES, cache).encoded == 0
    assert cached_classifier(session_manager.get("clip"), ["猫", "狗"], CHINESE_TEMPLATES, cache).encoded == 2


def test_the_default_question_and_messages_follow_the_ui_language(tiny_settings, session_manager, images):
    from types import SimpleNamespace

    from mmdemo.chat.local import LocalVLM
    from mmdemo.ui.chat import ChatTab

    tab = ChatTab(tiny_settings, LocalVLM(session_manager))
    chinese = SimpleNamespace(session_hash="zh", headers={"accept-language": "zh-CN,zh;q=0.9"})
    english = SimpleNamespace(session_hash="en", headers={"accept-language": "en-GB"})
    message = {"text": "", "files": [str(images[0])]}
    assert tab._user_turn(message, 200_000, 4, chinese)[-1]["content"] == "描述这张图片。"
    assert tab._user_turn(message, 200_000, 4, english)[-1]["content"] == "Describe this image."
    with pytest.raises(UserFacingError) as raised:
        tab._user_turn({"text": "", "files": []}, 200_000, 4, chinese)
    assert raised.value.translated("zh-CN") == "请输入问题，或附上一张图片。"


def test_the_system_summary_and_progress_speak_the_visitors_language(tiny_settings, session_manager):
    from mmdemo.chat.local import LocalVLM
    from mmdemo.embedding.ingest import Throughput
    from mmdemo.ui.i18n import headers
    from mmdemo.ui.system import COLUMNS, summary

    chinese = summary(tiny_settings, session_manager, LocalVLM(session_manager), "zh-CN")
    assert "**对话：** 在本进程中运行 `tiny-qwen2.5-vl`" in chinese and "**配置：** tiny" in chinese
    assert "**Chat:** in process" in summary(tiny_settings, session_manager, LocalVLM(session_manager))
    assert headers("system.col", COLUMNS, "zh-CN")[0] == "模型" and headers("system.col", COLUMNS)[0] == "model"
    assert Throughput(40).describe("zh-CN").startswith("0 / 40 张图片")


def test_why_a_file_was_skipped_is_said_in_the_visitors_language(tmp_path):
    from mmdemo.embedding.images import BadImageError, Skipped, open_image
    from mmdemo.search.uploads import expand_uploads

    page = tmp_path / "page.jpg"
    page.write_bytes(b"<html>not an image</html>")
    with pytest.raises(BadImageError) as bad:
        open_image(page, 64_000_000, "page.jpg")
    assert str(bad.value) == "page.jpg: not an image Pillow can read"  # logs, API clients, the CLI
    assert bad.value.translated("zh-CN") == "page.jpg：不是 Pillow 能读取的图片"
    assert bad.value.skipped.said("zh-CN") == "不是 Pillow 能读取的图片"
    notes = tmp_path / "notes.zip"
    import zipfile

    with zipfile.ZipFile(notes, "w") as archive:
        archive.writestr("notes.txt", "hello")
    _, skipped = expand_uploads([str(notes)], tmp_path / "work", 10, 10_000_000, 100)
    assert [s.said("en") for s in skipped] == ["not an image file type"]
    assert [s.said("zh-CN") for s in skipped] == ["不是图片文件类型"]
    assert Skipped("a.jpg", "as it was").said("zh-CN") == "as it was"  # a reason given as text stays as is
