"""Quality control of human judgments: are the raters consistent, unbiased and honest?

- Self-consistency: about 5% of screens are shown again with the items in other slots
  (a pair's sides swapped); how often does the rater give the same answer?
- Position bias: the share of decisive choices that went to the left side (a binomial
  test against 1/2); on multi-way screens, how the best (and the worst) picks fall on the
  K slots (a chi-square test against K equal shares).
- Agreement between raters on the pairs both judged: Cohen's kappa (Cohen 1960).
- Reliability: how often a rater's choices agree with a Bradley-Terry model fitted to
  everyone else's judgments of the same prompt (leave-one-rater-out consensus).
- A flag on raters who look adversarial (agreeing with the consensus less often than
  chance: flipped preferences are a way to poison preference data) or careless
  (contradicting their own repeats, or always picking one side).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.stats import binomtest, chisquare

from openended.apps.ranking.schedule import bt_posterior
from openended.apps.ranking.session import as_schedule_judgment
from openended.apps.ranking.store import StoredJudgment

MIN_CONSENSUS = 8  # judgments compared with the consensus before a rater can be flagged
MIN_REPEATS = 4
MIN_OTHERS = 2  # other raters needed on a prompt before it counts towards the consensus
SIGNIFICANCE = 0.05
MIN_POSITION = 8  # decisive choices before a side preference can be flagged
POSITION_SIGNIFICANCE = 0.01
"""Two-sided binomial test: the left side 8 times of 8 (p = 0.008) is flagged; with many
raters, about 1 in 100 unbiased ones is flagged for a look, not excluded."""


def quality_report(
    judgments: Sequence[StoredJudgment], raters: Sequence[str], sizes: Sequence[int]
) -> dict[str, Any]:
    """Per-rater QC numbers, pairwise agreement, and flags. `sizes[p]` is the number of
    candidates of prompt p. Multi-way answers count, for agreement and the consensus, as
    the pairwise comparisons they imply."""
    by_rater: dict[str, list[StoredJudgment]] = defaultdict(list)
    for j in judgments:
        by_rater[j.rater].append(j)
    as_pairs = implied_pair_judgments(judgments)
    pairs_by_rater: dict[str, list[StoredJudgment]] = defaultdict(list)
    for j in as_pairs:
        pairs_by_rater[j.rater].append(j)
    consensus = _consensus_agreement(as_pairs, sizes)
    report: dict[str, Any] = {"raters": {}, "agreement": _agreement(pairs_by_rater, raters)}
    report["position"] = _position(judgments)
    for rater in raters:
        mine = by_rater.get(rater, [])
        decisive = [j for j in mine if j.winner is not None or j.is_choice]
        agree, compared = consensus.get(rater, (0, 0))
        consistent, repeats = _self_consistency(mine)
        entry: dict[str, Any] = {
            "judgments": len(mine),
            "decisive": len(decisive),
            "ties": sum(j.result == "tie" for j in mine),
            "both_bad": sum(j.result == "both_bad" for j in mine),
            "position": _position(mine),
            "repeats": repeats,
            "self_consistency": consistent / repeats if repeats else None,
            "consensus_compared": compared,
            "consensus_agreement": agree / compared if compared else None,
            "median_seconds": _median([j.seconds for j in mine if j.seconds is not None]),
        }
        entry["reliability"] = (
            entry["consensus_agreement"]
            if entry["consensus_agreement"] is not None
            else entry["self_consistency"]
        )
        entry["flags"] = _flags(entry, agree, compared, consistent, repeats)
        entry["flagged"] = bool(entry["flags"])
        report["raters"][rater] = entry
    return report


def _flags(
    entry: dict[str, Any], agree: int, compared: int, consistent: int, repeats: int
) -> list[str]:
    flags = []
    if compared >= MIN_CONSENSUS:
        p = binomtest(agree, compared, 0.5, alternative="less").pvalue
        if p < SIGNIFICANCE:
            flags.append(
                f"adversarial? agrees with the other raters on {agree} of {compared} "
                f"comparisons, less than chance (p = {p:.3g})"
            )
    if repeats >= MIN_REPEATS and consistent / repeats < 0.5:
        flags.append(f"careless? repeated pairs answered the same way {consistent} of {repeats}")
    position = entry["position"]
    if position["decisive"] >= MIN_POSITION and position["p_value"] < POSITION_SIGNIFICANCE:
        if position["left_share"] is not None:
            flags.append(
                f"position bias: picked the left side {position['left_share']:.0%} of the time "
                f"(p = {position['p_value']:.3g})"
            )
        else:
            slots = position["best_slot_shares"]
            shares = ", ".join(f"{share:.0%}" for share in slots)
            flags.append(
                f"position bias: the best picks fall on slots 1..{len(slots)} as {shares} "
                f"(p = {position['p_value']:.3g})"
            )
    return flags


def _position(judgments: Sequence[StoredJudgment]) -> dict[str, Any]:
    """Side (pairs) or slot (multi-way screens) preference of decisive answers. With
    multi-way screens of several sizes, the size answered most often is tested."""
    choices = [j for j in judgments if j.is_choice]
    if choices:
        sizes = [len(j.shown) for j in choices]
        k = max(set(sizes), key=sizes.count)
        return _slot_position([j for j in choices if len(j.shown) == k], k)
    decisive = [j for j in judgments if j.winner is not None]
    left = sum(j.result == "left" for j in decisive)
    if not decisive:
        return {"decisive": 0, "left_share": None, "p_value": 1.0}
    return {
        "decisive": len(decisive),
        "left_share": left / len(decisive),
        "p_value": float(binomtest(left, len(decisive), 0.5).pvalue),
    }


def _slot_position(choices: Sequence[StoredJudgment], k: int) -> dict[str, Any]:
    """How best (and worst) picks fall on the k slots; p is the smaller of the two
    chi-square tests against equal shares, doubled when both are tested (Bonferroni)."""
    best = np.bincount([j.shown.index(j.best_idx) for j in choices], minlength=k)
    worst_picks = [j.shown.index(j.worst_idx) for j in choices if j.worst_idx is not None]
    p_values = [float(chisquare(best).pvalue)]
    entry: dict[str, Any] = {
        "decisive": len(choices),
        "left_share": None,
        "best_slot_shares": (best / len(choices)).round(3).tolist(),
    }
    if worst_picks:
        worst = np.bincount(worst_picks, minlength=k)
        p_values.append(float(chisquare(worst).pvalue))
        entry["worst_slot_shares"] = (worst / len(worst_picks)).round(3).tolist()
    entry["p_value"] = min(1.0, min(p_values) * len(p_values))
    return entry


def _self_consistency(mine: Sequence[StoredJudgment]) -> tuple[int, int]:
    """(answered the same, repeats): the same winner or undecided both times (pairs),
    the same best and worst (multi-way screens)."""
    by_id = {j.id: j for j in mine}
    same = total = 0
    for j in mine:
        original = by_id.get(j.repeat_of) if j.kind == "repeat" else None
        if original is None:
            continue
        total += 1
        if j.is_choice:
            same += (original.best_idx, original.worst_idx) == (j.best_idx, j.worst_idx)
        else:
            same += original.winner == j.winner
    return same, total


def implied_pair_judgments(judgments: Sequence[StoredJudgment]) -> list[StoredJudgment]:
    """Pairs as they are; each multi-way answer as the decisive pairs it implies (winner
    on the left), with the answer's id, rater, prompt and kind."""
    result: list[StoredJudgment] = []
    for j in judgments:
        if not j.is_choice:
            result.append(j)
            continue
        for winner, loser in j.implied_pairs():
            result.append(
                dataclasses.replace(
                    j,
                    left_idx=winner,
                    right_idx=loser,
                    result="left",
                    shown=(winner, loser),
                    best_idx=None,
                    worst_idx=None,
                )
            )
    return result


