"""Circle packing: 26 circles in the unit square, maximise the sum of radii. Strict
validity: every circle inside the square and no two overlapping (tolerance 1e-12). Best
known: 2.6358627564; AlphaEvolve 2.635; OpenEvolve reported 2.634292. Score: the sum of
radii of a valid packing.

Train/test split: the search sees only n = 26 (`evaluate`). `evaluate_test` asks the same
`construct_packing(n)` for n = 20, 24, 28 and 32, which the search never sees, and scores the
mean sum of radii: does the construction generalise, or only fit 26?"""

import importlib.util
import math

N = 26
TEST_SIZES = (20, 24, 28, 32)
BEST_KNOWN = 2.6358627564
TOL = 1e-12


def _load(path):
    spec = importlib.util.spec_from_file_location("candidate", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def check(centers, radii, n=N):
    centers = [tuple(float(c) for c in p) for p in centers]
    radii = [float(r) for r in radii]
    if len(centers) != n or len(radii) != n or any(len(p) != 2 for p in centers):
        return f"need {n} centers (x, y) and {n} radii"
    for i, ((x, y), r) in enumerate(zip(centers, radii, strict=True)):
        if not all(math.isfinite(v) for v in (x, y, r)) or r <= 0:
            return f"circle {i}: radius {r} at ({x}, {y}) is not a positive finite circle"
        if x - r < -TOL or x + r > 1 + TOL or y - r < -TOL or y + r > 1 + TOL:
            return f"circle {i} leaves the unit square"
    for i in range(n):
        for j in range(i + 1, n):
            gap = math.dist(centers[i], centers[j]) - radii[i] - radii[j]
            if gap < -TOL:
                return f"circles {i} and {j} overlap by {-gap:.3g}"
    return None


def _sum_of_radii(module, n):
    centers, radii = module.construct_packing(n)
    problem = check(centers, radii, n)
    if problem:
        raise ValueError(f"n = {n}: {problem}")
    return float(sum(float(r) for r in radii))


def evaluate(program_path):
    """n = 26, the only size the search sees."""
    total = _sum_of_radii(_load(program_path), N)
    return {"score": total, "fraction_of_best_known": total / BEST_KNOWN}


def evaluate_test(program_path):
    """Held-out sizes: the mean sum of radii over n = 20, 24, 28, 32."""
    module = _load(program_path)
    sums = {n: _sum_of_radii(module, n) for n in TEST_SIZES}
    per_size = {f"sum_of_radii_n{n}": total for n, total in sums.items()}
    return {"score": sum(sums.values()) / len(sums), **per_size}
