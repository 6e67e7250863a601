"""llama.cpp for the tests and benchmarks: `llama-server` built from source, models converted to GGUF.

The source is the `llama-cpp-python` sdist on the package index, which vendors llama.cpp together
with its `convert_hf_to_gguf.py` and `gguf-py`. The build (`llama-server` and `llama-quantize`,
CPU, this machine's instruction set) is cached under MMDEMO_LLAMACPP_CACHE (default
~/.cache/mmdemo-llamacpp/<version>), so only the first run on a machine pays for it (minutes on 2
cores); `.ci/run` builds it before the tests start. Nothing here is mmdemo's code: it stands up a
real inference server for mmdemo to talk to, as `transformers serve` does for the other tests.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import tarfile
from contextlib import contextmanager
from pathlib import Path

LLAMA_CPP_PYTHON = "0.3.36"  # the sdist whose vendored llama.cpp is built
CACHE = Path(os.environ.get("MMDEMO_LLAMACPP_CACHE", Path.home() / ".cache" / "mmdemo-llamacpp")) / LLAMA_CPP_PYTHON
TARGETS = ("llama-server", "llama-quantize")


@contextmanager
def _locked(name: str):
    """One builder at a time (parallel sessions on one machine share the cache)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def source() -> Path:
    """The vendored llama.cpp source tree (the sdist is downloaded and unpacked once)."""
    tree = CACHE / "src" / "llama.cpp"
    if (tree / "convert_hf_to_gguf.py").is_file():
        return tree
    with _locked("source"):
        if (tree / "convert_hf_to_gguf.py").is_file():
            return tree
        sdist = CACHE / "sdist"
        pip = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "-q", "-d", str(sdist)]
        subprocess.run([*pip, f"llama-cpp-python=={LLAMA_CPP_PYTHON}"], check=True)
        archive = next(sdist.glob("llama_cpp_python-*.tar.gz"))
        unpacked = CACHE / "src-tmp"
        shutil.rmtree(unpacked, ignore_errors=True)
        with tarfile.open(archive) as tar:
            tar.extractall(unpacked, filter="data")
        vendored = next(unpacked.glob("llama_cpp_python-*/vendor/llama.cpp"))
        tree.parent.mkdir(parents=True, exist_ok=True)
        vendored.rename(tree)
        shutil.rmtree(unpacked)
    return tree


def binary(name: str = "llama-server") -> Path:
    """A built llama.cpp tool, building them all first if this machine has not yet."""
    built = CACHE / "build" / "bin" / name
    if built.is_file():
        return built
    tree = source()
    with _locked("build"):
        if built.is_file():
            return built
        build, log = CACHE / "build", CACHE / "build.log"
        options = ["CMAKE_BUILD_TYPE=Release", "GGML_NATIVE=ON", "LLAMA_CURL=OFF", "LLAMA_OPENSSL=OFF",
                   "LLAMA_BUILD_TESTS=OFF", "LLAMA_BUILD_EXAMPLES=OFF"]  # fmt: skip
        configure = ["cmake", "-S", str(tree), "-B", str(build), *(f"-D{option}" for option in options)]
        if shutil.which("ninja"):
            configure += ["-G", "Ninja"]
        with log.open("w") as out:
            for step in (configure, ["cmake", "--build", str(build), "--target", *TARGETS, f"-j{os.cpu_count() or 2}"]):
                if subprocess.run(step, stdout=out, stderr=subprocess.STDOUT).returncode != 0:
                    raise RuntimeError(f"building llama.cpp failed: {' '.join(step[:3])}...\n{log.read_text()[-3000:]}")
    return built


def available() -> str:
    """'' when llama.cpp can be built here, else why not (for a test's skip reason)."""
    missing = [tool for tool in ("cmake", "c++") if not shutil.which(tool)]
    return f"llama.cpp cannot be built here: no {', '.join(missing)}" if missing else ""


def convert(model_dir: Path, out: Path, outtype: str = "f16") -> tuple[Path, Path]:
    """`model_dir` (a Hugging Face Qwen2.5-VL folder) as GGUF files: the language model and its mmproj."""
    out.mkdir(parents=True, exist_ok=True)
    model, mmproj = out / f"model-{outtype}.gguf", out / f"mmproj-{outtype}.gguf"
    tree = source()
    env = {**os.environ, "PYTHONPATH": str(tree / "gguf-py"), "NO_LOCAL_GGUF": ""}
    for target, extra in ((model, []), (mmproj, ["--mmproj"])):
        if target.is_file():
            continue
        cmd = [sys.executable, str(tree / "convert_hf_to_gguf.py"), str(model_dir), "--outfile", str(target) + ".tmp",
               "--outtype", outtype, *extra]  # fmt: skip
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"convert_hf_to_gguf.py failed:\n{done.stderr[-3000:]}")
        Path(str(target) + ".tmp").rename(target)
    return model, mmproj


def quantize(model: Path, kind: str) -> Path:
    """`model` quantized to `kind` (Q8_0, Q4_K_M, ...), next to it."""
    target = model.with_name(f"{model.stem}-{kind}.gguf")
    if not target.is_file():
        subprocess.run([str(binary("llama-quantize")), str(model), str(target), kind], check=True, capture_output=True)
    return target


def server_command(
    model: Path, mmproj: Path | None, port: int, context: int = 4096, alias: str = "tiny-qwen2.5-vl", *extra: str
) -> list[str]:
    """`llama-server` for `model` (and its `mmproj`, for images) on a loopback port, one slot."""
    cmd = [str(binary()), "-m", str(model), "--host", "127.0.0.1", "--port", str(port), "-c", str(context),
           "-np", "1", "--no-webui", "-a", alias, *extra]  # fmt: skip
    return cmd + (["--mmproj", str(mmproj)] if mmproj else [])
