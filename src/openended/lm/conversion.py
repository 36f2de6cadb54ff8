"""Converting a transformers model to CTranslate2, once, cached beside its weights.

The conversion of a model folder lives in ``<folder>/.ct2/<compute type>-<key>/`` (or, when
the folder is not writable, under the user cache), where the key is a digest of the model's
config and of each weight file's name, size and first and last MiB: new weights, a new key.
A conversion is written to a temporary folder and renamed into place once complete, under
an exclusive lock, so a half-written conversion is never used and two processes never
convert the same model at once.

Int8 weights are quantized per output row to 7 bits (|q| <= 63), not CTranslate2's 8. On
x86 CPUs without AVX-512 VNNI (most laptops and older servers) oneDNN's int8 GEMM multiplies
unsigned 8-bit activations by signed 8-bit weights with ``vpmaddubsw``, which adds pairs of
products into a *saturating* int16: 2 x 255 x 127 = 64,770 overflows 32,767, and the
clipped sums wreck the model's logits. Emulated here with ``ONEDNN_MAX_CPU_ISA=AVX2``, the
embedded model with 8-bit weights wrote an empty function body on 92 of 120 P3 samples
(float32: 0); with 7-bit weights (2 x 255 x 63 = 32,130, which cannot overflow) the
arithmetic is exact on every CPU. This is the "u8s8 saturation" that oneDNN documents for
its int8 GEMM on pre-VNNI CPUs and that OpenVINO and ONNX Runtime avoid the same way
(``reduce_range``, 7-bit weights).
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
from typing import Any

from openended.errors import UserError

COMPUTE_TYPES = ("int8", "int8_float32", "float32")
INT8_LEVELS = 63
"""The largest magnitude of an int8 weight: 7 bits, so int16 pair sums cannot saturate."""
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
    int8_levels: int = INT8_LEVELS,
    progress: Callable[[str], None] | None = None,
) -> Path:
    """The CTranslate2 conversion of the transformers model folder `source` at
    `compute_type` (weights quantized to int8 with largest magnitude `int8_levels`, or
    kept float32), converted on first use."""
    source = Path(source)
    if compute_type not in COMPUTE_TYPES:
        raise ConversionError(
            f"compute type {compute_type!r} is not one of {', '.join(COMPUTE_TYPES)}"
        )
    if not (source / "config.json").is_file():
        raise ConversionError(f"{source}: no config.json (not a transformers model folder)")
    if not 1 <= int8_levels <= 127:
        raise ConversionError(f"int8_levels = {int8_levels}: must be in 1..127")
    scheme = weight_scheme(compute_type, int8_levels)
    target = conversions_folder(source) / f"{scheme}-{weights_key(source)}"
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
            _convert(source, tmp, compute_type, int8_levels)
            (tmp / MARKER).write_text(
                json.dumps(
                    {"source": str(source), "compute_type": compute_type, "scheme": scheme},
                    indent=1,
                )
            )
            shutil.rmtree(target, ignore_errors=True)  # an unmarked leftover
            tmp.replace(target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def weight_scheme(compute_type: str, int8_levels: int = INT8_LEVELS) -> str:
    """The conversion's name: the compute type, and for int8 the weights' bits
    (``int8w7``: the default, ``int8w8``: CTranslate2's own)."""
    if not compute_type.startswith("int8"):
        return compute_type
    return f"{compute_type}w{int8_levels.bit_length() + 1}"


def _convert(source: Path, output: Path, compute_type: str, int8_levels: int) -> None:
    from ctranslate2.converters import TransformersConverter
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    try:
        spec = TransformersConverter(str(source))._load()
        spec.validate()
        if compute_type.startswith("int8"):
            quantized = quantize_weights(spec, int8_levels)
            spec._alias_variables()
            spec._quantize("float32", variable_filter=lambda name: name not in quantized)
        else:
            spec.optimize(quantization=compute_type)
        output.mkdir(parents=True)
        spec.save(str(output))
    except Exception as exc:  # the converter raises ValueError, KeyError, OSError, ...
        raise ConversionError(
            f"{source}: cannot convert to CTranslate2 ({compute_type}): "
            f"{type(exc).__name__}: {exc}"[:600]
        ) from None


def quantize_weights(spec: Any, levels: int) -> set[str]:
    """Quantize, in place, every variable of the CTranslate2 model `spec` that CTranslate2
    quantizes (those with a ``<name>_scale``) to int8 with one scale per output row, whose
    largest magnitude maps to `levels`; returns the quantized variables' names.

    CTranslate2's own quantizer is the same with ``levels = 127``
    (``ctranslate2.specs.model_spec.LayerSpec._quantize``)."""
    import numpy as np
    from ctranslate2.specs.model_spec import NumpyVariable, Variable, _split_scope

    quantized: set[str] = set()

    def visit(layer: Any, name: str, value: Any) -> None:
        key = _split_scope(name)[-1]
        if not isinstance(value, Variable) or value.is_scalar():
            return
        if not hasattr(layer, f"{key}_scale") or value.dtype not in (
            "float32",
            "float16",
            "bfloat16",
        ):
            return
        weight = value.to("float32").numpy()
        rows = weight.reshape(weight.shape[0], -1)
        amax = np.abs(rows).max(axis=1)
        amax[amax == 0] = levels
        scale = (np.float32(levels) / np.maximum(amax, np.finfo(np.float32).tiny)).astype(
            np.float32
        )
        ints = np.clip(np.rint(rows * scale[:, None]), -levels, levels).astype(np.int8)
        setattr(layer, key, NumpyVariable(ints.reshape(weight.shape)))
        setattr(layer, f"{key}_scale", NumpyVariable(scale))
        quantized.add(name)

    spec._visit(visit)
    return quantized


@contextlib.contextmanager
def _locked(path: Path):  # type: ignore[no-untyped-def]
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
