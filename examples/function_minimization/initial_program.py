"""Find the global minimum of f(x, y) = sin(x)·cos(y) + sin(x·y) + (x² + y²)/20."""

import numpy as np


def f(x, y):
    return np.sin(x) * np.cos(y) + np.sin(x * y) + (x**2 + y**2) / 20


# EVOLVE-BLOCK-START
def search(seed=0):
    """Return (x, y) where f is as small as possible, using at most 2000 calls of f."""
    PARAMS = [100.0, 5.0, 0.0, 0.1]  # random samples, their range, local share, local step
    rng = np.random.default_rng(seed)
    best_x, best_y = rng.uniform(-PARAMS[1], PARAMS[1], 2)
    best = f(best_x, best_y)
    samples = min(int(PARAMS[0]), 1900)
    for _ in range(samples):
        x, y = rng.uniform(-PARAMS[1], PARAMS[1], 2)
        value = f(x, y)
        if value < best:
            best, best_x, best_y = value, x, y
    for _ in range(int(min(max(PARAMS[2], 0.0), 1.0) * (1900 - samples))):  # local steps
        x, y = best_x + rng.normal(0, PARAMS[3]), best_y + rng.normal(0, PARAMS[3])
        value = f(x, y)
        if value < best:
            best, best_x, best_y = value, x, y
    return best_x, best_y


# EVOLVE-BLOCK-END
