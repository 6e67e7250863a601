"""What deployments read: the Spaces front matter, the requirements a Space installs, the Dockerfile."""

from __future__ import annotations

import json
import re

import pytest
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
    readme = (REPO / "docs" / "deploy.md").read_text()
    assert "docker build -t mmdemo ." in readme and "docker run --gpus all -p 7860:7860" in readme


DEPLOY = REPO / "deploy"
K8S_VERSION = "1.37.0"  # the newest schemas kubernetes-validate bundles (offline)


def k8s_documents() -> list[tuple[str, dict]]:
    docs = []
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        docs += [(path.name, doc) for doc in yaml.safe_load_all(path.read_text()) if doc]
    return docs


def test_every_kubernetes_manifest_validates_against_its_schema():
    import kubernetes_validate

    docs = [(name, doc) for name, doc in k8s_documents() if doc["kind"] != "Kustomization"]
    for _, doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)  # raises, naming the bad field
    # The check itself can fail: a misspelt field in a real manifest is refused.
    deployment = next(doc for _, doc in docs if doc["kind"] == "Deployment")
    broken = {**deployment, "spec": {**deployment["spec"], "replica": 2}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)
    listed = yaml.safe_load((DEPLOY / "k8s" / "kustomization.yaml").read_text())["resources"]
    assert sorted(listed) == sorted({name for name, _ in docs})


def test_kubernetes_split_vllm_on_a_gpu_and_sticky_app_replicas():
    by_kind = {}
    for _, doc in k8s_documents():
        if doc["kind"] == "Kustomization":
            continue
        by_kind.setdefault(doc["kind"], {})[doc["metadata"]["name"]] = doc
    vllm = by_kind["Deployment"]["vllm"]["spec"]["template"]["spec"]
    (server,) = vllm["containers"]
    assert server["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert server["readinessProbe"]["httpGet"]["path"] == "/health"
    claims = {v["persistentVolumeClaim"]["claimName"] for v in vllm["volumes"] if "persistentVolumeClaim" in v}
    assert claims <= set(by_kind["PersistentVolumeClaim"]) and claims
    app = by_kind["Deployment"]["mmdemo"]
    assert app["spec"]["replicas"] >= 2
    env = {e["name"]: e for e in app["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["MMDEMO_VLM_URL"]["value"] == "http://vllm:8000/v1"  # the vLLM Service
    assert "secretKeyRef" in env["MMDEMO_VLM_API_KEY"]["valueFrom"]  # the key is never in the manifest
    assert app["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["path"] == "/ready"
    notes = by_kind["Ingress"]["mmdemo"]["metadata"]["annotations"]
    assert notes["nginx.ingress.kubernetes.io/affinity"] == "cookie"
    assert int(notes["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 600
    assert notes["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"
    assert by_kind["Service"]["mmdemo"]["spec"]["sessionAffinity"] == "ClientIP"
    job = by_kind["Job"]["mmdemo-index"]["spec"]["template"]["spec"]
    assert "python -m mmdemo index" in " ".join(job["containers"][0]["command"])
    # The Job writes the library into the volume the replicas read.
    shared = {v["persistentVolumeClaim"]["claimName"] for v in job["volumes"] if "persistentVolumeClaim" in v}
    app_claims = {v["persistentVolumeClaim"]["claimName"] for v in app["spec"]["template"]["spec"]["volumes"]}
    assert "mmdemo-data" in shared & app_claims
    assert "ReadWriteMany" in by_kind["PersistentVolumeClaim"]["mmdemo-data"]["spec"]["accessModes"]


def test_compose_splits_the_app_from_a_healthy_vllm():
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    vllm, app = compose["services"]["vllm"], compose["services"]["mmdemo"]
    image, tag = vllm["image"].split(":")
    assert image == "vllm/vllm-openai" and re.fullmatch(r"v\d+\.\d+\.\d+", tag)  # pinned, not latest
    flags = dict(arg.removeprefix("--").split("=", 1) for arg in vllm["command"] if "=" in arg)
    assert flags["model"] == "Qwen/Qwen2.5-VL-7B-Instruct" and int(flags["max-model-len"]) > 0
    assert json.loads(flags["limit-mm-per-prompt"])["image"] >= 8
    assert json.loads(flags["mm-processor-kwargs"])["max_pixels"] > 0
    (gpu,) = vllm["deploy"]["resources"]["reservations"]["devices"]
    assert gpu["capabilities"] == ["gpu"] and gpu["driver"] == "nvidia"
    assert "/health" in " ".join(vllm["healthcheck"]["test"])
    assert any(v.endswith(":/root/.cache/huggingface") for v in vllm["volumes"])
    assert app["build"]["context"] == ".." and (DEPLOY / app["build"]["context"] / app["build"]["dockerfile"]).is_file()
    assert app["environment"]["MMDEMO_VLM_URL"] == "http://vllm:8000/v1"
    assert app["environment"]["MMDEMO_VLM_SERVED_MODEL"] == flags["served-model-name"]
    assert app["depends_on"]["vllm"]["condition"] == "service_healthy"
    assert "docker compose -f deploy/compose.yaml up" in (REPO / "docs" / "deploy.md").read_text()


def test_the_cpu_compose_serves_the_chat_from_llama_cpp_with_its_mmproj():
    compose = yaml.safe_load((DEPLOY / "compose.cpu.yaml").read_text())
    llama, app = compose["services"]["llamacpp"], compose["services"]["mmdemo"]
    assert llama["image"].startswith("ghcr.io/ggml-org/llama.cpp:server")
    command = " ".join(llama["command"])
    assert "-hf ggml-org/Qwen2.5-VL-3B-Instruct-GGUF" in command and "--no-mmproj" not in command  # images need it
    context = int(next(a.split("=")[1] for a in llama["command"] if a.startswith("--ctx-size=")))
    alias = next(a.split("=")[1] for a in llama["command"] if a.startswith("--alias="))
    env = app["environment"]
    assert env["MMDEMO_VLM_URL"] == "http://llamacpp:8080/v1" and env["MMDEMO_VLM_SERVER"] == "llamacpp"
    assert env["MMDEMO_VLM_SERVED_MODEL"] == alias and int(env["MMDEMO_MAX_CONTEXT_TOKENS"]) < context
    assert "/health" in " ".join(llama["healthcheck"]["test"])
    assert app["depends_on"]["llamacpp"]["condition"] == "service_healthy" and "deploy" not in llama  # no GPU
    assert "docker compose -f deploy/compose.cpu.yaml up" in (REPO / "docs" / "deploy.md").read_text()
