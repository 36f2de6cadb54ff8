"""Self-improvement on P3 puzzles: pass@k of a model on held-out puzzles (whole problem
families the loop never sees), before and after one iteration of each arm (`qd`: the
quality-diversity search; `naive`: sample, verify, fine-tune), with the time of every step.

    python bench/improve.py --puzzles PATH/TO/p3/train.json [--out runs/bench-improve]

Sized for about 40 minutes on 2 CPU cores with the embedded model. Steps already done in
`--out` are not redone (delete the folder to start over).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from openended.improve import ImproveLoop, ImproveSettings
from openended.training.finetune import FinetuneSettings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--puzzles", type=Path, required=True, help="P3-format JSON")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-improve"))
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--eval-puzzles", type=int, default=40)
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--generate-calls", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--with-seeds", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    settings = ImproveSettings(
        puzzles=args.puzzles,
        out_dir=args.out,
        model=args.model,
        iterations=1,
        eval_puzzles=args.eval_puzzles,
        samples=args.samples,
        ks=(1, 10),
        generate_calls=args.generate_calls,
        batch_size=args.batch_size,
        with_seeds=args.with_seeds,
        seed=args.seed,
        finetune=FinetuneSettings(method="lora", epochs=2),
    )
    start = time.perf_counter()
    steps = ImproveLoop(settings, log=lambda line: print(line, flush=True)).run()
    print()
    print(
        f"{'arm':<7}{'iter':>5}{'generated':>11}{'verified':>10}{'trained on':>12}"
        f"{'cells':>7}{'pass@1':>9}{'pass@10':>9}   seconds (generate / finetune / evaluate)"
    )
    for s in steps:
        secs = " / ".join(
            f"{s.seconds.get(k, 0):.0f}" for k in ("generate", "finetune", "evaluate")
        )
        print(
            f"{s.arm:<7}{s.iteration:>5}{s.generated:>11}{s.verified:>10}{s.training_examples:>12}"
            f"{s.diversity.get('cells', 0):>7.0f}{s.pass_at.get('pass@1', 0):>9.3f}"
            f"{s.pass_at.get('pass@10', 0):>9.3f}   {secs}"
        )
    print(
        f"\nheld-out puzzles: {settings.eval_puzzles}, samples per puzzle: {settings.samples}, "
        f"total {time.perf_counter() - start:.0f} s"
    )


if __name__ == "__main__":
    main()
