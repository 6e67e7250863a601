"""The gallery verbs of the CLI: index several paths, list, stats, remove, prune."""

from __future__ import annotations

from PIL import Image

from mmdemo.commands.cli import main


def test_index_list_remove_prune_and_stats(data_dir, tmp_path, capsys):
    common = ["--profile", "tiny", "--data-dir", str(tmp_path / "data"), "--dtype", "float32", "--preload", ""]
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    for i, color in enumerate([(250, 0, 0), (0, 250, 0), (0, 0, 250)]):
        Image.new("RGB", (64 + 16 * i, 48), color).save(folder / ("sub" if i == 2 else ".") / f"p{i}.png")
    (folder / "notes.txt").write_text("not an image")
    (folder / "sub" / "meta.json").write_text("{}")
    (folder / "README").write_text("no suffix")
    single = tmp_path / "single.jpg"
    Image.new("RGB", (80, 60), (250, 250, 0)).save(single)

    assert main(["index", str(folder), str(single), *common]) == 0  # several paths in one run
    out = capsys.readouterr().out
    assert "ignored 3 non-image file(s): (none) x1, .json x1, .txt x1" in out
    assert "holds 4 image(s)" in out

    assert main(["list", *common]) == 0
    rows = [line.split("\t") for line in capsys.readouterr().out.splitlines() if "\t" in line]
    names = {row[1]: row for row in rows}
    assert set(names) == {"p0.png", "p1.png", "sub/p2.png", "single.jpg"}
    assert names["single.jpg"][4] == str(single.resolve())  # where it came from: what prune checks

    assert main(["remove", names["p0.png"][0], "sub/p2.png", *common]) == 0
    assert "removed 2 image(s); gallery 'library' holds 2" in capsys.readouterr().out
    assert main(["remove", "nope.png", *common]) == 2
    assert "Not in gallery 'library': nope.png" in capsys.readouterr().err

    single.unlink()
    assert main(["stats", *common]) == 0
    stats = capsys.readouterr().out
    assert "images: 2" in stats and "of which missing: 1" in stats
    assert main(["prune", *common]) == 0
    pruned = capsys.readouterr().out
    assert "pruned 1 image(s); gallery 'library' holds 1" in pruned and "single.jpg" in pruned
