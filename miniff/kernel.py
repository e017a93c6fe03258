"""Structures and neighbour lists (placeholder until the neighbour-list work lands)."""

from miniff._compiled import kernel_module  # noqa: F401  (fails with build instructions when unbuilt)
