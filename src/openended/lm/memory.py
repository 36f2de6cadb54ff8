"""How much memory a batch of sequences takes to decode, and giving freed memory back.

A decoder keeps, per sequence, keys and values for every token of every layer (the KV
cache) and, while it reads the prompt, one layer's attention scores (heads x length^2)
and feed-forward activations. For the embedded SmolLM2-135M decoded by CTranslate2 that is
about 138 KB a token, twice that while the cache is copied to grow: a batch of 80
sequences of 600 tokens peaks near 13 GB, which is how
``openended solve`` reached 12–16 GB, and 24 GB on float32. Backends cut their batches so
that the estimate of the batches decoding at once stays under a budget
(``model.max_batch_mib``).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import json
import os
import resource
import sys
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MIB = 1 << 20


@dataclass(frozen=True)
class DecodeMemory:
    """Bytes per sequence of a decoder, from its transformers ``config.json``.

    Attributes:
        kv_bytes_per_token: keys and values of all layers, per token.
        score_bytes_per_token2: one layer's attention scores, per (query, key) pair.
        activation_bytes_per_token: one layer's widest activations, per token.
    """

    kv_bytes_per_token: int
    score_bytes_per_token2: int
    activation_bytes_per_token: int

    @classmethod
    def from_folder(cls, source: str | Path, **options: Any) -> DecodeMemory:
        """The estimate for the transformers model folder `source` (see `from_config`)."""
        return cls.from_config(json.loads((Path(source) / "config.json").read_text()), **options)

    @classmethod
    def from_config(
        cls,
        config: Mapping[str, Any],
        *,
        bytes_per_value: int = 4,
        full_heads: bool = False,
        cache_copies: int = 1,
    ) -> DecodeMemory:
        """The estimate for a model's transformers config (as a dict). `bytes_per_value`:
        of the cache's keys and values. `full_heads`: the cache holds every attention
        head's keys and values (CTranslate2 does, measured: 138 KB a token for
        SmolLM2-135M), not only the grouped key-value heads (transformers).
        `cache_copies`: caches alive at once per sequence (CTranslate2 grows its cache by
        copying it each step, so two: measured, a batch's peak is about twice its cache)."""
        text = config.get("text_config") or config
        hidden = int(text["hidden_size"])
        layers = int(text["num_hidden_layers"])
        heads = int(text["num_attention_heads"])
        head_dim = int(text.get("head_dim") or hidden // heads)
        kv_heads = heads if full_heads else int(text.get("num_key_value_heads") or heads)
        intermediate = int(text.get("intermediate_size") or 4 * hidden)
        return cls(
            kv_bytes_per_token=cache_copies * layers * 2 * kv_heads * head_dim * bytes_per_value,
            score_bytes_per_token2=heads * 4,
            activation_bytes_per_token=(3 * intermediate + 4 * hidden) * 4,
        )

    def batch_bytes(self, rows: int, prompt_tokens: int, new_tokens: int) -> int:
        """Peak bytes to decode `rows` sequences whose (padded) prompts have
        `prompt_tokens` tokens, for `new_tokens` more."""
        total = prompt_tokens + new_tokens
        per_row = (
            total * self.kv_bytes_per_token
            + prompt_tokens * prompt_tokens * self.score_bytes_per_token2
            + prompt_tokens * self.activation_bytes_per_token
        )
        return rows * per_row


@functools.cache
def _libc() -> ctypes.CDLL:
    """The C library, looked up once (``find_library`` runs ``ldconfig``: not per call)."""
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")


def release_freed_memory() -> None:
    """Give the memory freed by the last batches back to the system (glibc keeps freed
    blocks of worker threads' arenas otherwise: the resident size then stays at the
    largest batch's peak). A no-op where glibc's ``malloc_trim`` is missing."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = _libc()
        libc.malloc_trim(0)
    except (OSError, AttributeError):
        return


M_ARENA_MAX = -8
"""glibc's ``mallopt`` parameter for the most malloc arenas."""


def limit_malloc_arenas(arenas: int = 2) -> None:
    """Let glibc keep at most `arenas` malloc arenas in this process. glibc gives each
    thread that allocates its own arena (up to 8 per core), and a freed block in one is not
    reused by another: with the decoding streams, asyncio's worker threads and the sandbox
    pool's, ``openended solve`` on 24 long P3 puzzles peaked at 3.5 GB and sat at 2 GB
    between calls; with two arenas, 1.87 GB and 0.73 GB (the same as
    ``MALLOC_ARENA_MAX=2``). A no-op where glibc's ``mallopt`` is missing, or where the
    user set ``MALLOC_ARENA_MAX``."""
    if not sys.platform.startswith("linux") or "MALLOC_ARENA_MAX" in os.environ:
        return
    try:
        libc = _libc()
        libc.mallopt(M_ARENA_MAX, arenas)
    except (OSError, AttributeError):
        return


def peak_rss_mib() -> float:
    """This process's peak resident memory so far, in MiB (Linux reports KiB)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (MIB if sys.platform == "darwin" else 1024)


class MemoryBudget:
    """Batches decoding side by side hold their estimated bytes from a shared budget: a
    batch waits until the others leave room for it, and a batch bigger than the whole
    budget (one long prompt) decodes alone."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.used = 0
        self._changed = threading.Condition()

    @contextlib.contextmanager
    def hold(self, size: int) -> Iterator[None]:
        with self._changed:
            self._changed.wait_for(lambda: self.used == 0 or self.used + size <= self.total)
            self.used += size
        try:
            yield
        finally:
            with self._changed:
                self.used -= size
                self._changed.notify_all()
