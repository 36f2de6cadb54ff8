"""Online bin packing with FunSearch's skeleton: `priority(item, bins)` scores the bins that
can take `item`; the item goes to the bin with the highest priority. The seed is best fit
with three weighted terms whose weights (PARAMS) the refine stage fits; at their default
values, zero, it is best fit exactly."""

import numpy as np


def online_binpack(items, bins):
    """Pack `items` in order; `bins` holds the remaining capacity of each (initially empty) bin."""
    packing = [[] for _ in bins]
    for item in items:
        valid = np.nonzero((bins - item) >= 0)[0]
        priorities = priority(item, bins[valid])
        best = valid[np.argmax(priorities)]
        bins[best] -= item
        packing[best].append(item)
    return [b for b in packing if b], bins


def priority(item: float, bins: np.ndarray) -> np.ndarray:
    """Returns priority with which we want to add item to each bin.

    Args:
        item: Size of item to be added to the bin.
        bins: Array of capacities for each bin.

    Return:
        Array of same size as bins with priority score of each bin.
    """
    PARAMS = [0.0, 0.0, 0.0]
    capacity = bins.max()  # an empty bin is always among the bins offered
    room = (bins - item) / capacity  # what each bin would have left, as a share of a bin
    size = item / capacity
    small_gap = (room > 0) * np.exp(-20.0 * room)  # a gap too small to use again
    return -room + PARAMS[0] * room**2 + PARAMS[1] * size * room + PARAMS[2] * small_gap
