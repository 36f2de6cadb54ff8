"""Program search with and without the model and the optimiser, at equal budgets (issue 35).

    python bench/programs.py [--examples bin_packing cap_set ...] [--seeds 0 1 2]
                             [--lm-calls 8] [--batch-size 8] [--out bench-programs]
                             [--refine-method scan] [--tag NAME --set KEY=VALUE ...]

Arms, on each example (examples/*) and seed:

- ``model+refine``: the default search, the embedded model proposing programs and the refine
  stage fitting their ``PARAMS`` (``--lm-calls`` batched calls of ``--batch-size``);
- ``blind+refine``: the same, with the ``menu`` operator's weight (``--set
  operators.menu.weight=...``) moved to ``menu_uniform``: the same menus of terms, the option
  drawn uniformly instead of by the model (what the model's choice adds);
- ``model``: the same LM calls with the refine stage off (and so with the domain's default
  operators for that case, diff, rewrite and funsearch: ``--set`` is not applied, since the
  menu and term operators need the refine stage);
- ``refine``: no model; CMA-ES on the seed's ``PARAMS`` with the evaluator calls that
  ``model+refine`` spent on the same seed;
- ``ast``: no model; genetic programming's structural mutation (random syntax-tree edits of
  the evolved region, `openended.domains.program.ast_mutation`) with truncation selection and
  the refine stage, until it has spent the same evaluator calls as ``model+refine``.

Per arm: the best training score, the best program's held-out test score (the evaluator's
``evaluate_test``) beside the seed's, the share of valid children that beat their parent, the
operators or edits that produced those, evaluator calls, LM calls and time. Each run's result
is kept in ``--out`` (a rerun skips it), the model arms' run directories under
``--out/runs`` (for ``openended report`` and ``show``). The arms' seeds and budgets are
asserted equal. Differences (model+refine minus each other arm, on the test score) come with
a paired bootstrap 95% interval over the example x seed runs (`openended.stats`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

EXAMPLES_DIR = Path(__file__).resolve().parents[1] / "examples"
FUNCTIONS = {
    "bin_packing": "priority",
    "cap_set": "priority",
    "circle_packing": None,
    "function_minimization": None,
}
ARMS = ("model+refine", "blind+refine", "model", "refine", "ast")
MODEL_ARMS = ("model+refine", "blind+refine", "model")


def blind(overrides: list[str]) -> list[str]:
    """`overrides` with the menu operator's weight moved to its uniform ablation: the same
    menus, the option drawn blindly instead of by the model."""
    out = []
    for override in overrides:
        key, _, value = override.partition("=")
        if key.strip() == "operators.menu.weight":
            out += ["operators.menu.weight=0", f"operators.menu_uniform.weight={value}"]
        else:
            out.append(override)
    return out


def overrides_for(example: str, seed: int, args: argparse.Namespace, arm: str) -> list[str]:
    refine = arm != "model"
    folder = EXAMPLES_DIR / example
    out = [
        'domain.name="program"',
        f'domain.initial="{folder / "initial_program.py"}"',
        f'domain.evaluator="{folder / "evaluator.py"}"',
        f"search.batch_size={args.batch_size}",
        f"budget.max_lm_calls={args.lm_calls}",
        "budget.max_evaluations=0",
        "budget.max_seconds=0",
        f"seed={seed}",
        f"domain.refine.enabled={'true' if refine else 'false'}",
        f'domain.refine.method="{args.refine_method}"',
        f"domain.refine.seed={seed}",
    ]
    if FUNCTIONS[example]:
        out.append(f'domain.function="{FUNCTIONS[example]}"')
    if arm == "model":  # no refine stage: the menu and term operators cannot work; the
        return out  # domain's defaults without it (diff, rewrite, funsearch)
    return out + (blind(args.set) if arm == "blind+refine" else list(args.set))


def domain_for(example: str, *, refine: bool = True, method: str = "nelder-mead") -> Any:
    from openended.domains.program.domain import ProgramConfig, ProgramDomain

    folder = EXAMPLES_DIR / example
    config = ProgramConfig(
        initial=folder / "initial_program.py",
        evaluator=folder / "evaluator.py",
        function=FUNCTIONS[example],
        refine=None if not refine else {"method": method},
    )
    return ProgramDomain(config)


def score_of(evaluation: Any) -> float | None:
    if not evaluation.valid:
        return None
    return float(evaluation.metrics.get("score", evaluation.fitness))


async def test_scores(domain: Any, genomes: list[str]) -> list[float | None]:
    outcomes = await asyncio.gather(
        *(domain.evaluator.run_test(domain.region.assemble(g)) for g in genomes)
    )
    return [o.score for o in outcomes]


# -- the model arms: whole runs of the engine ----------------------------------------------


def model_arm(example: str, seed: int, args: argparse.Namespace, arm: str) -> dict[str, Any]:
    from openended import api
    from openended.apps.generalisation import generalisation
    from openended.apps.report.lineage import improvements
    from openended.store import RunStore

    start = time.perf_counter()
    run_dir = args.out / "runs" / f"{example}.{seed}.{arm}.{run_name(args)}"
    if run_dir.exists():  # an unfinished earlier attempt: start it over
        shutil.rmtree(run_dir)
    api.run(overrides=overrides_for(example, seed, args, arm), run_dir=run_dir)
    with RunStore(run_dir) as store:  # the run is kept: `openended report` / `show` it
        records = {r.id or 0: r for r in store.candidates()}
        usage = store.get_meta("usage", {})
    held_out = generalisation(run_dir)
    assert held_out is not None, f"{example}: the evaluator has no evaluate_test"
    children = [r for r in records.values() if r.parents]
    valid = [r for r in children if r.status == "valid"]
    better = improvements(records)
    return {
        "best_train": held_out.best.train,
        "best_test": held_out.best.test,
        "seed_train": held_out.seed.train,
        "seed_test": held_out.seed.test,
        "children": len(children),
        "valid_children": len(valid),
        "improving_children": len(better),
        "improving_by": dict(Counter(i.operator for i in better)),
        "statuses": dict(Counter(f"{r.operator} {r.status}" for r in children)),
        "refined_gains": sum(
            1 for r in valid if float(r.details.get("refine", {}).get("gain", 0.0)) > 0
        ),
        "evaluations": int(usage.get("evaluations", 0)),
        "lm_calls": int(usage.get("lm_calls", 0)),
        "seconds": time.perf_counter() - start,
    }


# -- the model-free arms ----------------------------------------------------------------------


def refine_arm(example: str, seed: int, evaluations: int) -> dict[str, Any]:
    """CMA-ES on the seed's PARAMS with `evaluations` evaluator calls (the seed's own
    evaluation included), restarted from the best so far while calls are left (CMA-ES stops
    early on flat scores)."""
    from openended.domains.program.refine import RefineSettings

    start = time.perf_counter()
    domain = domain_for(example)
    try:
        genome = domain.region.initial
        seed_evaluation = domain.seed_evaluation  # as written: this arm does the fitting
        best_genome, best = genome, seed_evaluation
        spent, restart = 1, 0
        while evaluations - spent >= 2:
            settings = RefineSettings(
                evaluations=evaluations - spent, method="cma", seed=seed * 1000 + restart
            )
            tuned = asyncio.run(domain.refine(best_genome, best, settings))
            used = tuned.evaluations - 1
            spent += used
            restart += 1
            if tuned.genome is not None:
                best_genome, best = tuned.genome, tuned
            if used == 0:
                break  # nothing to fit
        best_test, seed_test = asyncio.run(test_scores(domain, [best_genome, genome]))
    finally:
        domain.close()
    improved = best_genome != genome
    return {
        "best_train": score_of(best),
        "best_test": best_test,
        "seed_train": score_of(seed_evaluation),
        "seed_test": seed_test,
        "children": restart,
        "valid_children": restart,
        "improving_children": int(improved),
        "improving_by": {"refine": 1} if improved else {},
        "refined_gains": int(improved),
        "evaluations": spent,
        "lm_calls": 0,
        "seconds": time.perf_counter() - start,
    }


def ast_arm(
    example: str, seed: int, evaluations: int, batch_size: int, method: str
) -> dict[str, Any]:
    """Random syntax-tree edits of the best programs (truncation selection: a parent drawn
    from the best `batch_size`), each child refined, until `evaluations` calls are spent."""
    from openended.domains.program.ast_mutation import random_edit

    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    domain = domain_for(example, method=method)
    try:
        seed_genome = domain.region.initial
        seed_evaluation = domain.seed_evaluation
        (fitted_seed,) = asyncio.run(domain.evaluate([seed_genome]))  # as the engine does
        population = [(score_of(fitted_seed), fitted_seed.genome or seed_genome)]
        seen = {domain.fingerprint(seed_genome)}
        spent, children, valid, better = fitted_seed.evaluations, 0, 0, Counter()
        per_child = domain.max_evaluations_per_child
        while spent < evaluations:
            ranked = sorted(population, key=lambda p: p[0], reverse=True)[:batch_size]
            size = max(1, min(batch_size, (evaluations - spent) // per_child))
            batch: list[tuple[float, str, str]] = []
            for _ in range(size * 4):
                if len(batch) == size:
                    break
                parent_score, parent = ranked[int(rng.integers(len(ranked)))]
                edited = random_edit(parent, rng)
                if edited is None or domain.validate(edited[0]):
                    continue
                key = domain.fingerprint(edited[0])
                if key in seen:
                    continue
                seen.add(key)
                batch.append((parent_score, edited[0], edited[1]))
            if not batch:
                break
            results = asyncio.run(domain.evaluate([genome for _, genome, _ in batch]))
            for (parent_score, genome, edit), evaluation in zip(batch, results, strict=True):
                spent += evaluation.evaluations
                children += 1
                score = score_of(evaluation)
                if score is None:
                    continue
                valid += 1
                population.append((score, evaluation.genome or genome))
                if score > parent_score:
                    better[edit] += 1
        best_score, best = max(population, key=lambda p: p[0])
        best_test, seed_test = asyncio.run(test_scores(domain, [best, seed_genome]))
    finally:
        domain.close()
    return {
        "best_train": best_score,
        "best_test": best_test,
        "seed_train": score_of(seed_evaluation),
        "seed_test": seed_test,
        "children": children,
        "valid_children": valid,
        "improving_children": sum(better.values()),
        "improving_by": dict(better),
        "refined_gains": None,
        "evaluations": spent,
        "lm_calls": 0,
        "seconds": time.perf_counter() - start,
    }


# -- running and reporting --------------------------------------------------------------------


def run_name(args: argparse.Namespace) -> str:
    """The budget and variant part of a result's file name."""
    return f"{args.lm_calls}x{args.batch_size}" + (f".{args.tag}" if args.tag else "")


