"""Cap set in n = 8 dimensions (FunSearch, Romera-Paredes et al. 2024): the size of the cap
set the greedy skeleton builds with the evolved priority. A constant priority gives 256;
FunSearch found 512; the largest known in n = 8 is 512. Score: the size (higher is better)."""

import importlib.util
import itertools

import numpy as np

N = 8


def _load(path):
    spec = importlib.util.spec_from_file_location("candidate", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def is_cap_set(vectors):
    points = {tuple(int(x) for x in v) for v in vectors}
    if len(points) != len(vectors):
        return False
    for a, b in itertools.combinations(points, 2):
        if tuple((-x - y) % 3 for x, y in zip(a, b, strict=True)) in points:
            return False
    return True


def evaluate_stage1(program_path):
    """Cheap check in n = 4 (the largest cap set there has 20 points)."""
    cap = _load(program_path).build_cap_set(4)
    if not is_cap_set(cap):
        return {"score": 0.0, "passed": False, "error": "not a cap set in n = 4"}
    return {"score": float(len(cap))}


def evaluate(program_path):
    cap = np.asarray(_load(program_path).build_cap_set(N))
    if cap.ndim != 2 or cap.shape[1] != N or not is_cap_set(cap):
        return {"error": "the result is not a cap set in F_3^8"}
    return {"score": float(len(cap))}
