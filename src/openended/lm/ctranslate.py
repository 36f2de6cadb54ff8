"""The fast local backend: a transformers model decoded with CTranslate2.

CTranslate2 (Klein et al., "Efficient and High-Quality Neural Machine Translation with
OpenNMT", WNGT 2020; https://github.com/OpenNMT/CTranslate2) runs the converted model with
int8 weights and its own CPU kernels. Measured here (`bench/lm_throughput.py`) it decodes
about 3x the tokens per second of the transformers path, and it keeps its speed when
evaluations share the cores.
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from openended.errors import UserError
from openended.lm.base import Generation, GenerationRequest, GenerationResult
from openended.lm.conversion import (
    INT8_LEVELS,
    ConversionError,
    converted_model,
    weight_scheme,
)
from openended.lm.decoding import (
    DecodeState,
    option_token_ids,
    render_prompt,
    resolve_threads,
    sample_seed,
)
from openended.lm.memory import (
    MIB,
    DecodeMemory,
    MemoryBudget,
    limit_malloc_arenas,
    release_freed_memory,
)
from openended.lm.tokenizer import generation_eos_ids, load_tokenizer


class UnsupportedSamplingError(UserError, ValueError):
    """A request asks for sampling this backend cannot do exactly."""


@dataclass
class _Row:
    """One sequence to decode: a (request, sample) pair."""

    request_index: int
    sample_index: int
    prompt_ids: list[int]
    prompt_tokens: list[str]
    request: GenerationRequest
    seed: int


class CTranslate2LM:
    """A causal LM from a local transformers folder, converted to CTranslate2 on first use
    (`openended.lm.conversion`) and decoded by ``ctranslate2.Generator``.

    Sampling: temperature (0: greedy), top-k then top-p, stop strings, ``max_tokens`` and
    ``n`` per request; requests with other temperature, top-p or top-k decode in separate
    calls. Top-p is computed over the `top_p_candidates` likeliest tokens (256 by default):
    exact whenever the nucleus has no more tokens than that. Measured on the default
    search's prompts at T = 0.9, top-p 0.95: the nucleus is larger at 1.9% of positions and
    the mass beyond the 256 likeliest tokens is 0.4% on average — for 173 instead of 100
    tokens/s at batch 16; ``top_p_candidates = 0`` sorts the whole vocabulary (exact).
    ``min_p`` cannot be had exactly here: a request that sets it raises
    `UnsupportedSamplingError` (use the transformers backend).

    Seeds: CTranslate2 draws from one random generator per decoding thread, seeded at its
    first draw from the process-wide seed; so each sampling call runs on a generator that
    has not drawn yet (made in the background while the previous call decodes), seeded
    from the seeds of all its rows. The same requests in the same call give the same output
    on the same machine, in this session or a resumed one — a seeded search is reproducible
    — but, unlike the transformers backend, a request's samples depend on the other
    requests of its call, and on the CPU's instruction set.

    Log-probabilities (``logprobs=True``) are the model's, before temperature and top-p
    (as OpenAI-compatible servers report them).

    Args:
        source: the transformers model folder.
        model_id: the model's name (default: `source`); runs and caches record it with
            the backend and weight scheme, e.g. ``... [ctranslate2 int8w7]``: the schemes
            sample differently.
        compute_type: int8 (default), int8_float32 or float32.
        threads: decoding streams, one thread each (0: all cores): batches of the same call
            decode side by side.
        max_batch_size: most sequences decoded together.
        max_batch_tokens: most prompt tokens decoded together (rows x longest prompt).
        max_batch_mib: most memory, in MiB, that decoding may take: the batches decoding
            at once, as estimated by `openended.lm.memory.DecodeMemory` (KV cache,
            attention scores), and the copy of the weights each sampling batch decodes
            with (see `_Generators`); float32 weights leave room for one stream.
        int8_levels: int8 weights' largest magnitude (`openended.lm.conversion`: 63, seven
            bits, safe on every CPU; 127 is CTranslate2's own scheme).
        top_p_candidates: top-p keeps at most this many tokens (0: any number).
        progress: called with a line when the model is converted.
    """

    def __init__(
        self,
        source: str | Path,
        *,
        model_id: str | None = None,
        compute_type: str = "int8",
        threads: int = 0,
        max_batch_size: int = 32,
        max_batch_tokens: int = 16384,
        max_batch_mib: int = 1024,
        top_p_candidates: int = 256,
        int8_levels: int = INT8_LEVELS,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        self.source = Path(source)
        self.scheme = weight_scheme(compute_type, int8_levels)
        self.model_id = f"{model_id or source} [ctranslate2 {self.scheme}]"
        self.compute_type = compute_type
        self.threads = resolve_threads(threads, share=1.0)
        self.max_batch_size = max_batch_size
        self.max_batch_tokens = max_batch_tokens
        self.max_batch_mib = max_batch_mib
        self.top_p_candidates = top_p_candidates
        self.path = converted_model(
            self.source, compute_type, int8_levels=int8_levels, progress=progress
        )
        self.memory = DecodeMemory.from_folder(self.source, full_heads=True, cache_copies=2)
        self._budget = MemoryBudget(max_batch_mib * MIB)
        limit_malloc_arenas()
        self.weights_bytes = sum(f.stat().st_size for f in self.path.glob("*.bin"))
        self._generators = _Generators(
            self._make_generator, self.threads, prefetch=self.weights_bytes <= PREFETCH_MAX_BYTES
        )
        self._streams = ThreadPoolExecutor(self.threads, thread_name_prefix="ct2-stream")
        self.tokenizer = load_tokenizer(self.source)  # without transformers (and torch)
        eos = generation_eos_ids(self.source)
        if self.tokenizer.eos_token_id is not None:
            eos.add(self.tokenizer.eos_token_id)
        self.eos_ids = frozenset(int(i) for i in eos if i is not None)
        self._lock = threading.Lock()
        self._unseeded = np.random.default_rng()

    def _make_generator(self, streams: int = 1) -> Any:
        """A generator decoding `streams` batches at once, one thread each (on this
        machine two batches side by side decode faster than one batch on two threads)."""
        import ctranslate2

        try:
            return ctranslate2.Generator(
                str(self.path),
                device="cpu",
                compute_type=self.compute_type,
                intra_threads=1,
                inter_threads=streams,
            )
        except Exception as exc:  # a damaged conversion: ctranslate2 raises RuntimeError
            raise ConversionError(
                f"{self.path}: the converted model cannot be loaded ({exc}); remove this "
                "folder and it will be converted again"
            ) from None

    def close(self) -> None:
        """Stop making spare generators (the model is freed with this object)."""
        self._generators.close()
        self._streams.shutdown(wait=False)

    @classmethod
    def embedded(cls, **kwargs: Any) -> CTranslate2LM:
        """The embedded SmolLM2-135M-Instruct, fetched and converted on first use."""
        from openended.lm import embedded

        say = kwargs.pop("progress", None) or (lambda line: print(f"[model] {line}", flush=True))
        path = embedded.fetch(progress=say)
        return cls(path, model_id=f"{embedded.SMOLLM2.name} (embedded)", progress=say, **kwargs)

    # -- prompts ---------------------------------------------------------------------------

    def render(self, request: GenerationRequest) -> str:
        """The exact text the model is conditioned on."""
        return render_prompt(self.tokenizer, request)

    def encode(self, request: GenerationRequest) -> list[int]:
        return list(self.tokenizer(self.render(request), add_special_tokens=False)["input_ids"])

    # -- generation ------------------------------------------------------------------------

    async def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        return await asyncio.to_thread(self.generate_sync, requests)

    def generate_sync(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        """Blocking `generate`."""
        for request in requests:
            if request.min_p > 0:
                raise UnsupportedSamplingError(
                    f"min_p = {request.min_p}: the ctranslate2 backend cannot sample with "
                    "min-p exactly; set model.backend = 'transformers'"
                )
        groups: dict[tuple[float, float, int], list[_Row]] = defaultdict(list)
        for r_index, request in enumerate(requests):
            ids = self.encode(request)
            tokens = self.tokenizer.convert_ids_to_tokens(ids)
            base = request.seed if request.seed is not None else None
            for s_index in range(request.n):
                seed = (
                    sample_seed(base, s_index)
                    if base is not None
                    else int(self._unseeded.integers(2**62))
                )
                row = _Row(r_index, s_index, ids, tokens, request, seed)
                groups[_sampling_key(request)].append(row)
        work = [
            (chunk, key)
            for key in sorted(groups)
            for chunk in self._spread(
                self._chunks(sorted(groups[key], key=lambda r: (len(r.prompt_ids), r.seed)))
            )
        ]
        outputs: dict[tuple[int, int], Generation] = {}
        with self._lock:
            try:
                for (chunk, _), generations in zip(
                    work, self._streams.map(lambda item: self._decode(*item), work), strict=True
                ):
                    for row, generation in zip(chunk, generations, strict=True):
                        outputs[(row.request_index, row.sample_index)] = generation
            finally:
                release_freed_memory()
        return [
            GenerationResult(
                request=request,
                generations=tuple(outputs[(r, s)] for s in range(request.n)),
            )
            for r, request in enumerate(requests)
        ]

    def _decode(self, rows: list[_Row], key: tuple[float, float, int]) -> list[Generation]:
        """Decode rows of one sampling setting. CTranslate2 forwards the prompts of a batch
        at once only up to the shortest; a longer prompt's remaining tokens are forced
        through the decoding loop (one step each, reported to the callback like generated
        tokens), so each row's first `forced[i]` steps are skipped here and its budget
        extended by as much. A batch holds its estimated memory from the budget while it
        decodes (`MemoryBudget`)."""
        state = DecodeState(rows, self.tokenizer, self.eos_ids)
        shortest = min(len(row.prompt_ids) for row in rows)
        forced = [len(row.prompt_ids) - shortest for row in rows]
        size = self.memory.batch_bytes(
            len(rows),
            max(len(row.prompt_ids) for row in rows),
            max(row.request.max_tokens for row in rows),
        )
        if key[0] > 0:  # sampling decodes with a fresh copy of the weights
            size += self.weights_bytes
        with self._budget.hold(size):
            self._decode_batch(rows, key, state, forced)
        return [state.generation(i) for i in range(len(rows))]

    def _decode_batch(
        self,
        rows: list[_Row],
        key: tuple[float, float, int],
        state: DecodeState,
        forced: list[int],
    ) -> None:
        temperature, top_p, top_k = key

        seeding: list[threading.Lock] = []

        def step(result: Any) -> bool:  # True stops this row
            if seeding:  # the first draw has seeded this generator's thread
                seeding.pop().release()
            i = result.batch_id
            if result.step < forced[i]:
                return False
            log_prob = result.log_prob if result.log_prob is not None else math.nan
            return not state.take(i, result.token_id, float(log_prob))

        options = dict(
            max_length=max(f + row.request.max_tokens for f, row in zip(forced, rows, strict=True)),
            include_prompt_in_result=False,
            end_token=sorted(self.eos_ids),
            return_scores=True,
            callback=step,
        )
        prompts = [row.prompt_tokens for row in rows]
        if temperature <= 0:  # greedy: no random draws
            self._generators.greedy.generate_batch(prompts, sampling_topk=1, **options)
        else:
            generator = self._generators.spare()
            _SEEDING.acquire()  # held until this call's first draw (see `step`)
            seeding.append(_SEEDING)
            try:
                self._generators.seed(_call_seed(rows))
                generator.generate_batch(
                    prompts,
                    sampling_topk=top_k or (self.top_p_candidates if top_p < 1 else 0),
                    sampling_topp=top_p,
                    sampling_temperature=temperature,
                    **options,
                )
            finally:
                if seeding:
                    seeding.pop().release()

    def _chunks(self, rows: list[_Row]) -> list[list[_Row]]:
        """Rows (sorted by prompt length) in consecutive batches of at most
        `max_batch_size` rows, `max_batch_tokens` padded prompt tokens and an estimated
        estimated memory of `batch_budget`, cut where the
        estimated decoding time is least: a batch takes one step per forced prompt token
        (its spread of prompt lengths) and per new token, each step costing a fixed part
        and a part per row (`STEP_OVERHEAD_ROWS`, measured on this backend)."""
        count = len(rows)
        lengths = [len(row.prompt_ids) for row in rows]
        budget = self.batch_budget()
        best = [0.0] + [math.inf] * count  # best[j]: least cost of rows[:j]
        cut = [0] * (count + 1)
        for j in range(1, count + 1):
            for i in range(j - 1, -1, -1):
                size = j - i
                padded = size * lengths[j - 1]
                new_tokens = max(r.request.max_tokens for r in rows[i:j])
                if size > 1 and (
                    size > self.max_batch_size
                    or padded > self.max_batch_tokens
                    or self.memory.batch_bytes(size, lengths[j - 1], new_tokens) > budget
                ):
                    break
                steps = lengths[j - 1] - lengths[i] + new_tokens
                cost = best[i] + steps * (STEP_OVERHEAD_ROWS + size) + CALL_OVERHEAD_ROWS
                if cost < best[j]:
                    best[j], cut[j] = cost, i
        chunks: list[list[_Row]] = []
        j = count
        while j > 0:
            chunks.append(rows[cut[j] : j])
            j = cut[j]
        return chunks[::-1]

    def batch_budget(self) -> int:
        """The most estimated bytes of one batch: the streams that fit in `max_batch_mib`
        with a copy of the weights each (at most `threads`, at least one) share it."""
        total = self.max_batch_mib * MIB
        streams = max(1, min(self.threads, total // (self.weights_bytes + 128 * MIB)))
        return max(total // streams - self.weights_bytes, 0)

    @staticmethod
    def _spread(chunks: list[list[_Row]]) -> list[list[_Row]]:
        """Halve the largest batches until there are `MIN_BATCHES`, so that two streams
        decode side by side (two batches of 8 decode in parallel faster than one of 16
        here). The cut never depends on the thread count: neither does the output."""
        chunks = list(chunks)
        while len(chunks) < MIN_BATCHES:
            largest = max(range(len(chunks)), key=lambda i: len(chunks[i]))
            if len(chunks[largest]) < 2:
                break
            rows = chunks.pop(largest)
            half = len(rows) // 2
            chunks[largest:largest] = [rows[:half], rows[half:]]
        return chunks

    # -- next-token distributions (judges, serve-model's top_logprobs) ----------------------

    async def option_logprobs(
        self, prompts: Sequence[str], options: Sequence[str]
    ) -> list[list[float]]:
        """For each raw prompt, the log-probability that the next token starts each option
        (as `TransformersLM.option_logprobs`)."""
        return await asyncio.to_thread(self._option_logprobs, list(prompts), list(options))

    def _option_logprobs(self, prompts: list[str], options: list[str]) -> list[list[float]]:
        ids = option_token_ids(self.tokenizer, options)
        return [
            [float(np.logaddexp.reduce(logp[option_ids])) for option_ids in ids]
            for logp in self._next_token_logprobs(prompts)
        ]

    def next_token_top_logprobs(
        self, prompts: Sequence[str], k: int
    ) -> list[list[tuple[str, float]]]:
        """The `k` likeliest next tokens of each raw prompt, with their log-probabilities."""
        out = []
        for logp in self._next_token_logprobs(list(prompts)):
            best = np.argsort(-logp)[:k]
            out.append([(self.tokenizer.decode([int(i)]), float(logp[i])) for i in best])
        return out

    def _next_token_logprobs(self, prompts: list[str]) -> list[np.ndarray]:
        """Log-softmax of the next-token logits after each prompt: one decoding step past
        each prompt (past its forced tokens, see `_decode`)."""
        tokens = [
            self.tokenizer.convert_ids_to_tokens(
                self.tokenizer(p, add_special_tokens=False)["input_ids"]
            )
            for p in prompts
        ]
        order = sorted(range(len(tokens)), key=lambda i: len(tokens[i]))
        out: dict[int, np.ndarray] = {}
        for start in range(0, len(order), self.max_batch_size):
            chunk = order[start : start + self.max_batch_size]
            shortest = min(len(tokens[i]) for i in chunk)
            with self._lock:
                results = self._generators.greedy.generate_batch(
                    [tokens[i] for i in chunk],
                    max_length=max(len(tokens[i]) for i in chunk) - shortest + 1,
                    include_prompt_in_result=False,
                    end_token=[],
                    return_logits_vocab=True,
                    sampling_topk=1,
                )
            for i, result in zip(chunk, results, strict=True):
                step = np.asarray(result.logits[0], dtype=np.float64)[len(tokens[i]) - shortest]
                out[i] = step - np.logaddexp.reduce(step)
        return [out[i] for i in range(len(prompts))]


STEP_OVERHEAD_ROWS = 3.5
"""A decoding step costs about as much as this many rows more (measured: ~17 ms a step
and ~5 ms a row with the embedded model, int8, one thread)."""
CALL_OVERHEAD_ROWS = 40.0
"""A call (a seeded generator, the prompt's prefill) costs about this many row-steps."""
PREFETCH_MAX_BYTES = 256 * MIB
"""A spare generator is made ahead of time only for converted models at most this big."""
MIN_BATCHES = 2
"""Each call is cut into at least this many batches (see `CTranslate2LM._spread`)."""
_SEEDING = threading.Lock()
"""Held from setting the process-wide seed to the first draw of the call it is for."""


class _Generators:
    """A `ctranslate2.Generator` for greedy calls (one decoding thread per stream, made at
    the first greedy call), and fresh ones for sampling calls.

    A fresh generator's decoding thread has not drawn yet, so it seeds its random
    generator from the process-wide seed at its first draw: `spare()` hands out one made
    in the background when the weights are small (each generator holds a copy of them:
    135 MB int8, 520 MB float32 for the embedded model), else made on demand (0.5 s);
    `seed()` sets that seed just before the call; a spare is used for one call only."""

    def __init__(self, make: Callable[..., Any], streams: int, *, prefetch: bool) -> None:
        self.make = make
        self.streams = streams
        self.prefetch = prefetch
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ct2-spare")
        first = self._pool.submit(make)
        first.result()  # raises the named error at once when damaged
        self._spares: list[Future[Any]] = [first] if prefetch else []
        self._greedy: Any = None
        self._take = threading.Lock()

    @property
    def greedy(self) -> Any:
        with self._take:
            if self._greedy is None:
                self._greedy = self.make(self.streams)
            return self._greedy

    def spare(self) -> Any:
        if not self.prefetch:
            return self.make()
        with self._take:
            ready = self._spares.pop(0)
            self._spares.append(self._pool.submit(self.make))
        return ready.result()

    @staticmethod
    def seed(seed: int) -> None:
        import ctranslate2

        ctranslate2.set_random_seed(seed)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _sampling_key(request: GenerationRequest) -> tuple[float, float, int]:
    if request.temperature <= 0:
        return (0.0, 1.0, 1)
    return (request.temperature, request.top_p, request.top_k)


def _call_seed(rows: Sequence[_Row]) -> int:
    """One 32-bit seed for a call, from its rows' seeds (in their order)."""
    state = np.random.SeedSequence([r.seed for r in rows]).generate_state(1)
    return int(state[0])
