"""Drop-in MMT criterion for CAJ (mangye16/Cross-Modal-Re-ID-baseline, ``ICCV21_CAJ/``).

CAJ's ``train_ext.py`` feeds two *visible* views of every visible image, each from its own
pipeline in ``data_loader.py`` (``input10``: pad, random crop, flip, normalise, channel random
erasing; ``input11``: the same steps drawn independently -- its own crop, flip and erasing, so
not pixel-aligned with ``input10`` -- then ``ChannelExchange``, one colour channel copied to
all three) and one thermal view::

    labels = torch.cat((label1, label1, label2), 0)
    input1 = torch.cat((input10, input11,), 0)
    feat, out0, = net(input1, input2)                # feat: (3B, 2048), rows [V0 | V1 | T]
    loss_tri, batch_acc = criterion_tri(feat, labels)   # TripletLoss_ADP -> (loss, int)

Both visible views go through the visible branch, so both blocks are *visible* rows:
:class:`MMTCriterion` builds the modalities ``[0]*B + [0]*B + [1]*B`` and returns exactly MMT on
them. The two views of one image are then two visible samples of the same identity: neither is
a positive or a negative of the other under the default ``"cross"`` masks; each is an anchor
against the thermal rows, and each thermal anchor sees both views as positives/negatives.

``correct`` keeps the meaning of ``TripletLoss_ADP``'s (the same count as AGW's, with CAJ's
``--alpha`` as ``correct_alpha``); see :func:`mag_mmt.adapters.agw.triplet_correct`.

MAG goes after the loader, on the device, before ``net``: :func:`augment_caj_batch`.
"""

from __future__ import annotations

from typing import Callable, Literal

import torch

from mag_mmt._validation import check_tensor
from mag_mmt.adapters._layout import CAJ_LAYOUT, layout_batch
from mag_mmt.adapters.agw import _TripletCriterion

__all__ = ["caj_batch", "augment_caj_batch", "MMTCriterion"]

Augment = Callable[[torch.Tensor, torch.Tensor], "tuple[torch.Tensor, torch.Tensor]"]


