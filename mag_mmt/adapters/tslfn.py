"""Drop-in MMT criterion for TSLFN / hetero-center loss
(98zyx/Hetero-center-loss-for-cross-modality-person-re-id).

TSLFN's ``embed_net`` returns, in training mode, ``(outputs, feat)``: 6 part logits and 6
L2-normalised part embeddings, each ``(2B, .)`` with the B visible rows first. Its
``train.py`` adds, per part ``k``, a hetero-center term on the two halves::

    het_featk = feat[k].chunk(2, 0)
    loss_ck = criterion_het(het_featk[0], het_featk[1], label1, label2)   # hetero_loss
    lossk = criterion(outputs[k], labels) + w_hc * loss_ck                # w_hc = 0.5

:class:`MMTCriterion` has ``hetero_loss``'s call: ``criterion(feat_visible, feat_thermal,
label_visible, label_thermal) -> loss``, so it replaces ``criterion_het`` (or is added beside
it) one part at a time; :meth:`MMTCriterion.parts` does all parts of ``feat`` at once. It
returns exactly :func:`mag_mmt.functional.multi_masking_triplet_loss` on the visible rows
(modality 0) followed by the thermal rows (modality 1). The part embeddings are unit vectors,
so Euclidean distances lie in ``[0, 2]``: the default margins (0.3 / 0.1) apply on that scale.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from mag_mmt._validation import (
    check_floating,
    check_integer,
    check_same_device,
    check_same_length,
    check_tensor,
    check_values,
)
from mag_mmt.adapters._layout import AGW_LAYOUT, block_size
from mag_mmt.functional.triplet import concat_modalities
from mag_mmt.losses import MultiMaskingTripletLoss

__all__ = ["tslfn_batch", "MMTCriterion"]


def tslfn_batch(
    feat_visible: torch.Tensor,
    feat_thermal: torch.Tensor,
    label_visible: torch.Tensor,
    label_thermal: torch.Tensor,
    *,
    paired: bool = True,
    validate: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """TSLFN's two-tensor layout -> ``(features, labels, modalities)``.

    Args:
        feat_visible: ``(B_v, D)`` visible rows (``feat[k].chunk(2, 0)[0]``).
        feat_thermal: ``(B_t, D)`` thermal rows (``feat[k].chunk(2, 0)[1]``).
        label_visible, label_thermal: ``(B_v,)``, ``(B_t,)`` integer labels (``label1``, ``label2``).
        paired: TSLFN's ``IdentitySampler`` pairs rows (visible ``i`` and thermal ``i`` share an
            identity): require ``B_v == B_t`` and, with ``validate``, ``label1 == label2``. Set
            ``False`` to allow any two blocks (then ``B_v != B_t`` is fine).
        validate: run the label check (one host read).

    Returns:
        ``(cat(feat_visible, feat_thermal), cat(labels), [0]*B_v + [1]*B_t)``.

    Example:
        >>> import torch
        >>> y = torch.tensor([2, 3])
        >>> tslfn_batch(torch.randn(2, 4), torch.randn(2, 4), y, y)[2]
        tensor([0, 0, 1, 1])
    """
    for name, x in (("feat_visible", feat_visible), ("feat_thermal", feat_thermal)):
        check_tensor(x, name, 2)
        check_floating(x, name)
    for name, y in (("label_visible", label_visible), ("label_thermal", label_thermal)):
        check_tensor(y, name, 1)
        check_integer(y, name)
    check_same_length("feat_visible", feat_visible, "label_visible", label_visible)
    check_same_length("feat_thermal", feat_thermal, "label_thermal", label_thermal)
    check_same_device(
        feat_visible=feat_visible, feat_thermal=feat_thermal,
        label_visible=label_visible, label_thermal=label_thermal,
    )
    if feat_visible.shape[0] == 0 or feat_thermal.shape[0] == 0:
        raise ValueError(
            f"TSLFN batch needs visible and thermal rows, got {feat_visible.shape[0]} visible and "
            f"{feat_thermal.shape[0]} thermal"
        )
    if paired:
        if feat_visible.shape[0] != feat_thermal.shape[0]:
            raise ValueError(
                f"TSLFN's sampler pairs rows: feat_visible and feat_thermal must have the same "
                f"number of rows, got {feat_visible.shape[0]} and {feat_thermal.shape[0]} "
                "(pass paired=False for unpaired blocks)"
            )
        if validate:
            check_values([(
                (label_visible == label_thermal).all(),
                "TSLFN layout: label_visible and label_thermal must agree row by row (TSLFN's "
                "IdentitySampler pairs them); are the halves of feat[k] in the order "
                "(visible, thermal)? Pass paired=False if your sampler does not pair rows",
            )])
    return concat_modalities(feat_visible, feat_thermal, label_visible, label_thermal)


class MMTCriterion(nn.Module):
    """MMT in place of (or beside) TSLFN's ``hetero_loss`` for one part.

    Args:
        paired: see :func:`tslfn_batch`.
        validate: value checks of the layout and of MMT; ``False`` makes a call sync-free.
        **mmt_kwargs: forwarded to :class:`mag_mmt.MultiMaskingTripletLoss` (``margin=0.3``,
            ``pos_margin=0.1``, ``pos_weight=1.0``, ...).

    Call ``criterion(feat_visible (B, D), feat_thermal (B, D), label_visible (B,),
    label_thermal (B,))`` -> 0-d loss.

    Example:
        >>> import torch
        >>> from mag_mmt.adapters import tslfn
        >>> criterion_mmt = tslfn.MMTCriterion()
        >>> feat = torch.nn.functional.normalize(torch.randn(8, 16), dim=1).requires_grad_()
        >>> label1 = label2 = torch.tensor([0, 0, 1, 1])
        >>> het = feat.chunk(2, 0)                               # (visible, thermal)
        >>> loss_c0 = criterion_mmt(het[0], het[1], label1, label2)
        >>> loss_c0.backward(); loss_c0.dim()
        0
    """

    def __init__(self, *, paired: bool = True, validate: bool = True, **mmt_kwargs: Any) -> None:
        super().__init__()
        self.paired = bool(paired)
        self.validate = bool(validate)
        self.mmt = MultiMaskingTripletLoss(validate=validate, **mmt_kwargs)

    def _loss(self, fv, ft, lv, lt, validate: bool) -> torch.Tensor:
        features, labels, modalities = tslfn_batch(fv, ft, lv, lt, paired=self.paired, validate=validate)
        return self.mmt(features, labels, modalities)

    def forward(
        self,
        feat_visible: torch.Tensor,
        feat_thermal: torch.Tensor,
        label_visible: torch.Tensor,
        label_thermal: torch.Tensor,
    ) -> torch.Tensor:
        return self._loss(feat_visible, feat_thermal, label_visible, label_thermal, self.validate)

    def parts(
        self, feat: Sequence[torch.Tensor], label1: torch.Tensor, label2: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        """One loss per part of the training forward's ``feat`` (6 tensors ``(2B, d)``, rows
        ``[visible | thermal]``); the labels are checked once, on the first part.

        Example:
            >>> import torch
            >>> feat = tuple(torch.randn(8, 4) for _ in range(6))
            >>> y = torch.tensor([0, 0, 1, 1])
            >>> len(MMTCriterion().parts(feat, y, y))
            6
        """
        if isinstance(feat, torch.Tensor) or len(feat) == 0:
            raise ValueError("feat must be a non-empty sequence of part features (2B, d)")
        losses = []
        for k, f in enumerate(feat):
            check_tensor(f, f"feat[{k}]", 2)
            b = block_size(f.shape[0], AGW_LAYOUT, what=f"TSLFN feat[{k}]")
            losses.append(self._loss(f[:b], f[b:], label1, label2, self.validate and k == 0))
        return tuple(losses)

    def extra_repr(self) -> str:
        return f"paired={self.paired}, validate={self.validate}"
