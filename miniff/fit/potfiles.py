"""Potential files (kept for imports inside ``miniff.fit``; the implementation is ``miniff.ml.serialize``)."""

from miniff.ml.serialize import load_potentials, load_potentials_014, save_potentials, torch_load

__all__ = ["save_potentials", "load_potentials", "load_potentials_014", "torch_load"]
