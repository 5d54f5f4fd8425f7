"""Modality codes and the batch convention, defined once for the whole library.

A batch of embeddings comes with ``labels`` ``(N,)`` (identities) and ``modalities`` ``(N,)``
holding :data:`VISIBLE` (0) or :data:`THERMAL` (1, thermal or near-infrared). Two-tensor
layouts (a visible batch and a thermal batch) are concatenated visible rows first.

>>> from mag_mmt.modalities import MODALITY_NAMES, THERMAL, VISIBLE
>>> (VISIBLE, THERMAL), MODALITY_NAMES[THERMAL]
((0, 1), 'thermal')
"""

from __future__ import annotations

__all__ = ["VISIBLE", "THERMAL", "MODALITIES", "MODALITY_NAMES"]

#: code of a visible (RGB) image or embedding
VISIBLE = 0
#: code of a thermal / infrared image or embedding
THERMAL = 1
#: every valid code, in batch order (visible rows first)
MODALITIES: tuple[int, int] = (VISIBLE, THERMAL)
#: code -> name used in messages and tables
MODALITY_NAMES: dict[int, str] = {VISIBLE: "visible", THERMAL: "thermal"}
