"""Moved to :mod:`mag_mmt.functional.distances`; this name stays for existing imports."""
from mag_mmt.functional.distances import *  # noqa: F401,F403