def caj_batch(
    feat: torch.Tensor, labels: torch.Tensor, *, paired: bool = True, validate: bool = True
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """CAJ's ``(feat, labels)`` -> ``(features, labels, modalities)``.

    Args:
        feat: ``(3B, D)``, rows ``[visible view 0 (B) | visible view 1 (B) | thermal (B)]``.
        labels: ``(3B,)`` ``torch.cat((label1, label1, label2))``.
        paired: also check ``label1 == label2`` row by row (CAJ's ``IdentitySampler`` pairs
            rows); ``False`` for a sampler that does not.
        validate: run the value checks (one host read): the two view blocks must carry the
            same labels (always true for CAJ's batch, so a mismatch means a wrong layout),
            and with ``paired`` the thermal block too.

    Returns:
        the features and labels unchanged and the ``(3B,)`` modality vector ``[0, 0, 1]``
        repeated per block.

    Example:
        >>> import torch
        >>> caj_batch(torch.randn(6, 8), torch.tensor([4, 5, 4, 5, 4, 5]))[2]
        tensor([0, 0, 0, 0, 1, 1])
    """
    pairs = [(0, 1), (0, 2)] if paired else [(0, 1)]
    return layout_batch(
        feat, labels, CAJ_LAYOUT, same_label_blocks=pairs, validate=validate, repo="CAJ",
        hint="expected CAJ's rows [input10 | input11 | input2] with labels "
        "torch.cat((label1, label1, label2)); pass paired=False if your sampler does not pair "
        "visible and thermal identities row by row",
    )


def augment_caj_batch(
    aug: Augment,
    input10: torch.Tensor,
    input11: torch.Tensor,
    input2: torch.Tensor,
    *,
    views: Literal["both", "first"] = "both",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Apply MAG (``aug(visible, thermal) -> (visible', thermal')``) to a CAJ batch.

    Call it after moving the batch to the device, before ``torch.cat((input10, input11))``.
    The channel augmentations stay where CAJ has them (in the dataset transforms), so MAG
    exchanges boxes between already channel-augmented views.

    Args:
        aug: e.g. :class:`mag_mmt.ModalityAugment`; pairs are aligned by index.
        input10, input11: ``(B, C, H, W)`` the two visible views of the same images.
        input2: ``(B, C, H, W)`` the thermal images, ``input2[i]`` the partner of both views ``i``.
        views: ``"both"`` (default): each visible view exchanges a box with the thermal image
            (one batched call on ``2B`` pairs, independent boxes); the thermal view returned is
            the one exchanged with view 0 (a thermal row appears once in CAJ's batch, so view 1's
            copy is dropped). ``"first"``: only ``input10`` and ``input2`` exchange; the
            channel-exchanged ``input11`` is left as it is.

    Returns:
        ``(input10', input11', input2')`` with the input shapes, rows still aligned.

    Example:
        >>> import torch
        >>> from mag_mmt import ModalityAugment
        >>> v0, v1, t = torch.rand(4, 3, 32, 16), torch.rand(4, 3, 32, 16), torch.rand(4, 3, 32, 16)
        >>> a, b, c = augment_caj_batch(ModalityAugment(p=1.0), v0, v1, t)
        >>> a.shape == v0.shape and b.shape == v1.shape and c.shape == t.shape
        True
    """
    check_tensor(input10, "input10", 4)
    check_tensor(input11, "input11", 4)
    check_tensor(input2, "input2", 4)
    b = input10.shape[0]
    if input11.shape != input10.shape:
        raise ValueError(
            f"input10 and input11 are two views of the same images and must have the same shape, "
            f"got {tuple(input10.shape)} and {tuple(input11.shape)}"
        )
    if input2.shape[0] != b:
        raise ValueError(
            f"input2 must hold one thermal image per visible image ({b}), got {input2.shape[0]}"
        )
    if views == "first":
        v0, t = aug(input10, input2)
        return v0, input11, t
    if views != "both":
        raise ValueError(f"views must be 'both' or 'first', got {views!r}")
    v, t = aug(torch.cat((input10, input11), 0), torch.cat((input2, input2), 0))
    return v[:b], v[b:], t[:b]


class MMTCriterion(_TripletCriterion):
    """MMT in place of CAJ's ``TripletLoss_ADP``: ``criterion(feat, labels) -> (loss, correct)``.

    Args:
        paired: check that the thermal block's labels equal the visible ones row by row
            (CAJ's sampler pairs rows); see :func:`caj_batch`.
        validate: value checks of the layout and of MMT; ``False`` skips them.
        correct: ``"repo"`` (default, ``TripletLoss_ADP``'s count) or ``"mmt"``.
        correct_as_tensor: return ``correct`` as a 0-d int64 tensor instead of an ``int``.
        correct_alpha: CAJ's ``--alpha`` for the ``"repo"`` count (default 1, as in
            ``main.sh``).
        **mmt_kwargs: forwarded to :class:`mag_mmt.MultiMaskingTripletLoss`.

    Example:
        >>> import torch
        >>> from mag_mmt.adapters import caj
        >>> criterion_tri = caj.MMTCriterion()
        >>> label1 = label2 = torch.tensor([0, 0, 1, 1])
        >>> feat = torch.randn(12, 16, requires_grad=True)     # [view 0 | view 1 | thermal]
        >>> loss_tri, batch_acc = criterion_tri(feat, torch.cat((label1, label1, label2)))
        >>> loss_tri.backward(); 0 <= batch_acc <= 12
        True
    """

    def build_batch(self, feat: torch.Tensor, labels: torch.Tensor):
        return caj_batch(feat, labels, paired=self.paired, validate=self.validate)
