"""Gallery search: the vector index, the persistent store, ingest, zip uploads, evaluation, the tab."""

from __future__ import annotations

import dataclasses
import json
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmdemo.embedding.ingest import ImageFile
from mmdemo.embedding.vectorcache import VectorCache
from mmdemo.errors import UserFacingError
from mmdemo.search.evaluate import image_to_text_metrics, retrieval_metrics
from mmdemo.search.gallery import Gallery
from mmdemo.search.index import VectorIndex, recall_at_k
from mmdemo.search.store import GalleryStore, NewImage
from mmdemo.search.thumbs import link_or_copy
from mmdemo.search.uploads import expand_uploads
from tests.conftest import SHARED, needs_shared


def search_tab(settings, galleries):
    """The Search tab over `galleries`, its chat model in process (the tab's ask panel needs one)."""
    from mmdemo.ask.service import PhotoAsker
    from mmdemo.chat.local import LocalVLM
    from mmdemo.ui.search import SearchTab

    return SearchTab(settings, galleries, PhotoAsker(settings, galleries, LocalVLM(galleries.manager, "cpu")))


def unit(a: np.ndarray) -> np.ndarray:
    return (a / np.linalg.norm(a, axis=1, keepdims=True)).astype(np.float32)


def test_exact_index_matches_faiss_and_supports_remove_and_reload(tmp_path):
    rng = np.random.default_rng(0)
    vectors, ids = unit(rng.standard_normal((500, 32))), np.arange(500) * 10 + 3
    index = VectorIndex(32)
    index.add(ids, vectors)
    queries = unit(rng.standard_normal((3, 32)))
    scores, found = index.search(queries, 5)  # the torch scan
    faiss_scores, faiss_ids = index.index.search(queries, 5)
    np.testing.assert_array_equal(found, faiss_ids)
    np.testing.assert_allclose(scores, faiss_scores, atol=1e-5)
    assert index.remove(found[0, :2]) == 2 and len(index) == 498
    assert not set(found[0, :2]) & set(index.search(queries[:1], 10)[1][0])
    index.save(tmp_path / "i.faiss")
    again = VectorIndex.load(tmp_path / "i.faiss", 32)
    np.testing.assert_array_equal(again.search(queries, 5)[1], index.search(queries, 5)[1])


def test_ann_index_keeps_recall_at_10_on_100k_random_unit_vectors():
    rng = np.random.default_rng(1)
    n, dim = 100_000, 512
    vectors, ids = unit(rng.standard_normal((n, dim))), np.arange(n)
    exact, ann = VectorIndex(dim), VectorIndex(dim, ann_threshold=50_000)
    exact.add(ids, vectors)
    ann.add(ids[:60_000], vectors[:60_000])  # crosses the threshold: becomes IVF
    ann.add(ids[60_000:], vectors[60_000:])  # and keeps growing
    assert ann.kind == "ivf" and len(ann) == n
    queries = unit(rng.standard_normal((100, dim)))
    recall = recall_at_k(ann.search(queries, 10)[1], exact.search(queries, 10)[1])
    assert recall >= 0.95, f"recall@10 {recall:.3f} (nprobe {ann.nprobe} of {ann.index.nlist})"


def test_ann_index_probes_few_lists_on_clustered_data():
    rng = np.random.default_rng(2)
    centers = unit(rng.standard_normal((300, 128)))
    vectors = unit(centers[rng.integers(0, 300, 30_000)] + 0.05 * rng.standard_normal((30_000, 128)))
    exact, ann = VectorIndex(128), VectorIndex(128, ann_threshold=10_000)
    exact.add(np.arange(30_000), vectors)
    ann.add(np.arange(30_000), vectors)
    queries = unit(vectors[rng.integers(0, 30_000, 100)] + 0.05 * rng.standard_normal((100, 128)))
    assert recall_at_k(ann.search(queries, 10)[1], exact.search(queries, 10)[1]) >= 0.95
    assert ann.nprobe <= ann.index.nlist // 4, "real structure should let IVF skip most lists"


