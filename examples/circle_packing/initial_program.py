"""Pack n circles in the unit square (26 in the benchmark), maximising the sum of their radii.

The seed is a construction (a grid whose odd rows may shift) and a local optimiser: the
largest radii for the centres (a linear program), then sequential quadratic programming on
centres and radii together. The construction's shift and the optimiser's iterations are
PARAMS, fitted by the refine stage."""

import numpy as np
from scipy.optimize import linprog, minimize


def largest_radii(centers):
    """The radii of largest sum for fixed centres: r_i + r_j <= |c_i - c_j| and each circle
    inside the square (a linear program), then shrunk where the solver's tolerance left an
    overlap."""
    n = len(centers)
    rows, bounds = [], []
    for i in range(n):
        for j in range(i + 1, n):
            row = np.zeros(n)
            row[i] = row[j] = 1.0
            rows.append(row)
            bounds.append(np.linalg.norm(centers[i] - centers[j]))
    walls = np.minimum(centers, 1 - centers).min(axis=1)
    result = linprog(
        -np.ones(n),
        A_ub=np.array(rows),
        b_ub=np.array(bounds),
        bounds=[(0, max(w, 0)) for w in walls],
        method="highs",
    )
    radii = np.clip(result.x, 0, walls) if result.success else np.zeros(n)
    distances = np.linalg.norm(centers[:, None] - centers[None], axis=2) + np.eye(n)
    ratio = np.minimum(1.0, distances / np.maximum(radii[:, None] + radii[None], 1e-300))
    return radii * ratio.min(axis=1) * (1 - 1e-12)


def polish(centers, radii, iterations):
    """Move centres and radii together (SLSQP) for at most `iterations` steps."""
    n = len(centers)
    if iterations < 1:
        return centers
    pairs = np.array([(i, j) for i in range(n) for j in range(i + 1, n)])

    def gaps(z):
        c, r = z[: 2 * n].reshape(n, 2), z[2 * n :]
        i, j = pairs[:, 0], pairs[:, 1]
        apart = np.linalg.norm(c[i] - c[j], axis=1) - r[i] - r[j]
        inside = np.concatenate([c[:, 0] - r, 1 - c[:, 0] - r, c[:, 1] - r, 1 - c[:, 1] - r])
        return np.concatenate([apart, inside])

    result = minimize(
        lambda z: -z[2 * n :].sum(),
        np.concatenate([centers.ravel(), radii]),
        constraints=[{"type": "ineq", "fun": gaps}],
        method="SLSQP",
        bounds=[(0, 1)] * (2 * n) + [(0, 0.5)] * n,
        options={"maxiter": int(iterations)},
    )
    return np.clip(result.x[: 2 * n].reshape(n, 2), 0, 1)


# EVOLVE-BLOCK-START
def construct_packing(n=26):
    """Return (centers, radii): centers is an n x 2 array, radii has n entries."""
    PARAMS = [0.0, 10.0]  # shift of the odd rows (share of a cell), optimiser iterations
    k = int(np.ceil(np.sqrt(n)))
    centers = []
    for i in range(n):
        row, col = divmod(i, k)
        x = (col + 0.5 + PARAMS[0] * (row % 2)) / k
        centers.append((min(max(x, 0.0), 1.0), (row + 0.5) / k))
    centers = np.array(centers)
    centers = polish(centers, largest_radii(centers), PARAMS[1])
    return centers, largest_radii(centers)


# EVOLVE-BLOCK-END
