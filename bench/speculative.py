"""Speculative sampling on rewrite mutations: tokens/s of the embedded model with and
without prompt-lookup drafts, greedy and temperature 0.7, batch 1 and 8, side by side;
acceptance rate and tokens per target forward; draft models (the embedded model drafting
for itself, and its first 12 layers); and transformers' own `prompt_lookup_num_tokens`
(batch 1 only) on the same prompts.

    python bench/speculative.py [--max-tokens 160] [--parents 4]

Prompts are the `rewrite` operator's (template `rewrite.jinja`) with the examples'
initial programs as parents: the model is asked for a complete new version, most of
which copies the parent.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import jinja2
import torch

from openended.lm import embedded
from openended.lm.base import GenerationRequest
from openended.lm.local import TransformersLM, early_exit

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / "src" / "openended" / "operators" / "templates"
EXAMPLES = ["function_minimization", "bin_packing", "cap_set", "circle_packing"]


def rewrite_prompts(count: int) -> list[str]:
    template = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES)).get_template(
        "rewrite.jinja"
    )
    prompts = []
    for name in EXAMPLES[:count]:
        genome = (ROOT / "examples" / name / "initial_program.py").read_text()
        prompts.append(
            template.render(
                header=None,
                domain={"task": f"improve the {name.replace('_', ' ')} program"},
                parent={"genome": genome, "fitness": 1.0, "feedback": None},
            )
        )
    return prompts


def measure(lm: TransformersLM, requests: list[GenerationRequest]) -> dict[str, float]:
    lm.stats.reset()
    start = time.perf_counter()
    results = lm.generate_sync(requests)
    seconds = time.perf_counter() - start
    tokens = sum(g.completion_tokens for r in results for g in r.generations)
    stats = lm.stats
    return {
        "tok/s": tokens / seconds,
        "seconds": seconds,
        "tokens": tokens,
        "accept": stats.acceptance_rate or 0.0,
        "tok/forward": tokens / max(1, stats.steps),  # per sequence and target forward
        "texts": [g.text for r in results for g in r.generations],
    }


def hf_prompt_lookup(lm: TransformersLM, prompt: str, max_tokens: int, lookup: int) -> float:
    """tokens/s of transformers' generate (greedy), with or without prompt lookup."""
    ids = lm.tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
    kwargs = {"prompt_lookup_num_tokens": lookup} if lookup else {}
    start = time.perf_counter()
    out = lm.model.generate(
        **ids, max_new_tokens=max_tokens, do_sample=False, pad_token_id=lm.pad_id, **kwargs
    )
    seconds = time.perf_counter() - start
    return (out.shape[1] - ids["input_ids"].shape[1]) / seconds


def compare(
    plain: TransformersLM,
    spec: TransformersLM,
    label: str,
    prompts: list[str],
    temperature: float,
    batch: int,
    max_tokens: int,
) -> None:
    """One table row: plain and speculative decoding of the same requests, side by side."""
    plain_rate = spec_rate = 0.0
    accept, per_forward, same, total = [], [], 0, 0
    for k, prompt in enumerate(prompts):
        requests = [
            GenerationRequest(
                prompt=prompt, n=batch, max_tokens=max_tokens, temperature=temperature, seed=k
            )
        ]
        a, b = measure(plain, requests), measure(spec, requests)
        plain_rate += a["tokens"] / a["seconds"]
        spec_rate += b["tokens"] / b["seconds"]
        accept.append(b["accept"])
        per_forward.append(b["tok/forward"])
        same += sum(x == y for x, y in zip(a["texts"], b["texts"], strict=True))
        total += len(a["texts"])
    n = len(prompts)
    print(
        f"{label:>18} {temperature:>11} {batch:>5} {plain_rate / n:>12.1f}"
        f" {spec_rate / n:>11.1f} {spec_rate / plain_rate:>7.2f}x {sum(accept) / n:>7.2f}"
        f" {sum(per_forward) / n:>12.2f} {same:>5}/{total}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-tokens", type=int, default=160)
    parser.add_argument("--parents", type=int, default=4)
    args = parser.parse_args()
    torch.manual_seed(0)
    path = embedded.fetch()
    plain = TransformersLM(path, speculative="off")
    spec = plain.with_speculation("prompt-lookup")
    prompts = rewrite_prompts(args.parents)
    print(f"{len(prompts)} rewrite prompts, up to {args.max_tokens} new tokens each\n")
    header = (
        f"{'drafter':>18} {'temperature':>11} {'batch':>5} {'plain tok/s':>12}"
        f" {'spec tok/s':>11} {'speedup':>8} {'accept':>7} {'tok/forward':>12} {'same text':>10}"
    )
    print(header)
    for temperature in (0.0, 0.7):
        for batch in (1, 8):
            compare(plain, spec, "prompt lookup", prompts, temperature, batch, args.max_tokens)
    print("\ndraft models (the draft's KV cache kept between steps, rolled back by masking):")
    print(header)
    drafts = {
        "itself (q = p)": plain,
        "first 12 layers": early_exit(plain, 12),
    }
    for label, draft in drafts.items():
        drafted = plain.with_speculation("draft-model", draft_model=draft)
        for temperature, batch in ((0.0, 1), (0.7, 8)):
            compare(plain, drafted, label, prompts, temperature, batch, args.max_tokens)
    print("\ntransformers generate, greedy, batch 1 (prompt_lookup_num_tokens = 10 vs off):")
    off = [hf_prompt_lookup(plain, p, args.max_tokens, 0) for p in prompts]
    on = [hf_prompt_lookup(plain, p, args.max_tokens, 10) for p in prompts]
    print(
        f"  plain {sum(off) / len(off):.1f} tok/s, prompt lookup {sum(on) / len(on):.1f} tok/s,"
        f" {sum(on) / sum(off):.2f}x"
    )


if __name__ == "__main__":
    main()
