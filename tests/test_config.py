import os
import subprocess
import sys
from pathlib import Path

import pytest

from mmdemo.config import Settings

REPO = Path(__file__).resolve().parents[1]


def test_env_values_are_parsed_to_field_types():
    env = {"MMDEMO_PORT": "9000", "MMDEMO_SHARE": "yes", "MMDEMO_PRELOAD": "clip, vlm,", "MMDEMO_DATA_DIR": "~/x",
           "MMDEMO_MEMORY_BUDGET_GB": "12.5", "MMDEMO_PROFILE": "tiny"}  # fmt: skip
    s = Settings.from_env(env)
    assert (s.port, s.share, s.preload, s.memory_budget_gb, s.profile) == (9000, True, ("clip", "vlm"), 12.5, "tiny")
    assert s.data_dir == Path("~/x").expanduser()
    assert s.is_synthetic


def test_cli_overrides_env_and_defaults_stay():
    s = Settings.from_cli(
        ["--port", "8000", "--no-share", "--dtype", "float32"], environ={"MMDEMO_PORT": "9000", "MMDEMO_SHARE": "1"}
    )
    assert (s.port, s.share, s.dtype, s.profile) == (8000, False, "float32", "default")


@pytest.mark.parametrize(
    ("env", "message"),
    [({"MMDEMO_PORT": "many"}, "MMDEMO_PORT must be a int"), ({"MMDEMO_DEVICE": "tpu"}, "device must be one of"),
     ({"MMDEMO_SHARE": "maybe"}, "must be true or false")],
)  # fmt: skip
def test_bad_values_name_the_setting(env, message):
    with pytest.raises(ValueError, match=message):
        Settings.from_env(env)


def test_help_lists_every_setting_with_its_env_name():
    out = subprocess.run([sys.executable, "app.py", "--help"], cwd=REPO, capture_output=True, text=True, check=True)
    for name in ("vlm_model", "quantization", "max_labels", "memory_budget_gb"):
        assert "--" + name.replace("_", "-") in out.stdout and "MMDEMO_" + name.upper() in out.stdout


def test_the_inference_server_key_is_never_printed():
    env = {**os.environ, "MMDEMO_VLM_API_KEY": "sk-live-123", "MMDEMO_VLM_URL": "http://vllm:8000/v1"}
    out = subprocess.run([sys.executable, "app.py", "--help"], cwd=REPO, capture_output=True, text=True, check=True,
                         env=env)  # fmt: skip
    assert "sk-live-123" not in out.stdout and "MMDEMO_VLM_API_KEY; now: (set)" in " ".join(out.stdout.split())
    settings = Settings.from_env(env)
    assert settings.vlm_api_key == "sk-live-123" and "sk-live-123" not in repr(settings)
    assert settings.remote_vlm and settings.local_preload == ("clip",)


def test_readme_documents_every_setting():
    import dataclasses

    table = (REPO / "docs" / "configuration.md").read_text()
    missing = [f.name for f in dataclasses.fields(Settings) if f"`MMDEMO_{f.name.upper()}`" not in table]
    assert not missing, f"docs/configuration.md's table lacks {missing}"
    readme = (REPO / "README.md").read_text()
    assert "docs/configuration.md" in readme
    assert "pip install -r requirements.txt && python app.py" in readme
    assert "pip install -r requirements-dev.txt && pytest" in readme


def test_a_list_settings_items_are_checked_against_its_choices():
    assert Settings.from_cli(["--ocr-languages", "en"], environ={}).ocr_languages == ("en",)
    assert Settings.from_env({"MMDEMO_OCR_LANGUAGES": "zh,en"}).ocr_languages == ("zh", "en")
    with pytest.raises(ValueError, match="ocr_languages must be one of zh, en"):
        Settings.from_env({"MMDEMO_OCR_LANGUAGES": "zh,ja"})