def _consensus_agreement(
    judgments: Sequence[StoredJudgment], sizes: Sequence[int]
) -> dict[str, tuple[int, int]]:
    """Per rater: (decisive choices that agree with the others' Bradley-Terry fit,
    choices compared). Only prompts judged by at least `MIN_OTHERS` other raters count
    (with one other rater, an honest rater and a flipper would accuse each other), and only
    pairs that at least half of the other raters (and `MIN_OTHERS`) judged too: raters who
    flip preferences push the worst candidates through their brackets, so the pairs only
    they judge would let colluding flippers confirm each other, and pairs few others judged
    carry little consensus (`openended experiment poison --attacks flipped-raters`)."""
    by_prompt: dict[int, list[StoredJudgment]] = defaultdict(list)
    for j in judgments:
        by_prompt[j.prompt_idx].append(j)
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for prompt_idx, judged in by_prompt.items():
        for rater in {j.rater for j in judged}:
            others = [j for j in judged if j.rater != rater]
            if len({j.rater for j in others}) < MIN_OTHERS:
                continue
            judges: dict[frozenset[int], set[str]] = defaultdict(set)
            for j in others:
                judges[frozenset((j.left_idx, j.right_idx))].add(j.rater)
            need = max(MIN_OTHERS, -(-len({j.rater for j in others}) // 2))
            mean, _ = bt_posterior(sizes[prompt_idx], [as_schedule_judgment(j) for j in others])
            for j in judged:
                if j.rater != rater or j.winner is None or j.loser is None:
                    continue
                if len(judges.get(frozenset((j.winner, j.loser)), ())) < need:
                    continue
                if np.isclose(mean[j.winner], mean[j.loser]):
                    continue
                counts[rater][1] += 1
                counts[rater][0] += int(mean[j.winner] > mean[j.loser])
    return {rater: (c[0], c[1]) for rater, c in counts.items()}


def _agreement(
    by_rater: dict[str, list[StoredJudgment]], raters: Sequence[str]
) -> list[dict[str, Any]]:
    """Cohen's kappa for each pair of raters on the pairs both judged (first judgment of
    each pair; labels: lower-numbered candidate better, higher better, undecided)."""
    from sklearn.metrics import cohen_kappa_score

    labels: dict[str, dict[tuple[int, int, int], str]] = {}
    for rater in raters:
        mine: dict[tuple[int, int, int], str] = {}
        for j in by_rater.get(rater, []):
            low, high = sorted((j.left_idx, j.right_idx))
            key = (j.prompt_idx, low, high)
            if key not in mine:
                mine[key] = "none" if j.winner is None else ("low" if j.winner == low else "high")
        labels[rater] = mine
    result = []
    for first, second in itertools.combinations(raters, 2):
        shared = sorted(set(labels[first]) & set(labels[second]))
        x = [labels[first][k] for k in shared]
        y = [labels[second][k] for k in shared]
        same = sum(a == b for a, b in zip(x, y, strict=True))
        kappa = None
        if len(shared) >= 2 and len(set(x) | set(y)) > 1:
            kappa = float(cohen_kappa_score(x, y))
        result.append(
            {
                "raters": [first, second],
                "shared_pairs": len(shared),
                "raw_agreement": same / len(shared) if shared else None,
                "kappa": kappa,
            }
        )
    return result


def _median(values: list[float]) -> float | None:
    return float(np.median(values)) if values else None
