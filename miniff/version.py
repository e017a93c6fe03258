"""The version of miniff (single source for the package metadata)."""

__version__ = "0.2.0.dev0"