def test_store_commits_atomically_and_reopens_without_recomputing(tmp_path):
    rng = np.random.default_rng(3)
    store = GalleryStore(tmp_path / "g", 16)
    rows = [NewImage(f"h{i}", f"img{i}.jpg", 10, 10, 100) for i in range(4)]
    vectors = unit(rng.standard_normal((4, 16)))
    added = store.add(rows, vectors)
    assert [it.name for it in added] == ["img0.jpg", "img1.jpg", "img2.jpg", "img3.jpg"]
    store.remove([added[1].id])
    assert store.add(rows[:1], vectors[:1]) == [], "same hash: ignored"

    (tmp_path / "g" / f"index.{store.generation + 1}.faiss").write_bytes(b"half-written by a crash")
    reopened = GalleryStore(tmp_path / "g", 16)  # a new process: nothing recomputed, stray file gone
    assert [it.name for it in reopened.items()] == ["img0.jpg", "img2.jpg", "img3.jpg"]
    assert reopened.search(vectors[2], 1)[0].item.name == "img2.jpg"
    assert sorted(p.name for p in (tmp_path / "g").glob("index.*")) == [f"index.{reopened.generation}.faiss"]


def test_two_processes_sharing_a_gallery_see_each_others_commits(tmp_path):
    """`python -m mmdemo index` while the app serves, or a ZeroGPU worker: one gallery, two openers."""
    rng = np.random.default_rng(5)
    vectors = unit(rng.standard_normal((3, 16)))
    app, cli = GalleryStore(tmp_path / "g", 16), GalleryStore(tmp_path / "g", 16)
    app.add([NewImage("a", "a.jpg", 1, 1, 1)], vectors[:1])
    assert len(cli) == 1 and cli.search(vectors[0], 1)[0].item.name == "a.jpg"
    cli.add([NewImage("b", "b.jpg", 1, 1, 1)], vectors[1:2])
    assert app.search(vectors[1], 1)[0].item.name == "b.jpg"
    app.add([NewImage("c", "c.jpg", 1, 1, 1)], vectors[2:])  # ids stay unique across both writers
    assert [it.name for it in cli.items()] == ["a.jpg", "b.jpg", "c.jpg"]
    assert len({it.id for it in cli.items()}) == 3
    assert sorted(p.name for p in (tmp_path / "g").glob("index.*")) == [f"index.{app.generation}.faiss"]


def test_a_failed_commit_changes_nothing(tmp_path, monkeypatch):
    store = GalleryStore(tmp_path / "g", 8)
    store.add([NewImage("a", "a.jpg", 1, 1, 1)], unit(np.ones((1, 8))))

    def disk_full(path):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store.index, "save", disk_full)
    with pytest.raises(OSError):
        store.add([NewImage("b", "b.jpg", 1, 1, 1)], unit(np.arange(8.0)[None] + 1))
    assert len(store) == 1 and len(store.index) == 1
    assert len(GalleryStore(tmp_path / "g", 8)) == 1


