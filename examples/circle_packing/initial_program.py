"""Pack 26 circles in the unit square, maximising the sum of their radii."""

import numpy as np


# EVOLVE-BLOCK-START
def construct_packing():
    """Return (centers, radii): centers is a 26 x 2 array, radii has 26 entries."""
    n = 26
    k = 6
    centers = []
    for i in range(n):
        row, col = divmod(i, k)
        centers.append(((col + 0.5) / k, (row + 0.5) / k))
    radii = [0.5 / k] * n
    return np.array(centers), np.array(radii)


# EVOLVE-BLOCK-END
