"""Cap sets in F_3^n with FunSearch's greedy skeleton: vectors are added in decreasing
`priority` order whenever no three of the chosen vectors lie on a line. The seed's priority
weighs counts of the vector's entries with PARAMS, fitted by the refine stage; at their
defaults, zero, it is the constant priority."""

import itertools

import numpy as np


def build_cap_set(n: int) -> np.ndarray:
    """Greedily builds a cap set in F_3^n, in the order given by `priority`."""
    vectors = np.array(list(itertools.product((0, 1, 2), repeat=n)), dtype=np.int32)
    powers = 3 ** np.arange(n - 1, -1, -1)
    priorities = np.array([priority(tuple(int(x) for x in v), n) for v in vectors])
    blocked = np.zeros(len(vectors), dtype=bool)
    chosen = []
    for index in np.argsort(-priorities, kind="stable"):
        if blocked[index]:
            continue
        vector = vectors[index]
        if chosen:
            # the third point on the line through `vector` and each chosen point
            thirds = (-(np.array(chosen) + vector)) % 3
            blocked[thirds @ powers] = True
        chosen.append(vector)
        blocked[index] = True
    return np.array(chosen)


def priority(el: tuple[int, ...], n: int) -> float:
    """Returns the priority with which we want to add `el` to the cap set."""
    PARAMS = [0.0, 0.0, 0.0]
    zeros, ones = el.count(0), el.count(1)
    return PARAMS[0] * zeros + PARAMS[1] * ones + PARAMS[2] * zeros * ones
