"""Online bin packing. Instances are generated here: Weibull-distributed items as in
FunSearch's Weibull 5k set (shape 3, scale 45, capacity 100, sizes clipped to [1, 100]) and
uniform OR-library-style items (integers in [20, 100], capacity 150). Score: minus the mean
excess of bins used over the L1 lower bound ceil(sum(items) / capacity), in percent (0 is
optimal; higher is better)."""

import importlib.util
import math

import numpy as np

INSTANCES = 5
ITEMS = 1000  # FunSearch's Weibull 5k uses 5000; smaller here to keep evaluations fast


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


def excess(module, instances):
    results = []
    for items, capacity in instances:
        bins = np.full(len(items), float(capacity))
        packing, _ = module.online_binpack(items.copy(), bins)
        packed = sorted(x for b in packing for x in b)
        if len(packed) != len(items) or not np.allclose(packed, sorted(items)):
            raise ValueError("the packing does not hold every item exactly once")
        if any(sum(b) > capacity + 1e-9 for b in packing):
            raise ValueError("a bin is over capacity")
        lower = math.ceil(items.sum() / capacity)
        results.append(100.0 * (len(packing) - lower) / lower)
    return float(np.mean(results))


def evaluate_stage1(program_path):
    """Cheap check on one small instance."""
    module = _load(program_path)
    ((items, capacity),) = weibull_instances(count=1, items=100, seed=7)
    return {"score": -excess(module, [(items, capacity)])}


def evaluate(program_path):
    module = _load(program_path)
    weibull = excess(module, weibull_instances())
    uniform = excess(module, uniform_instances())
    return {
        "score": -(weibull + uniform) / 2,
        "weibull_excess_pct": weibull,
        "uniform_excess_pct": uniform,
    }
