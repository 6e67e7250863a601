"""Paths built for a session never leave their folder, whatever the client sent."""

from __future__ import annotations

import os

import pytest

from mmdemo.files import OutsideFolderError, inside, remove_tree, session_key


@pytest.mark.parametrize("sent", ["/etc", "..", "../../x", "a\x00b", "A" * 10_000, "会话/ü/🙂", "", None, "\ud800"])
def test_a_session_key_is_32_hex_characters_whatever_was_sent(sent):
    key = session_key(sent)
    assert len(key) == 32 and all(c in "0123456789abcdef" for c in key)
    assert key == session_key(sent)  # the same session, the same folder


def test_distinct_sessions_get_distinct_keys():
    assert len({session_key(s) for s in ("a", "b", "/a", "a/", "api", None)}) == 5  # None is "api"


@pytest.mark.parametrize("part", ["/etc", "..", "../outside", "x/../../outside", "", ".", "a\x00b"])
def test_inside_refuses_what_would_leave_the_folder(tmp_path, part):
    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(OutsideFolderError):
        inside(root, part)


def test_inside_refuses_a_symlink_out_and_accepts_a_child(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    os.symlink(outside, root / "link")
    with pytest.raises(OutsideFolderError):
        inside(root, "link", "file")
    assert inside(root, "a", "b") == (root / "a" / "b").resolve()


def test_remove_tree_deletes_inside_and_refuses_outside(tmp_path):
    root, victim = tmp_path / "root", tmp_path / "victim"
    (root / "session" / "deep").mkdir(parents=True)
    victim.mkdir()
    (victim / "keep.txt").write_text("keep")
    remove_tree(root, "session")
    assert not (root / "session").exists() and root.is_dir()
    remove_tree(root, "never-made")  # missing: fine
    for escape in (str(victim), "../victim", ""):
        with pytest.raises(OutsideFolderError):
            remove_tree(root, escape)
    assert (victim / "keep.txt").read_text() == "keep"
