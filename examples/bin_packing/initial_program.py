"""Online bin packing with FunSearch's skeleton: `priority(item, bins)` scores the bins that
can take `item`; the item goes to the bin with the highest priority. Best fit is the seed."""

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
    return -(bins - item)
