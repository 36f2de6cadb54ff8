"""Converting a transformers model to CTranslate2, once, cached beside its weights.

The conversion of a model folder lives in ``<folder>/.ct2/<compute type>-<key>/`` (or, when
the folder is not writable, under the user cache), where the key is a digest of the model's
config and of each weight file's name, size and first and last MiB: new weights, a new key.
A conversion is written to a temporary folder and renamed into place once complete, under
an exclusive lock, so a half-written conversion is never used and two processes never
convert the same model at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from openended.errors import UserError

COMPUTE_TYPES = ("int8", "int8_float32", "float32")
MARKER = "openended-ct2.json"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
_CHUNK = 1 << 20


class ConversionError(UserError, RuntimeError):
    """A model could not be converted to (or loaded as) CTranslate2; the message names the
    model and the reason."""


def weights_key(source: Path) -> str:
    """A digest that changes when the model's config or weights change."""
    digest = hashlib.sha256()
    config = source / "config.json"
    digest.update(config.read_bytes() if config.is_file() else b"")
    weights = sorted(p for p in source.iterdir() if p.suffix in WEIGHT_SUFFIXES and p.is_file())
    for path in weights:
        size = path.stat().st_size
        digest.update(f"{path.name}:{size}".encode())
        with path.open("rb") as handle:
            digest.update(handle.read(_CHUNK))
            if size > 2 * _CHUNK:
                handle.seek(size - _CHUNK)
                digest.update(handle.read(_CHUNK))
    import ctranslate2

    digest.update(".".join(ctranslate2.__version__.split(".")[:2]).encode())
    return digest.hexdigest()[:16]


def conversions_folder(source: Path) -> Path:
    """Where the conversions of `source` live: beside its weights when that folder is
    writable, else in the user cache."""
    if os.access(source, os.W_OK):
        return source / ".ct2"
    from openended.lm.embedded import cache_root

    tag = hashlib.sha256(str(source.resolve()).encode()).hexdigest()[:12]
    return cache_root() / "ct2" / f"{source.name}-{tag}"


def converted_model(
    source: str | Path,
    compute_type: str = "int8",
    *,
    progress: Callable[[str], None] | None = None,
) -> Path:
    """The CTranslate2 conversion of the transformers model folder `source` at
    `compute_type` (weights quantized to int8, or kept float32), converted on first use."""
    source = Path(source)
    if compute_type not in COMPUTE_TYPES:
        raise ConversionError(
            f"compute type {compute_type!r} is not one of {', '.join(COMPUTE_TYPES)}"
        )
    if not (source / "config.json").is_file():
        raise ConversionError(f"{source}: no config.json (not a transformers model folder)")
    target = conversions_folder(source) / f"{compute_type}-{weights_key(source)}"
    if (target / MARKER).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with _locked(target.parent / f".{target.name}.lock"):
        if (target / MARKER).is_file():  # another process converted it meanwhile
            return target
        if progress is not None:
            progress(f"converting {source.name} to CTranslate2 ({compute_type}), once")
        tmp = target.parent / f".{target.name}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            _convert(source, tmp, compute_type)
            (tmp / MARKER).write_text(
                json.dumps({"source": str(source), "compute_type": compute_type}, indent=1)
            )
            shutil.rmtree(target, ignore_errors=True)  # an unmarked leftover
            tmp.replace(target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _convert(source: Path, output: Path, compute_type: str) -> None:
    from ctranslate2.converters import TransformersConverter
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    try:
        TransformersConverter(str(source)).convert(str(output), quantization=compute_type)
    except Exception as exc:  # the converter raises ValueError, KeyError, OSError, ...
        raise ConversionError(
            f"{source}: cannot convert to CTranslate2 ({compute_type}): "
            f"{type(exc).__name__}: {exc}"[:600]
        ) from None


@contextlib.contextmanager
def _locked(path: Path):  # type: ignore[no-untyped-def]
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
