"""The functional core of mag-mmt: plain functions that the ``nn.Module`` classes wrap.

Every name here is defined in its concept's own module and only re-exported here, so there
is one implementation of each idea.
"""

from __future__ import annotations

__all__: list[str] = []