def _photos(tmp_path, count=3):
    rng = np.random.default_rng(4)
    paths = []
    for i in range(count):
        path = tmp_path / f"photo{i}.jpg"
        Image.fromarray(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def test_duplicates_and_cached_embeddings_cost_no_model_time(session_manager, tmp_path):
    clip = session_manager.get("clip")
    cache = VectorCache(tmp_path / "emb.sqlite3")
    photos = _photos(tmp_path)
    renamed = tmp_path / "copy of photo0.jpg"
    renamed.write_bytes(photos[0].read_bytes())
    bad = tmp_path / "notes.txt"
    bad.write_text("hello")
    first = Gallery(clip, GalleryStore(tmp_path / "a", clip.embed_dim), cache, 10**8)
    files = [ImageFile(str(p), p.name) for p in [*photos, renamed, bad]]
    report = first.add_files(files)
    assert report.added == ("photo0.jpg", "photo1.jpg", "photo2.jpg")
    assert report.duplicates == (("copy of photo0.jpg", "photo0.jpg"),)
    assert [(s.name, s.reason) for s in report.skipped] == [("notes.txt", "not an image Pillow can read")]
    assert "duplicate **copy of photo0.jpg**" in report.summary()

    no_model = dataclasses.replace(clip, model=None)  # any forward would fail
    again = Gallery(no_model, first.store, cache, 10**8).add_files(files[:4])
    assert again.added == () and len(again.duplicates) == 4
    other_session = Gallery(no_model, GalleryStore(tmp_path / "b", clip.embed_dim), cache, 10**8)
    reused = other_session.add_files(files[:3])
    assert reused.from_cache == 3 and len(other_session) == 3
    text = clip.encode_texts(["a photo"])[0]
    assert [h.item.name for h in other_session.search_vector(text, 3)] == [
        h.item.name for h in first.search_vector(text, 3)
    ]


def test_thumbnails_outlive_their_sources_and_never_touch_them(session_manager, tmp_path):
    clip = session_manager.get("clip")
    small, large = _photos(tmp_path, 2)
    Image.new("RGB", (900, 700), (200, 30, 30)).save(large)
    gallery = Gallery(clip, GalleryStore(tmp_path / "g", clip.embed_dim), None, 10**8)
    gallery.add_files([ImageFile(str(p), p.name) for p in (small, large)])
    thumbs = {item.name: Path(item.thumb) for item in gallery.store.items()}
    # The file's own size, though the 900x700 JPEG was decoded at half scale for the model.
    assert {item.name: (item.width, item.height) for item in gallery.store.items()} == {
        "photo0.jpg": (80, 60),
        "photo1.jpg": (900, 700),
    }
    original = small.read_bytes()
    assert thumbs["photo0.jpg"].read_bytes() == original  # a small JPEG is its own thumbnail
    with Image.open(thumbs["photo1.jpg"]) as thumb:
        assert thumb.size == (320, 249)
    small.unlink()
    large.unlink()
    assert thumbs["photo0.jpg"].read_bytes() == original
    small.write_bytes(b"a new file under the old name")
    assert thumbs["photo0.jpg"].read_bytes() == original
    thumbs["photo0.jpg"].unlink()
    assert small.read_bytes() == b"a new file under the old name"


def test_thumbnail_links_into_a_new_folder_from_many_threads_at_once(tmp_path):
    """Decoder threads meet at the first thumbnail of a folder: none may take it for a lost source."""
    sources = [tmp_path / f"s{i}.jpg" for i in range(8)]
    for i, source in enumerate(sources):
        source.write_bytes(bytes([i]) * 10)
    for trial in range(20):
        start, errors = threading.Barrier(len(sources)), []

        def link(i: int, trial: int = trial, start: threading.Barrier = start, errors: list = errors) -> None:
            start.wait()
            try:
                link_or_copy(str(sources[i]), tmp_path / f"thumbs{trial}" / "ab" / f"{i}.jpg")
            except OSError as exc:
                errors.append(exc)

        threads = [threading.Thread(target=link, args=(i,)) for i in range(len(sources))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert [(tmp_path / f"thumbs{trial}" / "ab" / f"{i}.jpg").read_bytes() for i in range(8)] == [
            s.read_bytes() for s in sources
        ]


@needs_shared
def test_every_format_pillow_decodes_is_indexed(session_manager, tmp_path):
    clip = session_manager.get("clip")
    folder = SHARED / "data" / "mixed_formats"
    gallery = Gallery(clip, GalleryStore(tmp_path / "g", clip.embed_dim), None, 10**8)
    files = [ImageFile(str(p), p.name) for p in sorted(folder.iterdir())]
    report = gallery.add_files(files)
    assert [s.name for s in report.skipped] == ["not-an-image.txt"]
    assert len(report.added) + len(report.duplicates) == len(files) - 1
    assert {p.suffix.lower() for p in folder.iterdir()} >= {".gif", ".webp", ".tiff", ".jp2", ".pbm", ".bmp"}
    for item in gallery.store.items():
        with Image.open(item.thumb) as thumb:
            assert thumb.mode == "RGB" and max(thumb.size) <= 640


def test_zip_uploads_are_unpacked_safely(tmp_path):
    photos = _photos(tmp_path, 2)
    archive = tmp_path / "holiday.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.write(photos[0], "beach/photo0.jpg")
        z.write(photos[1], "../../escape.jpg")  # zip-slip attempt
        z.writestr("readme.txt", "hi")
        z.writestr("__MACOSX/._photo0.jpg", "resource fork")
    files, skipped = expand_uploads([archive, photos[0]], tmp_path / "work", 10, 10**8)
    assert [f.name for f in files] == ["holiday.zip/beach/photo0.jpg", "holiday.zip/../../escape.jpg", "photo0.jpg"]
    assert all((tmp_path / "work") in Path(f.path).parents for f in files[:2])
    assert [s.name for s in skipped] == ["holiday.zip/readme.txt"]
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("zeros.png", b"\0" * 5_000_000)
    files, skipped = expand_uploads([bomb], tmp_path / "work2", 10, 1_000_000)
    assert files == [] and "unpacks to 5 MB; the limit is 1 MB" in skipped[0].reason
    with pytest.raises(UserFacingError, match="More than 1 images"):
        expand_uploads([archive], tmp_path / "work3", 1, 10**8)


def test_retrieval_metrics_on_a_known_case():
    similarity = np.array(
        [
            [0.9, 0.1, 0.2],  # caption 0 -> image 0: rank 1
            [0.9, 0.5, 0.1],  # caption 1 -> image 1: rank 2
            [0.3, 0.2, 0.1],  # caption 2 -> image 2: rank 3
            [0.1, 0.8, 0.3],  # caption 3 -> image 1: rank 1
        ]
    )
    metrics = retrieval_metrics(similarity, np.array([0, 1, 2, 1]))
    assert (metrics.recall_at_1, metrics.recall_at_5, metrics.median_rank) == (0.5, 1.0, 1.5)
    # Image -> text: image 0's caption (0) is beaten by caption 1 (0.9 vs 0.9: not strictly) -> rank 1;
    # image 1 is found by its best caption (3, 0.8) -> rank 1; image 2's caption 2 (0.1) is beaten
    # by captions 0 (0.2) and 3 (0.3) -> rank 3 (caption 1 ties at 0.1: not counted).
    back = image_to_text_metrics(similarity, np.array([0, 1, 2, 1]))
    assert (back.recall_at_1, back.recall_at_5, back.median_rank, back.images) == (2 / 3, 1.0, 1.0, 3)
    uncaptioned = image_to_text_metrics(np.hstack([similarity, np.ones((4, 1))]), np.array([0, 1, 2, 1]))
    assert uncaptioned.images == 3  # an image no caption describes is not a query (and not a candidate)


@needs_shared
def test_eval_retrieval_and_index_cli_end_to_end(data_dir, tmp_path, capsys):
    from mmdemo.commands.cli import main

    flickr = SHARED / "data" / "flickr8k_1k"
    common = ["--profile", "tiny", "--data-dir", str(tmp_path), "--dtype", "float32"]
    argv = ["eval", "retrieval", "--images", str(flickr / "images"), "--captions", str(flickr / "captions.csv")]
    assert main([*argv, *common]) == 0
    assert main([*argv, "--json", str(tmp_path / "retrieval.json"), *common]) == 0
    out = capsys.readouterr().out
    assert "captions: 5000  images: 1000" in out and "text->image" in out and "image->text" in out
    both = json.loads((tmp_path / "retrieval.json").read_text())
    assert both["text_to_image"]["captions"] == 5000 and both["image_to_text"]["images"] == 1000
    # A random-weight model is near chance: 10/1000 images for a caption, 50/5000 captions for an image.
    assert both["text_to_image"]["recall_at_10"] < 0.05 and both["image_to_text"]["recall_at_10"] < 0.1
    assert main(["index", str(SHARED / "data" / "mixed_formats"), *common]) == 0
    assert "Indexed 22 image(s)" in capsys.readouterr().out
    assert main(["index", str(SHARED / "data" / "mixed_formats"), *common]) == 0
    again = capsys.readouterr().out
    assert "Indexed 0 image(s)" in again and "22 duplicate(s)" in again


def test_search_tab_galleries_are_private_per_session(served_app, tmp_path):
    from gradio_client import Client, handle_file

    photos = _photos(tmp_path, 3)
    archive = tmp_path / "more.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.write(photos[2], "nested/photo2.jpg")
        z.writestr("broken.jpg", b"\xff\xd8 not really")
    alice, bob = Client(served_app[0], verbose=False), Client(served_app[0], verbose=False)
    report = alice.predict([handle_file(str(photos[0])), handle_file(str(photos[1])), handle_file(str(archive))],
                           api_name="/index_images")  # fmt: skip
    assert report.startswith("Indexed **3** image(s)") and "skipped **more.zip/broken.jpg**" in report
    assert "Your gallery holds 3 image(s)" in report

    def sources(client, **kw):
        _, table, *_ = client.predict("a photo", kw.get("image"), 48, -1, api_name="/search")
        return [(row[2], row[3]) for row in table["data"]]

    assert ("photo0.jpg", "yours") in sources(alice) and ("more.zip/nested/photo2.jpg", "yours") in sources(alice)
    assert all(source == "shared" for _, source in sources(bob)), "bob must not see alice's uploads"
    by_example = sources(alice, image=handle_file(str(photos[1])))
    assert by_example[0] == ("photo1.jpg", "yours"), "an image is its own nearest neighbour"
    again = alice.predict([handle_file(str(photos[0]))], api_name="/index_images")
    assert "duplicate **photo0.jpg**" in again and "Your gallery holds 3 image(s)" in again
    _, table, _ = alice.predict("x", None, 48, 0.99, api_name="/search")
    assert all(row[1] >= 0.99 for row in table["data"])


def test_uploads_are_deleted_once_indexed_and_never_served_to_others(served_app, data_dir, tmp_path):
    """Alice's upload is served (to whoever holds its salted path) only until her gallery has it."""
    import httpx

    url = served_app[0]
    photo = _photos(tmp_path, 1)[0]
    with photo.open("rb") as f:
        (path,) = httpx.post(url + "gradio_api/upload", files=[("files", (photo.name, f))]).json()
    assert Path(path).is_relative_to(data_dir), "uploads stay under the data dir"
    assert httpx.get(url + "gradio_api/file=" + path).status_code == 200  # before indexing
    event = httpx.post(
        url + "gradio_api/call/index_images", json={"data": [[{"path": path, "meta": {"_type": "gradio.FileData"}}]]}
    ).json()["event_id"]
    result = httpx.get(f"{url}gradio_api/call/index_images/{event}", timeout=60).text
    assert "Indexed **1** image(s)" in result
    assert not Path(path).exists()
    assert httpx.get(url + "gradio_api/file=" + path).status_code in (403, 404)
    assert not list((data_dir / "uploads").glob("*/*")), "unpacked archives are gone too"


def test_the_library_indexes_in_the_background_without_blocking_other_galleries(tiny_settings, tmp_path):
    """While the bundled photos are indexed, private galleries open and the library answers at once."""
    import threading
    import time

    from mmdemo.models import compute
    from mmdemo.models.factory import build_manager
    from mmdemo.search.galleries import Galleries

    settings = tiny_settings.replace(data_dir=tmp_path / "data")
    manager = build_manager(settings)
    galleries = Galleries(settings, manager)
    manager.get("clip")
    release = threading.Event()
    hold = compute.submit(release.wait, 30, long=True)  # the compute thread is busy: indexing cannot finish
    try:
        syncing = threading.Thread(target=galleries.library, kwargs={"wait": True})
        syncing.start()
        while not galleries.indexing_library():
            time.sleep(0.01)
        started = time.perf_counter()
        galleries.get("sessions/abc123")
        library = galleries.library()
        assert time.perf_counter() - started < 1.0 and len(library) == 0  # what is committed so far
        assert galleries.indexing_library() and not galleries.library_indexed()
    finally:
        release.set()
        hold.result(10)
    syncing.join(60)
    assert galleries.library_indexed() and len(galleries.library()) > 0


def test_the_library_is_indexed_again_for_other_clip_weights(tiny_settings, tmp_path):
    from mmdemo.models.factory import build_manager
    from mmdemo.search.galleries import Galleries

    settings = tiny_settings.replace(data_dir=tmp_path / "data")
    manager = build_manager(settings)
    galleries = Galleries(settings, manager)
    first = len(galleries.library(wait=True))
    assert first > 0
    manager.aliases["clip"] = "random-clip-vit-b-32"  # the operator switched models: other weights
    assert len(galleries.library(wait=True)) == first


def test_a_search_encodes_its_query_once_for_every_gallery(session_manager, tiny_settings, tmp_path, images):
    """The library and a private gallery are searched with one query vector."""
    from mmdemo.search.galleries import Galleries

    settings = tiny_settings.replace(data_dir=tmp_path / "data")
    tab = search_tab(settings, Galleries(settings, session_manager))
    _, token = tab.mine.index_images([str(p) for p in images], None, None)
    tab.galleries.library(wait=True)
    clip = session_manager.get("clip")
    calls: list[int] = []
    real = clip.encode_texts
    clip.encode_texts = lambda texts: calls.append(len(texts)) or real(texts)  # counts, then the real encode
    try:
        _, table, *_ = tab.search("a red square", None, 20, -1.0, 0, token)
    finally:
        del clip.encode_texts
    assert calls == [1]
    assert {row[3] for row in table["data"]} == {"shared", "yours"}


def test_your_images_through_the_api_lists_and_removes_this_clients_uploads(served_app, images):
    from gradio_client import Client, handle_file

    client = Client(served_app[0], verbose=False, download_files=False)
    other = Client(served_app[0], verbose=False, download_files=False)
    client.predict([handle_file(str(p)) for p in images], api_name="/index_images")
    shown, info = client.predict(1, api_name="/my_images")
    assert sorted(item["caption"] for item in shown) == ["img0.png", "img1.png", "img2.png"]
    assert info.startswith("**3** image(s)")
    assert other.predict(1, api_name="/my_images")[0] == []  # another client's gallery is its own
    assert client.predict("img0.png, img2.png", api_name="/remove_images").startswith("Removed 2 image(s)")
    assert client.predict("nope.png", api_name="/remove_images").startswith("None of nope.png")
    shown, info = client.predict(1, api_name="/my_images")
    assert [item["caption"] for item in shown] == ["img1.png"] and info.startswith("**1** image(s)")
    assert client.predict("all", api_name="/remove_images").startswith("Removed 1 image(s)")


def test_a_chinese_query_to_an_english_only_model_is_flagged_once_per_session(tiny_settings, session_manager):
    from types import SimpleNamespace

    from mmdemo.models.factory import build_manager
    from mmdemo.search.galleries import Galleries

    tab = search_tab(tiny_settings, Galleries(tiny_settings, session_manager))  # tiny-clip: English only
    ann, bob = SimpleNamespace(session_hash="ann"), SimpleNamespace(session_hash="bob")
    assert tab.language_notice("a beach at sunset", ann) == ""
    assert "`tiny-clip` reads English only" in tab.language_notice("夕阳下的海滩", ann)
    assert "MMDEMO_LANGUAGE=zh" in tab.language_notice("海滩", bob)
    assert tab.language_notice("夕阳下的海滩", ann) == ""  # once per session
    cho = SimpleNamespace(session_hash="cho", headers={"accept-language": "zh-CN,zh;q=0.9"})
    assert "只懂英文" in tab.language_notice("夕阳下的海滩", cho)  # in the visitor's language
    multilingual = tiny_settings.replace(language="zh")  # MMDEMO_LANGUAGE=zh: the multilingual tiny CLIP
    other = search_tab(multilingual, Galleries(multilingual, build_manager(multilingual)))
    assert other.galleries.manager.resolve_id("clip") == "tiny-clip-multilingual"
    assert other.language_notice("夕阳下的海滩", ann) == ""


def test_uploads_are_kept_at_full_size_within_the_quota_and_go_with_the_gallery(
    tiny_settings, session_manager, tmp_path
):
    from mmdemo.search.galleries import Galleries, session_gallery

    big = tmp_path / "big.png"
    Image.radial_gradient("L").resize((900, 700)).convert("RGB").save(big)  # its thumbnail is 320 px
    settings = tiny_settings.replace(data_dir=tmp_path / "data")
    tab = search_tab(settings, Galleries(settings, session_manager))
    _, token = tab.mine.index_images([str(big)], None, None)
    (item,) = tab.galleries.get(session_gallery(token)).store.items()
    kept = tab.full._original(item, "yours", token)
    assert kept != item.thumb and Image.open(kept).size == (900, 700)
    assert tab.full._original(item, "yours", "someoneelse") == item.thumb  # another session's token: no original
    tab.galleries.drop(session_gallery(token))
    assert not Path(kept).exists()  # the kept upload goes with its gallery
    # Without quota: thumbnails only.
    none = settings.replace(originals_mb=0)
    tab = search_tab(none, Galleries(none, session_manager))
    big2 = tmp_path / "big2.png"
    Image.radial_gradient("L").resize((800, 600)).convert("RGB").save(big2)
    _, token = tab.mine.index_images([str(big2)], None, None)
    (item,) = tab.galleries.get(session_gallery(token)).store.items()
    assert tab.full._original(item, "yours", token) == item.thumb


def test_the_first_search_of_a_new_deployment_finds_the_bundled_photos(tiny_settings, tmp_path):
    """CLIP not preloaded, a fresh data dir: the very first search waits for the bundled photos to be
    indexed (they are few) instead of answering "the gallery is empty"."""
    from mmdemo.models.factory import build_manager
    from mmdemo.search.galleries import Galleries

    settings = tiny_settings.replace(data_dir=tmp_path / "data", preload=())
    tab = search_tab(settings, Galleries(settings, build_manager(settings)))
    shown, table, ids, *_ = tab.search(
        "a rocket on its launch pad", None, 5, -1.0, 0, None, progress=lambda *a, **k: None
    )
    assert len(shown) == 5 and len(ids) == 5 and len(table["data"]) == 5
    assert tab.galleries.library_indexed()


def test_the_library_is_indexed_as_soon_as_clip_is_resident(tiny_settings, tmp_path):
    """Not on the first search: loading CLIP (for any reason) starts it."""
    from mmdemo.models.factory import build_manager
    from mmdemo.search.galleries import Galleries

    settings = tiny_settings.replace(data_dir=tmp_path / "data", preload=())
    manager = build_manager(settings)
    galleries = Galleries(settings, manager)
    assert not galleries.library_indexed()
    manager.get("clip")  # e.g. a classification: no search asked for the library
    deadline = __import__("time").monotonic() + 120
    while not galleries.library_indexed() and __import__("time").monotonic() < deadline:
        galleries.wait_library(0.25)
    assert galleries.library_indexed() and len(galleries.library()) > 0


def test_each_search_request_is_counted_once(session_manager, tiny_settings, tmp_path):
    """The page's search, its re-rank step and Find similar each call the tab's search: one request each."""
    from mmdemo.search.galleries import Galleries
    from mmdemo.serving import metrics

    settings = tiny_settings.replace(data_dir=tmp_path / "data")
    tab = search_tab(settings, Galleries(settings, session_manager))
    tab.galleries.library(wait=True)
    counted = metrics.REQUESTS.labels("search", "ok")
    before = counted._value.get()
    _, _, ids, *_ = tab.search_now("a red square", None, 4, -1.0, 0, None)
    assert counted._value.get() == before + 1
    tab.find_similar(ids[0], 4, -1.0, None)
    tab.search("a red square", None, 4, -1.0, 0, None)  # the API's
    assert counted._value.get() == before + 3
