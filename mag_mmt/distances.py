"""Alias of :mod:`mag_mmt.functional.distances` (``pairwise_distance``, ``indexed_distance``, ...)."""
from mag_mmt.functional.distances import *  # noqa: F401,F403