def run_one(example: str, seed: int, arm: str, args: argparse.Namespace) -> dict[str, Any]:
    path = args.out / f"{example}.{seed}.{arm}.{run_name(args)}.json"
    if path.is_file():
        return json.loads(path.read_text())
    print(f"{example} seed {seed} {arm} ...", flush=True)
    if arm in MODEL_ARMS:
        result = model_arm(example, seed, args, arm)
    else:
        budget = run_one(example, seed, "model+refine", args)["evaluations"]
        if arm == "refine":
            result = refine_arm(example, seed, budget)
        else:
            result = ast_arm(example, seed, budget, args.batch_size, args.refine_method)
        # equal budgets: the model-free arms spend what model+refine spent (one child's
        # share over at most, as the engine's budgets allow)
        assert result["evaluations"] <= budget + 13, (arm, result["evaluations"], budget)
    result.update(example=example, seed=seed, arm=arm)
    path.write_text(json.dumps(result, indent=1))
    print(
        f"  best train {result['best_train']} (seed {result['seed_train']}), test "
        f"{result['best_test']} (seed {result['seed_test']}); "
        f"{result['improving_children']}/{result['valid_children']} valid children improved; "
        f"{result['evaluations']} evaluations, {result['seconds']:.0f} s",
        flush=True,
    )
    if result.get("statuses"):
        print("  children: " + ", ".join(f"{k} {v}" for k, v in sorted(result["statuses"].items())))
    return result


