"""Every entry point against hostile and odd files: a clear message per bad file, the rest processed,
nothing written outside the data dir, memory bounded for bombs. Writes the table it saw to
test-artifacts/hostile-inputs.md."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import REPO, start_app, stop_app
from tests.hostile import ENDPOINTS, Case, build_cases

ZIP_LIMIT_MB = 20
UNCLEAR = ("Traceback", "Something went wrong", "/tmp/", "Errno")


@pytest.fixture(scope="module")
def hostile_app(data_dir, tmp_path_factory):
    log = tmp_path_factory.mktemp("hostile-app") / "app.log"
    url, proc = start_app(data_dir, log, MMDEMO_MAX_ZIP_MB=str(ZIP_LIMIT_MB), MMDEMO_MAX_ZIP_MEMBERS="500",
                          MMDEMO_PRELOAD="clip,vlm")  # fmt: skip
    yield url, log, proc
    stop_app(proc)


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident memory so far (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def run(client, endpoint: str, case: Case) -> tuple[bool, str]:
    """(processed, what the user was told) for one file at one entry point."""
    from gradio_client import handle_file

    upload = handle_file(str(case.path))
    try:
        if endpoint == "index":
            report = client.predict([upload], api_name="/index_images")
            return "Indexed **0**" not in report, report
        if endpoint == "search":
            hits, *_ = client.predict("", upload, 3, -1.0, api_name="/search")
            return bool(hits), f"{len(hits)} results"
        if endpoint == "classify":
            label, *_ = client.predict(upload, [], "cat, dog", "custom", "a photo of a {}.", 2, api_name="/classify")
            return True, f"top label {label['label']}"
        history, _ = client.predict({"text": "What is this?", "files": [upload]}, [], max_new_tokens=2,
                                    api_name="/chat")  # fmt: skip
        seen = any(isinstance(m["content"], list) and m["content"][0].get("type") == "file" for m in history)
        return seen, "answered, image seen" if seen else "answered without the file (skipped with a warning)"
    except Exception as exc:  # noqa: BLE001 (any refusal: its text is what the user saw)
        return False, str(exc).strip().splitlines()[-1]


def test_hostile_inputs_at_every_entry_point(hostile_app, data_dir, tmp_path):
    from gradio_client import Client

    url, log, proc = hostile_app
    cases = build_cases(tmp_path / "inputs", ZIP_LIMIT_MB * 1_000_000)
    client = Client(url, verbose=False)
    warm = next(c for c in cases if c.name == "rgba.png")
    warm_client = Client(url, verbose=False)  # its own session: its gallery is not the one tested
    for endpoint in ENDPOINTS:  # first calls allocate pools and caches: not the bombs' doing
        assert run(warm_client, endpoint, warm)[0], endpoint
    outside = [data_dir.parent, REPO, Path("/tmp")]
    before_outside = {p: set(p.iterdir()) for p in outside}
    rows, rss_growth = [], {}
    for case in sorted(cases, key=lambda c: not c.bomb):  # bombs first: their growth is measured alone
        for endpoint in ENDPOINTS:
            if case.zip and endpoint != "index":
                continue
            peak = peak_rss_mb(proc.pid)
            processed, told = run(client, endpoint, case)
            if case.bomb:
                rss_growth[(case.name, endpoint)] = peak_rss_mb(proc.pid) - peak
            rows.append((case, endpoint, processed, told))
    table = ["| input | entry point | processed | what the user saw |", "|---|---|---|---|"]
    table += [f"| {c.name} | {e} | {'yes' if p else 'no'} | {t.replace('|', '/')[:160]} |" for c, e, p, t in rows]
    table += ["", "Peak RSS growth during bombs (MB): "
              + ", ".join(f"{n} @ {e}: {g:.0f}" for (n, e), g in rss_growth.items())]  # fmt: skip
    (REPO / "test-artifacts").mkdir(exist_ok=True)
    (REPO / "test-artifacts" / "hostile-inputs.md").write_text("\n".join(table) + "\n")

    for case, endpoint, processed, told in rows:
        where = f"{case.name} @ {endpoint}: {told}"
        assert not any(marker in told for marker in UNCLEAR), where
        if case.zip:
            continue
        if endpoint == "index":
            assert processed == case.good, where
            if not case.good:
                assert f"skipped **{case.name}**" in told, where
        elif endpoint == "chat":
            assert processed == case.chat_ok, where  # a bad file is dropped, the question answered
        elif not case.good:
            assert not processed and len(told) > 10, where  # refused, with a reason
        else:
            assert processed, where
    zips = {c.name: t for c, e, _, t in rows if c.zip}
    assert "Indexed **2**" in zips["nested.zip"] and "nested.zip/trip/notes.txt**: not an image" in zips["nested.zip"]
    assert "Indexed **2**" in zips["traversal.zip"]
    assert f"the limit is {ZIP_LIMIT_MB} MB" in zips["zip-bomb.zip"]
    assert "holds 2000 files; the limit is 500" in zips["many-members.zip"]
    for place, entries in before_outside.items():
        new = {p.name for p in set(place.iterdir()) - entries}
        assert not any("escaped" in name or name.endswith(".jpg") for name in new), (place, new)
    assert not list(data_dir.parent.rglob("escaped*.jpg")) and not list(data_dir.rglob("escaped*.jpg"))
    assert max(rss_growth.values()) < 300, rss_growth
    assert "Traceback" not in log.read_text()


def test_one_batch_keeps_the_good_files_and_names_the_bad(hostile_app, tmp_path):
    from gradio_client import Client, handle_file

    cases = [c for c in build_cases(tmp_path / "inputs", ZIP_LIMIT_MB * 1_000_000) if not c.bomb]
    report = Client(hostile_app[0], verbose=False).predict(
        [handle_file(str(c.path)) for c in cases], api_name="/index_images"
    )
    images = [c for c in cases if c.good and not c.zip]
    assert f"Indexed **{len(images) + 4}** image(s)" in report, report  # + 2 from each good archive
    for case in cases:
        if not case.good:
            assert f"skipped **{case.name}**" in report, (case.name, report)
