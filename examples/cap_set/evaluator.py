"""Cap set in n = 8 dimensions (FunSearch, Romera-Paredes et al. 2024): the size of the cap
set the greedy skeleton builds with the evolved priority. A constant priority gives 256;
FunSearch found 512; the largest known in n = 8 is 512. Score: the size (higher is better).

Train/test split: the search sees only n = 8 (`evaluate`, 0.07 s: no cheaper first stage,
whose n = 4 would be the problem the refine stage fits PARAMS on).
`evaluate_test` builds the cap set in n = 9, which the search never sees (a constant
priority gives 512; the largest known is 1082): does the priority generalise across
dimensions, as FunSearch's did?"""

import importlib.util
import itertools

import numpy as np

N = 8
TEST_N = 9


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


def _size(program_path, n):
    cap = np.asarray(_load(program_path).build_cap_set(n))
    if cap.ndim != 2 or cap.shape[1] != n or not is_cap_set(cap):
        return None
    return float(len(cap))


def evaluate(program_path):
    """n = 8, the only dimension the search scores."""
    size = _size(program_path, N)
    if size is None:
        return {"error": f"the result is not a cap set in F_3^{N}"}
    return {"score": size}


def evaluate_test(program_path):
    """The held-out dimension, n = 9."""
    size = _size(program_path, TEST_N)
    if size is None:
        return {"error": f"the result is not a cap set in F_3^{TEST_N}"}
    return {"score": size}
