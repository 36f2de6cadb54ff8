"""Diversity at equal LM budget: plain sampling (temperature 0.7 and 1.0), min-p sampling,
best-of-n, and the QD search of the text domain, on one task, judged by one judge.

    python bench/diversity.py [--completions 64] [--model embedded]

For each method: how many texts it keeps, mean judge quality, coverage of the judge's grid
(difficulty x topic), distinct-2, mean pairwise embedding distance and the Vendi score
(all-MiniLM-L6-v2 embeddings), side by side. Every method spends `--completions` model
completions on writing (the QD search also spends judge calls, as QDAIF does).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from openended import api
from openended.domains.text.axes import parse_task
from openended.domains.text.domain import TextConfig, TextDomain
from openended.domains.text.judge import Judge
from openended.embeddings import Embedder, distinct_n, mean_pairwise_distance, vendi_score
from openended.lm.base import GenerationRequest
from openended.lm.local import TransformersLM

TASK = {
    "task": "quiz questions about science for school students",
    "quality": "a clear, self-contained question with one correct answer",
    "axes": [
        {
            "name": "difficulty",
            "description": "How hard is the question",
            "levels": ["easy", "hard"],
        },
        {
            "name": "subject",
            "description": "Which subject is the question about",
            "labels": ["biology", "chemistry", "physics", "astronomy"],
        },
    ],
}


def write_prompt() -> tuple[dict[str, str], ...]:
    return (
        {
            "role": "user",
            "content": f"Write one example of {TASK['task']}. It should be {TASK['quality']}. "
            "Reply with the question only, on one line.",
        },
    )


async def sample(
    lm: TransformersLM, count: int, *, temperature: float, min_p: float = 0.0, seed: int = 0
) -> list[str]:
    requests = [
        GenerationRequest(
            messages=write_prompt(),
            max_tokens=64,
            temperature=temperature,
            top_p=1.0,
            min_p=min_p,
            stop=("\n",),
            seed=seed * 100_000 + i,
        )
        for i in range(count)
    ]
    results = await lm.generate(requests)
    return [r.generations[0].text for r in results]


def clean(domain: TextDomain, texts: Sequence[str]) -> list[str]:
    return [t for t in (domain.parse(x) for x in texts) if t]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--completions", type=int, default=64)
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    from openended.lm.embedded import resolve_model

    lm = TransformersLM(resolve_model(args.model), model_id=args.model, max_batch_size=32)
    task = parse_task(TASK, source="bench")
    judge = Judge(lm, task)
    domain = TextDomain(TextConfig(**TASK, seed_texts=["What do plants need to grow?"]))
    n = args.completions
    outputs: dict[str, list[str]] = {}
    seconds: dict[str, float] = {}

    def timed(name: str, texts: list[str], start: float) -> None:
        outputs[name] = texts
        seconds[name] = time.perf_counter() - start

    start = time.perf_counter()
    timed("sampling T=0.7", clean(domain, asyncio.run(sample(lm, n, temperature=0.7))), start)
    start = time.perf_counter()
    plain = clean(domain, asyncio.run(sample(lm, n, temperature=1.0, seed=1)))
    timed("sampling T=1.0", plain, start)
    start = time.perf_counter()
    texts = asyncio.run(sample(lm, n, temperature=1.5, min_p=0.1, seed=2))
    timed("min-p 0.1, T=1.5", clean(domain, texts), start)
    # best-of-4: the T=1.0 samples in groups of 4, the judge keeps the best of each group
    start = time.perf_counter()
    quality = [j.quality for j in asyncio.run(judge.judge(plain))]
    best = [
        max(range(i, min(i + 4, len(plain))), key=lambda k: quality[k])
        for i in range(0, len(plain), 4)
    ]
    timed("best-of-4 (T=1.0)", [plain[k] for k in best], start)
    # the QD search: same number of writing completions (seeds included)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        batch = 12
        config = {
            "runs_dir": tmp,
            "name": "qd",
            "seed": args.seed,
            "search": {"batch_size": batch},
            "budget": {"max_lm_calls": max(1, (n - 4) // batch), "max_seconds": 0},
            "domain": {"name": "text", **TASK, "generated_seeds": 4},
        }
        result = api.run(config, lm=lm)
        frame = result.archive
        elites = list(frame["genome"])
        from openended.store.run_store import RunStore

        with RunStore(Path(result.run_dir)) as store:
            valid = [r.genome for r in store.candidates() if r.status == "valid" and r.genome]
    seconds["QD search (all valid)"] = seconds["QD search (elites)"] = time.perf_counter() - start
    outputs["QD search (all valid)"] = valid
    outputs["QD search (elites)"] = elites

    embedder = Embedder.shared()
    rows = []
    for name, texts in outputs.items():
        judgements = asyncio.run(judge.judge(texts)) if texts else []
        cells = {j.bins for j in judgements}
        vectors = embedder.encode(texts)
        rows.append(
            (
                name,
                len(texts),
                sum(j.quality for j in judgements) / max(1, len(judgements)),
                len(cells),
                distinct_n(texts, 2),
                mean_pairwise_distance(vectors),
                vendi_score(vectors),
                seconds[name],
            )
        )
    total_cells = 2 * 4
    print(
        f"\ntask: {TASK['task']}; {n} writing completions per method; judge: {lm.model_id} "
        f"({judge.method}); grid {total_cells} cells (difficulty x subject)\n"
    )
    print(
        f"{'method':<24}{'texts':>6}{'quality':>9}{'cells':>7}{'distinct-2':>12}"
        f"{'emb. dist':>11}{'Vendi':>8}{'seconds':>9}"
    )
    for name, count, q, cells_, d2, dist, vendi, secs in rows:
        print(
            f"{name:<24}{count:>6}{q:>9.3f}{cells_:>4}/{total_cells:<2}{d2:>12.3f}"
            f"{dist:>11.3f}{vendi:>8.2f}{secs:>9.0f}"
        )


if __name__ == "__main__":
    main()
