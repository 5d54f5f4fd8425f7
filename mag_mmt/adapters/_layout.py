"""Row layouts of other repositories' training batches -> the library's batch convention.

AGW, CAJ and TSLFN never pass a modality vector: the modality of a feature row follows from
*where* it sits in the batch. A **layout** names that: a tuple of modality codes, one per
equal-size block of rows, in row order (``0`` visible, ``1`` thermal; see
docs/method.md#task-and-batch-convention)::

    AGW_LAYOUT = (VISIBLE, THERMAL)            # net(input1, input2) -> rows [V | T]
    CAJ_LAYOUT = (VISIBLE, VISIBLE, THERMAL)   # net(cat(input10, input11), input2) -> [V0 | V1 | T]

:func:`layout_modalities` turns a layout and a row count into the ``(N,)`` modality vector,
and :func:`layout_batch` also checks features and labels against the layout (row count
divisible by the number of blocks, label length, same device; with ``validate=True`` the
blocks that must carry the same identities do so, in one host read). Every adapter goes
through these two functions, so the layout logic lives here once.
"""

from __future__ import annotations

from typing import Sequence

import torch

from mag_mmt._validation import (
    check_floating,
    check_integer,
    check_same_device,
    check_same_length,
    check_tensor,
    check_values,
)
from mag_mmt.modalities import MODALITY_NAMES as _NAMES
from mag_mmt.modalities import MODALITIES, THERMAL, VISIBLE

__all__ = [
    "AGW_LAYOUT",
    "CAJ_LAYOUT",
    "Layout",
    "check_layout",
    "block_size",
    "layout_modalities",
    "layout_batch",
]

Layout = Sequence[int]

AGW_LAYOUT: tuple[int, ...] = (VISIBLE, THERMAL)
CAJ_LAYOUT: tuple[int, ...] = (VISIBLE, VISIBLE, THERMAL)


def check_layout(layout: Layout) -> tuple[int, ...]:
    """``layout`` must be a non-empty sequence of modality codes 0 / 1; returns it as a tuple."""
    codes = tuple(layout)
    if not codes:
        raise ValueError("layout must name at least one block of rows, got an empty layout")
    for code in codes:
        if isinstance(code, bool) or code not in MODALITIES:
            raise ValueError(
                f"layout entries must be modality codes {VISIBLE} (visible) or "
                f"{THERMAL} (thermal), got {codes!r}"
            )
    return codes


def describe_layout(layout: Layout) -> str:
    """``(0, 0, 1)`` -> ``"[visible | visible | thermal]"`` (for error messages)."""
    return "[" + " | ".join(_NAMES[c] for c in check_layout(layout)) + "]"


def block_size(n_rows: int, layout: Layout, *, what: str = "features") -> int:
    """Rows per block: ``n_rows / len(layout)``; ``ValueError`` when it does not divide.

    Example:
        >>> block_size(12, (0, 0, 1))
        4
    """
    codes = check_layout(layout)
    blocks = len(codes)
    if n_rows <= 0 or n_rows % blocks != 0:
        raise ValueError(
            f"{what} must hold {blocks} equal blocks of rows {describe_layout(codes)}, "
            f"got {n_rows} rows ({n_rows} is not a positive multiple of {blocks})"
        )
    return n_rows // blocks


def layout_modalities(
    n_rows: int, layout: Layout, *, device: torch.device | str | None = None
) -> torch.Tensor:
    """The ``(n_rows,)`` int64 modality vector of a batch laid out as ``layout``.

    Built on ``device`` without any host-device synchronisation.

    Example:
        >>> layout_modalities(6, (0, 0, 1))
        tensor([0, 0, 0, 0, 1, 1])
    """
    codes = check_layout(layout)
    size = block_size(n_rows, codes)
    code_tensor = torch.tensor(codes, dtype=torch.long, device=device)
    return code_tensor.unsqueeze(1).expand(len(codes), size).reshape(-1)


def layout_batch(
    features: torch.Tensor,
    labels: torch.Tensor,
    layout: Layout,
    *,
    same_label_blocks: Sequence[tuple[int, int]] = (),
    validate: bool = True,
    repo: str = "this",
    hint: str = "are the features in this repo's row order?",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Check a ``(features, labels)`` batch against ``layout`` and build its modalities.

    Args:
        features: ``(N, D)`` floating, rows laid out as ``layout`` (equal blocks).
        labels: ``(N,)`` integer identity labels, same row order.
        layout: modality code of each block, e.g. :data:`AGW_LAYOUT`.
        same_label_blocks: pairs of block indices whose labels must agree row by row
            (e.g. CAJ's two visible views of the same images; the visible and thermal blocks
            of a paired identity sampler). Checked only when ``validate``.
        validate: run the value check above (one host read); shape, dtype and device checks
            always run.
        repo: name used in error messages.
        hint: appended to the label-agreement error message.

    Returns:
        ``(features, labels, modalities)``: the inputs unchanged and the ``(N,)`` int64
        modality vector on the features' device.

    Example:
        >>> import torch
        >>> x, y = torch.randn(4, 8), torch.tensor([3, 5, 3, 5])
        >>> layout_batch(x, y, (0, 1), same_label_blocks=[(0, 1)])[2]
        tensor([0, 0, 1, 1])
    """
    check_tensor(features, "features", 2)
    check_floating(features, "features")
    check_tensor(labels, "labels", 1)
    check_integer(labels, "labels")
    check_same_length("features", features, "labels", labels)
    check_same_device(features=features, labels=labels)
    codes = check_layout(layout)
    size = block_size(features.shape[0], codes, what=f"{repo} features")
    modalities = layout_modalities(features.shape[0], codes, device=features.device)
    if validate and same_label_blocks:
        blocks = labels.view(len(codes), size)
        checks = []
        for i, j in same_label_blocks:
            checks.append(
                (
                    (blocks[i] == blocks[j]).all(),
                    f"{repo} layout {describe_layout(codes)}: labels of block {i} "
                    f"({_NAMES[codes[i]]}) and block {j} ({_NAMES[codes[j]]}) must agree row by "
                    f"row (rows {i * size}..{(i + 1) * size - 1} vs {j * size}..{(j + 1) * size - 1}); "
                    f"{hint}",
                )
            )
        check_values(checks)
    return features, labels, modalities