def summarise(results: list[dict[str, Any]], examples: list[str], seeds: list[int]) -> None:
    from openended.stats import paired_difference

    print(
        f"\n{'example':<22}{'arm':<14}{'train best':>12}{'test best':>12}{'test seed':>12}"
        f"{'improving/valid':>17}{'evals':>7}{'LM':>5}{'s':>7}  improvements by"
    )
    by_key = {(r["example"], r["seed"], r["arm"]): r for r in results}
    for example in examples:
        for arm in ARMS:
            rows = [by_key[(example, s, arm)] for s in seeds if (example, s, arm) in by_key]
            if not rows:
                continue
            seeds_seen = {r["seed"] for r in rows}
            assert seeds_seen == set(seeds), (example, arm, seeds_seen)  # the same seeds

            def mean(key: str, rows: list[dict[str, Any]] = rows) -> float:
                values = [r[key] for r in rows if r[key] is not None]
                return float(np.mean(values)) if values else float("nan")

            by: Counter = Counter()
            for r in rows:
                by.update(r["improving_by"])
            improving = sum(r["improving_children"] for r in rows)
            valid = sum(r["valid_children"] for r in rows)
            print(
                f"{example:<22}{arm:<14}{mean('best_train'):>12.5g}{mean('best_test'):>12.5g}"
                f"{mean('seed_test'):>12.5g}{f'{improving}/{valid}':>17}"
                f"{mean('evaluations'):>7.0f}{mean('lm_calls'):>5.0f}{mean('seconds'):>7.0f}  "
                + ", ".join(f"{k} {v}" for k, v in by.most_common())
            )
    print("\ntest score gain over the seed, model+refine minus each arm (paired over runs):")
    for arm in ARMS[1:]:
        pairs = [
            (by_key[(e, s, "model+refine")], by_key[(e, s, arm)])
            for e in examples
            for s in seeds
            if (e, s, "model+refine") in by_key and (e, s, arm) in by_key
        ]
        gains = [
            [(r["best_test"] - r["seed_test"]) / max(abs(r["seed_test"]), 1e-9) for r in pair]
            for pair in pairs
            if all(r["best_test"] is not None and r["seed_test"] is not None for r in pair)
        ]
        if len(gains) >= 2:
            interval = paired_difference([g[0] for g in gains], [g[1] for g in gains])
            print(f"  vs {arm:<8} relative test gain {interval}  ({len(gains)} runs)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--examples", nargs="+", default=list(FUNCTIONS), choices=list(FUNCTIONS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    parser.add_argument("--lm-calls", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--out", type=Path, default=Path("bench-programs"))
    parser.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="config overrides of the model arms (e.g. operators.term.weight=1)",
    )
    parser.add_argument("--tag", default="", help="a name for this variant's result files")
    parser.add_argument(
        "--refine-method",
        default="scan",
        choices=["nelder-mead", "cma", "scan"],
        help="the refine stage's optimiser in the model and ast arms",
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results = [
        run_one(example, seed, arm, args)
        for example in args.examples
        for seed in args.seeds
        for arm in args.arms
    ]
    summarise(results, args.examples, args.seeds)


if __name__ == "__main__":
    main()
