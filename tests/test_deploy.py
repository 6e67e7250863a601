"""What deployments read: the Spaces front matter, the requirements a Space installs, the Dockerfile."""

from __future__ import annotations

import re

import yaml
from packaging.requirements import Requirement
from packaging.version import Version

from tests.conftest import REPO


def front_matter() -> dict:
    text = (REPO / "README.md").read_text()
    assert text.startswith("---\n"), "README must open with the Spaces front matter"
    return yaml.safe_load(text.split("---\n", 2)[1])


def pins_for(python_version: str) -> dict[str, Version]:
    """name -> pinned version of requirements.txt as pip resolves it on that Python."""
    pins = {}
    for line in (REPO / "requirements.txt").read_text().splitlines():
        line = line.split("  #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        req = Requirement(line)
        env = {"python_version": python_version, "python_full_version": python_version + ".0"}
        if (req.marker is None or req.marker.evaluate(env)) and str(req.specifier).startswith("=="):
            pins[req.name] = Version(str(req.specifier)[2:])
    return pins


def test_front_matter_makes_the_repo_a_working_space():
    import gradio

    meta = front_matter()
    for key in ("title", "emoji", "sdk", "sdk_version", "app_file", "python_version", "suggested_hardware",
                "models", "preload_from_hub"):  # fmt: skip
        assert meta.get(key), key
    assert meta["sdk"] == "gradio" and meta["sdk_version"] == gradio.__version__
    assert (REPO / meta["app_file"]).is_file()
    assert pins_for(meta["python_version"])["gradio"] == Version(gradio.__version__)
    # The default models are declared and preloaded into the Space at build time.
    from mmdemo.models.registry import resolve

    defaults = {resolve("clip-vit-b-32").download, resolve("qwen2.5-vl-7b").download}
    assert defaults <= set(meta["models"])
    assert defaults <= {entry.split()[0] for entry in meta["preload_from_hub"]}


def test_the_space_installs_a_torch_that_zero_gpu_supports():
    space = pins_for(str(front_matter()["python_version"]))
    assert Version("2.8") <= space["torch"] < Version("2.12"), "ZeroGPU supports torch 2.8-2.11"
    assert space["torchvision"].minor == space["torch"].minor + 15  # the matching pair (2.11 <-> 0.26)
    here = pins_for("3.11")
    assert here["torch"] == Version("2.14.1") and here["torchvision"] == Version("0.29.1")


def test_dockerfile_key_properties():
    lines = [ln.strip() for ln in (REPO / "Dockerfile").read_text().splitlines()]
    text = "\n".join(lines)
    base = re.search(r"^FROM (\S+)", text, re.M).group(1)
    assert re.fullmatch(r"nvidia/cuda:\d+\.\d+\.\d+-(cudnn-)?runtime-ubuntu\d+\.\d+", base), base  # pinned
    assert "python3.11" in text
    first = lambda pattern: next(i for i, ln in enumerate(lines) if re.search(pattern, ln))  # noqa: E731
    # Dependencies are a layer of their own, before the code: code edits do not reinstall torch.
    assert first(r"^COPY requirements\.txt") < first(r"pip install -r") < first(r"^COPY .*\. /app")
    assert re.search(r"useradd .*-u 1000", text) and first(r"^USER user") > first(r"useradd")
    assert "HF_HOME=/data/hf" in text and re.search(r"^VOLUME .*/data", text, re.M)
    assert re.search(r"^EXPOSE 7860", text, re.M) and "MMDEMO_HOST=0.0.0.0" in text
    assert re.search(r"^HEALTHCHECK .*CMD curl -fsS http://127\.0\.0\.1:7860/ready", text, re.M)
    assert re.search(r'^CMD \["python", "app.py"\]', text, re.M)
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".git", "test-artifacts", ".venv"} <= set(ignored)
    readme = (REPO / "README.md").read_text()
    assert "docker build -t mmdemo ." in readme and "docker run --gpus all -p 7860:7860" in readme
