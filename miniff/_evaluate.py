"""Evaluation of potentials on a NeighborWrapper (placeholder; see DEVELOPING.md, Contract 4)."""


class EvaluationMixin:
    """Provides eval/total/grad/stress/relax to NeighborWrapper (being implemented)."""
