"""Online bin packing. Instances are generated here: Weibull-distributed items as in
FunSearch's Weibull 5k set (shape 3, scale 45, capacity 100, sizes clipped to [1, 100]) and
uniform OR-library-style items (integers in [20, 100], capacity 150). Score: minus the mean
excess of bins used over the L1 lower bound ceil(sum(items) / capacity), in percent (0 is
optimal; higher is better).

Train/test split: the search sees only `evaluate` (5 Weibull instances of 1,000 items and 5
uniform instances of 500, seeds 0 and 1). `evaluate_test` scores held-out instances of the
sizes FunSearch reports, from seeds the search never sees: OR3-style (20 instances of 500
items, capacity 150) and Weibull 5k-style (5 instances of 5,000 items, capacity 100). It
also gives the bins per instance, the figure FunSearch reports (best fit: 212.0 on OR3,
2067.0 on Weibull 5k; FunSearch 207.45 and 2001.4).

No cascade: `evaluate` takes 0.2 s, and the refine stage fits PARAMS on the first stage,
where one small instance's bin count hardly moves with the weights (a stage of one instance
of each kind scored every weight of a useful new term the same)."""

import importlib.util
import math

import numpy as np

INSTANCES = 5
ITEMS = 1000  # FunSearch's Weibull 5k uses 5000; smaller here to keep evaluations fast
TEST_SEEDS = {"or3": 1003, "weibull5k": 5005}  # never used by `evaluate`


def _load(path):
    spec = importlib.util.spec_from_file_location("candidate", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def weibull_instances(count=INSTANCES, items=ITEMS, seed=0):
    rng = np.random.default_rng(seed)
    return [(np.clip(np.round(45 * rng.weibull(3, items)), 1, 100), 100) for _ in range(count)]


def uniform_instances(count=INSTANCES, items=ITEMS // 2, seed=1):
    rng = np.random.default_rng(seed)
    return [(rng.integers(20, 101, items).astype(float), 150) for _ in range(count)]


def pack(module, instances):
    """Bins used and the excess over the lower bound (percent), per instance."""
    bins_used, excesses = [], []
    for items, capacity in instances:
        bins = np.full(len(items), float(capacity))
        packing, _ = module.online_binpack(items.copy(), bins)
        packed = sorted(x for b in packing for x in b)
        if len(packed) != len(items) or not np.allclose(packed, sorted(items)):
            raise ValueError("the packing does not hold every item exactly once")
        if any(sum(b) > capacity + 1e-9 for b in packing):
            raise ValueError("a bin is over capacity")
        lower = math.ceil(items.sum() / capacity)
        bins_used.append(len(packing))
        excesses.append(100.0 * (len(packing) - lower) / lower)
    return bins_used, excesses


def excess(module, instances):
    return float(np.mean(pack(module, instances)[1]))


def evaluate(program_path):
    """The training instances: the only ones the search sees."""
    module = _load(program_path)
    weibull = excess(module, weibull_instances())
    uniform = excess(module, uniform_instances())
    return {
        "score": -(weibull + uniform) / 2,
        "weibull_excess_pct": weibull,
        "uniform_excess_pct": uniform,
    }


def evaluate_test(program_path):
    """Held-out instances (OR3-style and Weibull 5k-style), never seen by the search."""
    module = _load(program_path)
    or3_bins, or3 = pack(module, uniform_instances(20, 500, seed=TEST_SEEDS["or3"]))
    weibull_bins, weibull = pack(module, weibull_instances(5, 5000, seed=TEST_SEEDS["weibull5k"]))
    return {
        "score": -(float(np.mean(or3)) + float(np.mean(weibull))) / 2,
        "or3_bins_per_instance": float(np.mean(or3_bins)),
        "weibull5k_bins_per_instance": float(np.mean(weibull_bins)),
        "or3_excess_pct": float(np.mean(or3)),
        "weibull5k_excess_pct": float(np.mean(weibull)),
    }
