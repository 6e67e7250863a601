"""GET /metrics: Prometheus' text format, the counters moving with real traffic, who may read it."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import REPO, free_port

DASHBOARD = REPO / "deploy" / "grafana" / "mmdemo.json"


def scrape(url: str, headers: dict[str, str] | None = None) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(sample name, sorted labels): value} of one scrape."""
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=10) as answer:
        assert answer.headers["Content-Type"].startswith("text/plain; version=")
        body = answer.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_a_search_and_a_chat_move_the_counters_and_fill_the_histograms(served_app, images):
    from gradio_client import Client, handle_file

    url = served_app[0] + "metrics"
    before = scrape(url)
    client = Client(served_app[0], verbose=False)
    client.predict("a red square", None, 5, -1.0, api_name="/search")
    client.predict({"text": "Hi", "files": [handle_file(str(images[0]))]}, [], max_new_tokens=6, api_name="/chat")
    with pytest.raises(Exception):  # noqa: B017 (a refusal, counted as one)
        client.predict("", None, 5, -1.0, api_name="/search")
    after = scrape(url)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("mmdemo_requests_total", feature="search", outcome="ok") == 1
    assert moved("mmdemo_requests_total", feature="search", outcome="refused") == 1
    assert moved("mmdemo_requests_total", feature="chat", outcome="ok") == 1
    assert moved("mmdemo_request_seconds_count", feature="chat") == 1
    assert moved("mmdemo_request_seconds_bucket", feature="search", le="+Inf") == 2
    assert moved("mmdemo_queue_wait_seconds_count", queue="clip") == 2
    assert moved("mmdemo_queue_wait_seconds_count", queue="vlm") == 1
    assert moved("mmdemo_chat_tokens_total") >= 1
    assert ("mmdemo_queue_length", (("queue", "clip"),)) in after
    backlog = {dict(labels)["work"]: v for (name, labels), v in after.items() if name == "mmdemo_background_backlog"}
    assert backlog.get("videos") == 0 and "photo" in backlog  # the line of videos to cut; the EXIF stage's images
    resident = {
        dict(labels)["model"]: v for (name, labels), v in after.items() if name == "mmdemo_model_resident_bytes"
    }
    assert resident.get("tiny-clip", 0) > 0 and resident.get("tiny-qwen2.5-vl", 0) > 0
    assert value(after, "mmdemo_model_loads_total", model="tiny-clip", outcome="ok") >= 1


def test_visitors_cannot_read_the_metrics_by_default_and_operators_choose(tiny_settings, launch):
    _, url = launch(tiny_settings)
    with pytest.raises(urllib.error.HTTPError) as refused:  # through a proxy: on behalf of anyone
        scrape(url + "metrics", {"X-Forwarded-For": "203.0.113.7"})
    assert refused.value.code == 403 and "MMDEMO_METRICS" in refused.value.read().decode()
    assert scrape(url + "metrics")  # from this machine, to an app bound to loopback: the operator
    _, url = launch(tiny_settings.replace(metrics="off"))
    with pytest.raises(urllib.error.HTTPError) as off:
        scrape(url + "metrics")
    assert off.value.code == 404
    port = free_port()
    _, url = launch(tiny_settings.replace(metrics="everyone", metrics_port=port))
    assert scrape(url + "metrics", {"X-Forwarded-For": "203.0.113.7"})  # a scraper behind a proxy
    samples = scrape(f"http://127.0.0.1:{port}/metrics")  # the separate port
    assert any(name.startswith("mmdemo_") for name, _ in samples)


def test_the_grafana_dashboard_asks_only_for_metrics_the_app_serves(served_app):
    served = {name for name, _ in scrape(served_app[0] + "metrics")}
    dashboard = json.loads(DASHBOARD.read_text())
    queries = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    assert len(queries) >= 6
    asked = {name for expr in queries for name in re.findall(r"\bmmdemo_[a-z_]+", expr)}
    assert asked and asked <= served, asked - served
    families = {re.sub(r"_(total|bucket|count|sum)$", "", name) for name in served if name.startswith("mmdemo_")}
    shown = {re.sub(r"_(total|bucket|count|sum)$", "", name) for name in asked}
    assert families <= shown, f"metrics without a panel: {families - shown}"


def test_kubernetes_scrapes_the_metrics_port():
    import yaml

    docs = list(yaml.safe_load_all((REPO / "deploy" / "k8s" / "mmdemo.yaml").read_text()))
    app = next(d for d in docs if d and d["kind"] == "Deployment")
    template = app["spec"]["template"]
    annotations = template["metadata"]["annotations"]
    container = template["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert annotations["prometheus.io/scrape"] == "true" and annotations["prometheus.io/path"] == "/metrics"
    assert int(annotations["prometheus.io/port"]) == ports["metrics"] == int(env["MMDEMO_METRICS_PORT"])
    assert Path(DASHBOARD).is_file()
