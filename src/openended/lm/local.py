"""Local Hugging Face transformers backend with batched, per-request-seeded sampling."""

from __future__ import annotations

import asyncio
import copy
import inspect
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from openended.lm.base import Generation, GenerationRequest, GenerationResult
from openended.lm.decoding import (
    DecodeState,
    option_token_ids,
    render_prompt,
    resolve_threads,
    sample_seed,
)
from openended.lm.memory import MIB, DecodeMemory, limit_malloc_arenas, release_freed_memory
from openended.lm.speculative import (
    SPECULATIVE_MODES,
    AdaptiveLength,
    DraftAsk,
    PromptLookup,
    SpeculationStats,
    speculates,
    verify,
)


@dataclass
class _Row:
    """One sequence to decode: a (request, sample) pair."""

    request_index: int
    sample_index: int
    prompt_ids: list[int]
    request: GenerationRequest
    generator: torch.Generator


def _filter_top_p(logits: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    """Nucleus filtering (Holtzman et al. 2020, arXiv 1904.09751), one `top_p` per row."""
    sorted_logits, sorted_index = torch.sort(logits, descending=True, dim=-1)
    cumulative = torch.softmax(sorted_logits, dim=-1).cumsum(dim=-1)
    # drop a token when the mass before it already reaches top_p (keeps at least one)
    remove_sorted = (cumulative - torch.softmax(sorted_logits, dim=-1)) >= top_p[:, None]
    remove_sorted &= (top_p < 1)[:, None]  # top_p = 1 keeps every token (float sums can
    # reach 1 before the tail, which would otherwise drop tail tokens)
    remove = torch.zeros_like(remove_sorted).scatter(1, sorted_index, remove_sorted)
    return logits.masked_fill(remove, float("-inf"))


def _filter_top_k(logits: torch.Tensor, top_k: torch.Tensor) -> torch.Tensor:
    """Keep each row's `top_k` likeliest tokens (0: all)."""
    vocab = logits.shape[-1]
    k = torch.where(top_k > 0, top_k.clamp(max=vocab), torch.full_like(top_k, vocab))
    kth = torch.sort(logits, descending=True, dim=-1).values.gather(1, (k - 1)[:, None])
    return logits.masked_fill(logits < kth, float("-inf"))


def _filter_min_p(logits: torch.Tensor, min_p: torch.Tensor) -> torch.Tensor:
    """Min-p filtering (Nguyen et al. 2024, arXiv 2407.01082): keep tokens whose
    probability is at least `min_p` times the row's largest; one `min_p` per row."""
    probs = torch.softmax(logits, dim=-1)
    threshold = probs.max(dim=-1, keepdim=True).values * min_p[:, None]
    return logits.masked_fill(probs < threshold, float("-inf"))


class TransformersLM:
    """A causal LM from a local directory (or an HF id already in the local HF cache).

    Generation is batched across all rows of all requests (left padding with an
    attention mask), each row sampled with its own `torch.Generator` so that a
    request's output depends on its seed, not on what it was batched with. Rows
    that finish are pruned from the batch and the KV cache.

    Args:
        path: model directory or id.
        model_id: the name recorded in runs and caches (default: `path`).
        max_batch_size: most sequences decoded together.
        max_batch_tokens: most prompt tokens prefilled together (rows x longest prompt);
            long prompts go in smaller batches so that attention memory stays bounded.
        max_batch_mib: most memory, in MiB, a batch may take, as estimated by
            `openended.lm.memory.DecodeMemory` (KV cache to the last new token, attention).
        dtype: torch dtype name.
        device: torch device.
        speculative: exact speculative sampling (`openended.lm.speculative`): "auto"
            drafts by prompt lookup for requests that ask for it
            (`GenerationRequest.speculate`, set by the rewrite and diff operators),
            "prompt-lookup" for every request, "draft-model" drafts every request with
            `draft_model`, "off" decodes plainly.
        draft_model: a smaller model sharing the tokenizer, for "draft-model".
        threads: torch's threads, for the whole process (0: half the cores; None: leave
            torch's setting alone).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        model_id: str | None = None,
        max_batch_size: int = 32,
        max_batch_tokens: int = 16384,
        max_batch_mib: int = 1024,
        dtype: str = "float32",
        device: str = "cpu",
        speculative: str = "auto",
        draft_model: TransformersLM | None = None,
        threads: int | None = None,
    ) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        if threads is not None:
            torch.set_num_threads(resolve_threads(threads))

        self.model_id = model_id or str(path)
        self.max_batch_size = max_batch_size
        self.max_batch_tokens = max_batch_tokens
        self.max_batch_mib = max_batch_mib
        self.device = torch.device(device)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype))
        limit_malloc_arenas()
        self.memory = DecodeMemory.from_config(
            self.model.config.to_dict(),
            bytes_per_value=torch.finfo(getattr(torch, dtype)).bits // 8,
        )
        self.model.to(self.device)
        self.model.eval()
        parameters = inspect.signature(self.model.forward).parameters
        # transformers >= 5.x renamed `past_key_values` to `cache`
        self._cache_kw = "cache" if "cache" in parameters else "past_key_values"
        pad = self.tokenizer.pad_token_id
        if pad is None:
            pad = self.tokenizer.eos_token_id
        self.pad_id = int(pad if pad is not None else 0)
        eos = self.model.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        if self.tokenizer.eos_token_id is not None:
            eos_ids.add(self.tokenizer.eos_token_id)
        self.eos_ids = frozenset(int(i) for i in eos_ids)
        self._lock = threading.Lock()
        self._unseeded = np.random.default_rng()
        self._set_speculation(speculative, draft_model)

    def _set_speculation(self, mode: str, draft_model: TransformersLM | None = None) -> None:
        if mode not in SPECULATIVE_MODES:
            raise ValueError(
                f"speculative must be one of {', '.join(SPECULATIVE_MODES)}, got {mode!r}"
            )
        self.speculative = mode
        self._drafter: PromptLookup | DraftModel | None = None
        if mode == "draft-model":
            if draft_model is None:
                raise ValueError("speculative = 'draft-model' needs a draft model (draft_model)")
            self._drafter = DraftModel(draft_model, self)
        elif mode != "off":
            self._drafter = PromptLookup()
        self._draft_length = AdaptiveLength()
        self.stats = SpeculationStats()

    def speculates(self, request: GenerationRequest) -> bool:
        """Is this request decoded speculatively (other samples than plain decoding)?"""
        return speculates(self.speculative, request.speculate)

    def with_speculation(
        self, mode: str, draft_model: TransformersLM | None = None
    ) -> TransformersLM:
        """A copy that shares the weights, tokenizer and lock, decoding with `mode`."""
        clone = copy.copy(self)
        clone._set_speculation(mode, draft_model)
        return clone

    @classmethod
    def embedded(cls, **kwargs: object) -> TransformersLM:
        """The embedded SmolLM2-135M-Instruct, fetched and converted on first use."""
        from openended.lm import embedded

        path = embedded.fetch(progress=lambda line: print(f"[model] {line}", flush=True))
        return cls(path, model_id=f"{embedded.SMOLLM2.name} (embedded)", **kwargs)  # type: ignore[arg-type]

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
        rows: list[_Row] = []
        for r_index, request in enumerate(requests):
            ids = self.encode(request)
            for s_index in range(request.n):
                base = (
                    request.seed
                    if request.seed is not None
                    else int(self._unseeded.integers(2**62))
                )
                gen = torch.Generator(device="cpu")
                gen.manual_seed(sample_seed(base, s_index))
                rows.append(_Row(r_index, s_index, ids, request, gen))
        outputs: dict[tuple[int, int], Generation] = {}
        # Similar lengths together keep padding low; the order is deterministic.
        order = sorted(range(len(rows)), key=lambda i: (len(rows[i].prompt_ids), i))
        with self._lock, torch.inference_mode():
            for chunk in self._chunks([rows[i] for i in order]):
                for row, gen in zip(chunk, self._decode(chunk), strict=True):
                    outputs[(row.request_index, row.sample_index)] = gen
        release_freed_memory()
        return [
            GenerationResult(
                request=request,
                generations=tuple(outputs[(r, s)] for s in range(request.n)),
            )
            for r, request in enumerate(requests)
        ]

    async def option_logprobs(
        self, prompts: Sequence[str], options: Sequence[str]
    ) -> list[list[float]]:
        """For each raw prompt, the log-probability that the next token starts each option
        (an option's first token, with or without a leading space, summed): one forward
        pass per batch, no sampling. Used by judges to read a distribution over labels."""
        return await asyncio.to_thread(self._option_logprobs, list(prompts), list(options))

    def _option_logprobs(self, prompts: list[str], options: list[str]) -> list[list[float]]:
        ids = option_token_ids(self.tokenizer, options)
        return [
            [float(torch.logsumexp(logp[option_ids], dim=0)) for option_ids in ids]
            for logp in self._next_token_logprobs(prompts)
        ]

    def completion_logprobs(
        self, prefix: str, completions: Sequence[str], *, batch_size: int = 32
    ) -> list[tuple[float, int]]:
        """For each completion, its log-probability after the raw text `prefix` (natural
        log, summed over its tokens) and its token count; teacher-forced, no sampling."""
        prefix_ids = self.tokenizer(prefix, add_special_tokens=False)["input_ids"]
        out: list[tuple[float, int]] = []
        with self._lock, torch.inference_mode():
            for start in range(0, len(completions), batch_size):
                texts = completions[start : start + batch_size]
                rows = [
                    prefix_ids + self.tokenizer(t, add_special_tokens=False)["input_ids"]
                    for t in texts
                ]
                input_ids, attention, positions = self._left_pad(rows)
                logits = self._forward(input_ids, attention, positions)
                log_probs = torch.log_softmax(logits[:, :-1], dim=-1)
                picked = log_probs.gather(-1, input_ids[:, 1:, None])[..., 0]
                for r, row in enumerate(rows):
                    scored = len(row) - len(prefix_ids)
                    out.append((float(picked[r, len(picked[r]) - scored :].sum()), scored))
        return out

    def next_token_top_logprobs(
        self, prompts: Sequence[str], k: int
    ) -> list[list[tuple[str, float]]]:
        """The `k` likeliest next tokens of each raw prompt, with their log-probabilities
        (blocking; what ``top_logprobs`` of `serve-model` returns for the first token)."""
        out = []
        for logp in self._next_token_logprobs(list(prompts)):
            values, indices = torch.topk(logp, k)
            out.append(
                [
                    (self.tokenizer.decode([int(i)]), float(v))
                    for v, i in zip(values, indices, strict=True)
                ]
            )
        return out

    def _next_token_logprobs(self, prompts: list[str]) -> list[torch.Tensor]:
        """Log-softmax of the next-token logits after each prompt (batched, no sampling)."""
        encoded = [list(self.tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts]
        rows = [
            _Row(i, 0, e, GenerationRequest(prompt=""), torch.Generator())
            for i, e in enumerate(encoded)
        ]
        results: dict[int, torch.Tensor] = {}
        with self._lock, torch.inference_mode():
            for chunk in self._chunks(sorted(rows, key=lambda r: len(r.prompt_ids))):
                logits = self._forward(
                    *self._left_pad([r.prompt_ids for r in chunk]), last_only=True
                )
                logp = torch.log_softmax(logits[:, -1, :], dim=-1)
                for i, row in enumerate(chunk):
                    results[row.request_index] = logp[i]
        return [results[i] for i in range(len(prompts))]

    def _chunks(self, rows: list[_Row]) -> list[list[_Row]]:
        """Consecutive rows (sorted by prompt length) in batches of at most
        `max_batch_size` rows, `max_batch_tokens` padded prompt tokens and `max_batch_mib`
        of estimated memory."""
        chunks: list[list[_Row]] = []
        current: list[_Row] = []
        for row in rows:
            width = max([len(row.prompt_ids), *(len(r.prompt_ids) for r in current)])
            new_tokens = max(r.request.max_tokens for r in [row, *current])
            if current and (
                len(current) >= self.max_batch_size
                or (len(current) + 1) * width > self.max_batch_tokens
                or self.memory.batch_bytes(len(current) + 1, width, new_tokens)
                > self.max_batch_mib * MIB
            ):
                chunks.append(current)
                current = []
            current.append(row)
        if current:
            chunks.append(current)
        return chunks

    def _left_pad(
        self, sequences: Sequence[Sequence[int]]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Input ids, attention mask and position ids of token sequences, left-padded."""
        width = max(len(ids) for ids in sequences)
        input_ids = torch.full((len(sequences), width), self.pad_id, dtype=torch.long)
        attention = torch.zeros((len(sequences), width), dtype=torch.long)
        for i, ids in enumerate(sequences):
            input_ids[i, width - len(ids) :] = torch.tensor(list(ids))
            attention[i, width - len(ids) :] = 1
        positions = (attention.cumsum(-1) - 1).clamp(min=0)
        return input_ids, attention, positions

    def _forward(
        self,
        input_ids: torch.Tensor,
        attention: torch.Tensor,
        positions: torch.Tensor,
        cache: object | None = None,
        *,
        last_only: bool = False,
    ) -> torch.Tensor:
        """Float logits on the CPU, shape (rows, positions or 1, vocab); `cache` (a
        DynamicCache) is extended in place when given."""
        out = self.model(
            input_ids=input_ids.to(self.device),
            attention_mask=attention.to(self.device),
            position_ids=positions.to(self.device),
            use_cache=cache is not None,
            **({"logits_to_keep": 1} if last_only else {}),
            **({self._cache_kw: cache} if cache is not None else {}),
        )
        return out.logits[:, -1:, :].float().cpu() if last_only else out.logits.float().cpu()

    def _decode(self, rows: list[_Row]) -> list[Generation]:
        """Decode a batch. With a drafter (`self.speculative`), each step feeds every row's
        last token plus its draft and keeps what `speculative.verify` accepts, so a step
        may emit several tokens; without one, the drafts are empty and this is plain
        sampling. Rejected draft positions stay in the KV cache, masked out."""
        from transformers import DynamicCache

        batch = len(rows)
        input_ids, attention, positions = self._left_pad([r.prompt_ids for r in rows])
        temperature = torch.tensor([r.request.temperature for r in rows], dtype=torch.float32)
        top_p = torch.tensor([r.request.top_p for r in rows], dtype=torch.float32)
        top_k = torch.tensor([r.request.top_k for r in rows], dtype=torch.long)
        min_p = torch.tensor([r.request.min_p for r in rows], dtype=torch.float32)
        drafter = self._drafter.session() if self._drafter is not None else None
        lengths = [self._draft_length.start] * batch
        drafting = [speculates(self.speculative, r.request.speculate) for r in rows]
        state = DecodeState(rows, self.tokenizer, self.eos_ids)
        active = list(range(batch))  # positions in `rows` still decoding
        drafts: list[list[int]] = [[] for _ in rows]
        draft_q: list[torch.Tensor | None] = [None for _ in rows]
        cache = DynamicCache()
        logits = self._forward(input_ids, attention, positions, cache, last_only=True)
        # Where the last step's first token went; a step that fed a token and a draft at
        # last_position.. and kept `accepted` of the draft puts the next token at
        # last_position + 1 + accepted (the prefill counts as a step that fed its last token).
        last_position = positions[:, -1:]
        while True:
            width = logits.shape[1]
            log_probs, targets = _distributions(
                logits,
                temperature[active],
                top_p[active],
                min_p[active],
                top_k[active],
                [len(d) + 1 for d in drafts],
            )
            keep, tokens, accepted = [], [], []
            for k, i in enumerate(active):
                draft = drafts[k]
                greedy = bool(temperature[i] <= 0)
                verdict = verify(
                    targets[k, : len(draft) + 1],
                    draft,
                    draft_q[k],
                    None if greedy else rows[i].generator,
                )
                self.stats.record(len(draft), verdict.accepted)
                lengths[i] = self._draft_length.update(lengths[i], len(draft), verdict.accepted)
                emitted = [*draft[: verdict.accepted], verdict.token]
                alive = all(
                    state.take(i, token, float(log_probs[k, j, token]))
                    for j, token in enumerate(emitted)
                )
                accepted.append(verdict.accepted)
                if alive:
                    keep.append(k)
                    tokens.append(verdict.token)
            self.stats.forwards += 1
            if not keep:
                break
            if width > 1:  # mask the rejected and padded draft positions of the last step
                for k, count in enumerate(accepted):
                    attention[k, attention.shape[1] - width + 1 + count :] = 0
            last_position = last_position + 1 + torch.tensor(accepted)[:, None]
            keep_tensor = torch.tensor(keep, dtype=torch.long)
            if len(keep) < len(active):
                cache.batch_select_indices(keep_tensor.to(self.device))
                attention = attention[keep_tensor]
                last_position = last_position[keep_tensor]
            active = [active[k] for k in keep]
            asks = {
                k: DraftAsk(
                    i,
                    rows[i].prompt_ids + state.generated[i],
                    state.room(i, lengths[i]),
                    rows[i].request.temperature,
                    rows[i].request.top_p,
                    rows[i].request.min_p,
                    rows[i].request.top_k,
                    rows[i].generator,
                )
                for k, i in enumerate(active)
                if drafter is not None and drafting[i]
            }
            proposals = (
                dict(zip(asks, drafter.propose_batch(list(asks.values())), strict=True))
                if drafter is not None and asks
                else {}
            )
            drafts = [proposals.get(k, ([], None))[0] for k in range(len(active))]
            draft_q = [proposals.get(k, ([], None))[1] for k in range(len(active))]
            step = 1 + max(len(d) for d in drafts)
            step_ids = torch.full((len(active), step), self.pad_id, dtype=torch.long)
            step_mask = torch.zeros((len(active), step), dtype=torch.long)
            for k, (token, draft) in enumerate(zip(tokens, drafts, strict=True)):
                step_ids[k, : 1 + len(draft)] = torch.tensor([token, *draft])
                step_mask[k, : 1 + len(draft)] = 1
            attention = torch.cat([attention, step_mask], 1)
            step_positions = last_position + torch.arange(step)[None, :]
            logits = self._forward(step_ids, attention, step_positions, cache)

        return [state.generation(i) for i in range(batch)]


class DraftModel:
    """Drafts from a second, smaller model that shares the target's tokenizer: up to k
    tokens sampled from its distribution q, processed like the target's (temperature,
    top-p, min-p; one-hot for greedy rows). `session` gives the drafter of one decoding
    batch, which keeps the draft model's KV cache between steps."""

    def __init__(self, draft: TransformersLM, target: TransformersLM) -> None:
        if draft.tokenizer.get_vocab() != target.tokenizer.get_vocab():
            raise ValueError(
                f"the draft model {draft.model_id} does not share the tokenizer of "
                f"{target.model_id}; speculative sampling needs the same vocabulary"
            )
        self.draft = draft
        self.vocab = int(target.model.get_output_embeddings().weight.shape[0])

    def session(self) -> DraftSession:
        return DraftSession(self.draft, self.vocab)


class DraftSession:
    """The draft model's state over one decoding batch. Its KV cache holds, per row, the
    tokens it has seen (context and earlier drafts); at each step a row's new context
    is compared with them, the entries past the common prefix (rejected drafts) are
    masked out, as the target's are, and only the new tokens are fed. Rows that stop
    asking (finished) leave the cache. Exact: q is always the distribution the drafted
    token was drawn from, so any cache state gives the target's samples."""

    def __init__(self, draft: TransformersLM, vocab: int) -> None:
        from transformers import DynamicCache

        self.draft = draft
        self.vocab = vocab
        self.cache = DynamicCache()
        self.row_ids: list[int] = []  # decoding row of each cache row
        self.attention = torch.zeros((0, 0), dtype=torch.long)
        self.seen: list[list[int]] = []  # valid tokens in the cache, per cache row
        self.columns: list[list[int]] = []  # their cache columns

    def propose_batch(
        self, asks: Sequence[DraftAsk]
    ) -> list[tuple[list[int], torch.Tensor | None]]:
        result: list[tuple[list[int], torch.Tensor | None]] = [([], None) for _ in asks]
        wanted = [k for k, ask in enumerate(asks) if ask.k > 0]
        if not wanted:
            return result
        logits = self._feed_contexts([asks[k] for k in wanted])
        rows = len(wanted)
        temperature = torch.tensor([asks[k].temperature for k in wanted], dtype=torch.float32)
        top_p = torch.tensor([asks[k].top_p for k in wanted], dtype=torch.float32)
        min_p = torch.tensor([asks[k].min_p for k in wanted], dtype=torch.float32)
        top_k = torch.tensor([asks[k].top_k for k in wanted], dtype=torch.long)
        tokens: list[list[int]] = [[] for _ in wanted]
        qs: list[list[torch.Tensor]] = [[] for _ in wanted]
        longest = max(asks[k].k for k in wanted)
        for step in range(longest):
            _, q = _distributions(
                logits[:, :, : self.vocab], temperature, top_p, min_p, top_k, [1] * rows
            )
            feeding = []
            for r, k in enumerate(wanted):
                if step >= asks[k].k:  # this row's draft is complete
                    feeding.append(None)
                    continue
                row_q = q[r, 0]
                if asks[k].temperature <= 0:
                    token = int(torch.argmax(row_q))
                else:
                    token = int(torch.multinomial(row_q, 1, generator=asks[k].generator))
                tokens[r].append(token)
                qs[r].append(row_q)
                feeding.append([token])
            if step + 1 == longest:
                break
            logits = self._feed(feeding)
        for r, k in enumerate(wanted):
            q = torch.stack(qs[r])
            if q.shape[1] < self.vocab:  # the target's output layer may be larger
                q = torch.nn.functional.pad(q, (0, self.vocab - q.shape[1]))
            result[k] = (tokens[r], q)
        return result

    def _feed_contexts(self, asks: list[DraftAsk]) -> torch.Tensor:
        """Bring the cache up to the asked rows' contexts; the logits after each."""
        rows = [ask.row for ask in asks]
        if not self.row_ids:
            input_ids, self.attention, positions = self.draft._left_pad(
                [ask.tokens for ask in asks]
            )
            width = input_ids.shape[1]
            self.row_ids = rows
            self.seen = [list(ask.tokens) for ask in asks]
            self.columns = [list(range(width - len(ask.tokens), width)) for ask in asks]
            return self.draft._forward(
                input_ids, self.attention, positions, self.cache, last_only=True
            )
        missing = set(rows) - set(self.row_ids)
        if missing:
            raise RuntimeError(f"draft rows {sorted(missing)} were not in this batch's cache")
        if rows != self.row_ids:  # finished rows leave; the order of asks is the cache's
            keep = [self.row_ids.index(row) for row in rows]
            self.cache.batch_select_indices(torch.tensor(keep).to(self.draft.device))
            self.attention = self.attention[keep]
            self.seen = [self.seen[i] for i in keep]
            self.columns = [self.columns[i] for i in keep]
            self.row_ids = rows
        feeding = []
        for r, ask in enumerate(asks):
            seen = self.seen[r]
            common = 0
            limit = min(len(seen), len(ask.tokens) - 1)  # the last token is always fed
            while common < limit and seen[common] == ask.tokens[common]:
                common += 1
            self.attention[r, self.columns[r][common:]] = 0
            del seen[common:], self.columns[r][common:]
            feeding.append(ask.tokens[common:])
        return self._feed(feeding)

    def _feed(self, feeding: list[list[int] | None]) -> torch.Tensor:
        """Feed each cache row its tokens (None: nothing, masked); the logits after each
        row's last token, shape (rows, 1, vocab)."""
        width = max(len(tokens or ()) for tokens in feeding)
        start = self.attention.shape[1]
        ids = torch.full((len(feeding), width), self.draft.pad_id, dtype=torch.long)
        mask = torch.zeros((len(feeding), width), dtype=torch.long)
        positions = torch.zeros((len(feeding), width), dtype=torch.long)
        for r, tokens in enumerate(feeding):
            if not tokens:
                continue
            ids[r, : len(tokens)] = torch.tensor(tokens)
            mask[r, : len(tokens)] = 1
            positions[r] = len(self.seen[r]) + torch.arange(width)
            self.seen[r].extend(tokens)
            self.columns[r].extend(range(start, start + len(tokens)))
        self.attention = torch.cat([self.attention, mask], 1)
        logits = self.draft._forward(ids, self.attention, positions, self.cache)
        last = torch.tensor([max(0, len(tokens or ()) - 1) for tokens in feeding])
        return logits[torch.arange(len(feeding)), last][:, None, :]


def _distributions(
    logits: torch.Tensor,
    temperature: torch.Tensor,
    top_p: torch.Tensor,
    min_p: torch.Tensor,
    top_k: torch.Tensor,
    needed: Sequence[int],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probabilities after temperature, top-p and min-p (for the reported logprobs)
    and the target distributions to sample from (one-hot at the argmax for greedy rows),
    for logits of shape (rows, positions, vocab). Only the first `needed[r]` positions of
    row r are computed (the rest are padding); the others are left at zero."""
    rows, width, vocab = logits.shape
    counts = torch.tensor(needed)
    row_of = torch.repeat_interleave(torch.arange(rows), counts)
    position = torch.cat([torch.arange(c) for c in needed])
    flat_index = row_of * width + position
    picked = logits.reshape(rows * width, vocab)[flat_index]
    greedy = (temperature <= 0)[row_of]
    scale = torch.where(greedy, torch.ones_like(greedy, dtype=logits.dtype), temperature[row_of])
    scaled = picked / scale[:, None]
    if bool((top_k > 0).any()):  # top-k, then top-p on what is left (as transformers)
        scaled = _filter_top_k(scaled, torch.where(greedy, 0, top_k[row_of]))
    nucleus = torch.where(greedy, torch.ones_like(scale), top_p[row_of])
    if bool((nucleus < 1).any()):  # sorting the vocabulary is the costly part: skip it
        scaled = _filter_top_p(scaled, nucleus)
    if bool((min_p > 0).any()):
        scaled = _filter_min_p(scaled, min_p[row_of])
    picked_log_probs = torch.log_softmax(scaled, dim=-1)
    picked_targets = picked_log_probs.exp()
    if bool(greedy.any()):
        one_hot = torch.nn.functional.one_hot(picked.argmax(-1), vocab).to(picked_targets.dtype)
        picked_targets = torch.where(greedy[:, None], one_hot, picked_targets)
    log_probs = torch.zeros(rows * width, vocab, dtype=picked_log_probs.dtype)
    targets = torch.zeros_like(log_probs)
    log_probs[flat_index] = picked_log_probs
    targets[flat_index] = picked_targets
    return log_probs.reshape(rows, width, vocab), targets.reshape(rows, width, vocab)


def early_exit(lm: TransformersLM, layers: int) -> TransformersLM:
    """A draft model that costs no download: `lm`'s first `layers` decoder layers, then
    its final norm and output head, sharing every weight (nothing is copied). Untrained
    for exiting early (unlike LayerSkip, Elhoushi et al. 2024, arXiv 2404.16710), so its
    drafts are rarely accepted: the benchmark and tests use it as a cheap, different q."""
    model = lm.model
    inner = model.model  # the decoder stack of a *ForCausalLM
    total = len(inner.layers)
    if not 1 <= layers < total:
        raise ValueError(f"early exit needs 1 <= layers < {total}, got {layers}")
    config = copy.deepcopy(model.config)
    config.num_hidden_layers = layers
    if isinstance(getattr(config, "layer_types", None), list):
        config.layer_types = config.layer_types[:layers]
    view_inner = copy.copy(inner)  # shallow copies with their own module tables
    view_inner._modules = dict(inner._modules)
    view_inner._modules["layers"] = torch.nn.ModuleList(list(inner.layers)[:layers])
    view_inner.config = config
    view = copy.copy(model)
    view._modules = dict(model._modules)
    view._modules["model"] = view_inner
    view.config = config
    draft = copy.copy(lm)
    draft.model = view
    draft.model_id = f"{lm.model_id} (first {layers} of {total} layers)"
    draft._set_speculation("off")
    return draft
