"""How well a model chooses from labelled menus, read from its next-letter distribution.

    python bench/menu_chooser.py OUT/seed0/tuned/labels1.summary.json [MODEL_FOLDER ...]

The labels come from `openended improve --select labelled` (every option of a search's menus
evaluated; `openended.apps.training.menu_labels`). For the base model and each model folder
given, the expected share of improving picks (the probability mass on options whose child
beats its parent), the mass on the best option, and the mean mass on each letter, beside a
uniform pick's share. Issue 36 used it to show that a model tuned on labelled letters moved its
letter prior and learnt nothing about the options' content.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

import numpy as np

from openended.apps.training.menu_labels import MenuLabel
from openended.lm import embedded
from openended.lm.ctranslate import CTranslate2LM
from openended.operators.menu import LABELS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("labels", type=Path, help="a labels<i>.summary.json")
    parser.add_argument("models", type=Path, nargs="*", help="model folders besides the base")
    args = parser.parse_args()
    menus = [MenuLabel(**m) for m in json.loads(args.labels.read_text())["menus"]]
    count = max(len(m.options) for m in menus)
    letters = [f" {LABELS[i]}" for i in range(count)]
    uniform = np.mean([len(m.improving()) / len(m.options) for m in menus])
    for name, path in [("base", embedded.fetch()), *((str(p), p) for p in args.models)]:
        model = CTranslate2LM(path)
        rows = asyncio.run(model.option_logprobs([m.prompt for m in menus], letters))
        share, best, mass = [], [], np.zeros(count)
        for menu, row in zip(menus, rows, strict=True):
            p = np.exp(np.array(row[: len(menu.options)]))
            p /= p.sum()
            good = menu.improving()
            share.append(p[good].sum())
            if good:
                best.append(p[good[0]])
            mass[: len(p)] += p
        print(
            f"{name}: improving picks {np.mean(share):.3f} (uniform {uniform:.3f}), best "
            f"option {np.mean(best):.3f}; letters {np.round(mass / len(menus), 2).tolist()}"
        )


if __name__ == "__main__":
    main()
