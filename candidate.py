"""Toy task: make value() large."""

# EVOLVE-BLOCK-START
def value():
    """Return a number; bigger is better (at most 10 counts)."""
    x = 1
    return x
# EVOLVE-BLOCK-END
