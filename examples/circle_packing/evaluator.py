"""Circle packing: 26 circles in the unit square, maximise the sum of radii. Strict
validity: every circle inside the square and no two overlapping (tolerance 1e-12). Best
known: 2.6358627564; AlphaEvolve 2.635; OpenEvolve reported 2.634292. Score: the sum of
radii of a valid packing."""

import importlib.util
import math

N = 26
BEST_KNOWN = 2.6358627564
TOL = 1e-12


def _load(path):
    spec = importlib.util.spec_from_file_location("candidate", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def check(centers, radii):
    centers = [tuple(float(c) for c in p) for p in centers]
    radii = [float(r) for r in radii]
    if len(centers) != N or len(radii) != N or any(len(p) != 2 for p in centers):
        return f"need {N} centers (x, y) and {N} radii"
    for i, ((x, y), r) in enumerate(zip(centers, radii, strict=True)):
        if not all(math.isfinite(v) for v in (x, y, r)) or r <= 0:
            return f"circle {i}: radius {r} at ({x}, {y}) is not a positive finite circle"
        if x - r < -TOL or x + r > 1 + TOL or y - r < -TOL or y + r > 1 + TOL:
            return f"circle {i} leaves the unit square"
    for i in range(N):
        for j in range(i + 1, N):
            gap = math.dist(centers[i], centers[j]) - radii[i] - radii[j]
            if gap < -TOL:
                return f"circles {i} and {j} overlap by {-gap:.3g}"
    return None


def evaluate(program_path):
    centers, radii = _load(program_path).construct_packing()
    problem = check(centers, radii)
    if problem:
        return {"error": problem}
    total = float(sum(float(r) for r in radii))
    return {"score": total, "fraction_of_best_known": total / BEST_KNOWN}
