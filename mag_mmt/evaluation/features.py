"""Features and distances: :func:`extract_features` runs a model over sample records once,
:func:`distance_matrix` turns query and gallery features into a ``(Q, G)`` distance matrix.
"""

from __future__ import annotations

from typing import Any, Callable, Literal, Sequence

import torch

from mag_mmt.data.records import Sample
from mag_mmt.errors import UserError
from mag_mmt.functional.distances import pairwise_distance
from mag_mmt.modalities import VISIBLE

__all__ = ["extract_features", "distance_matrix"]

Distance = Literal["euclidean", "cosine"]
#: ``forward(x, modal) -> (B, D)`` features (or a tuple/list ending with them)
ForwardFn = Callable[[torch.Tensor, int], Any]


def extract_features(
    model: torch.nn.Module,
    samples: Sequence[Sample],
    *,
    loader: Callable[[Sample], torch.Tensor] | None = None,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    size: tuple[int, int] | None = None,
    batch_size: int = 64,
    device: torch.device | str | None = None,
    flip: bool = False,
    modal: int | None = None,
    forward: ForwardFn | None = None,
    num_workers: int = 0,
) -> torch.Tensor:
    """Features of ``samples`` from ``model`` in eval mode, in the order of ``samples``.

    The model follows AGW's test-time contract ``model(x1, x2, modal)``: ``modal=1`` reads
    the visible input ``x1``, ``modal=2`` the thermal input ``x2``; the batch is passed as
    both. ``modal=None`` picks it per sample (1 for visible, 2 for thermal; batches hold one
    modality). A model returning a tuple/list (AGW: ``(pooled, bn_feature)``) gives its
    **last** element; pass ``forward(x, modal) -> (B, D)`` to call it differently.

    Args:
        model: the network; put in eval mode for the call and restored afterwards.
        samples: the records.
        loader, transform, size: as :class:`mag_mmt.data.images.ImageDataset` (``loader``
            defaults to reading ``sample.path``; ``size`` resizes to ``(H, W)``;
            ``transform`` runs on the float ``[0, 1]`` image, e.g. normalisation).
        batch_size: images per forward pass.
        device: where the model runs (default: the device of its first parameter).
        flip: average the features of each image and its horizontal flip.
        modal: force ``1`` or ``2`` for every sample.
        forward: custom ``forward(x, modal)``.
        num_workers: ``DataLoader`` workers.

    Returns:
        ``(N, D)`` float32 tensor on ``device``.

    Example:
        >>> import torch
        >>> from mag_mmt.data.records import Sample
        >>> class Net(torch.nn.Module):
        ...     def forward(self, x1, x2, modal):
        ...         x = x1 if modal == 1 else x2
        ...         return x.mean(dim=(2, 3))
        >>> s = [Sample("a", 0, 1, 0), Sample("b", 0, 3, 1)]
        >>> f = extract_features(Net(), s, loader=lambda s: torch.zeros(3, 4, 2, dtype=torch.uint8))
        >>> tuple(f.shape)
        (2, 3)
    """
    from torch.utils.data import DataLoader, Subset

    from mag_mmt.data.images import ImageDataset

    if not isinstance(batch_size, int) or batch_size < 1:
        raise UserError(f"batch_size must be a positive int, got {batch_size!r}")
    if modal not in (None, 1, 2):
        raise UserError(f"modal must be None, 1 (visible) or 2 (thermal), got {modal!r}")
    if len(samples) == 0:
        raise UserError("extract_features needs at least one sample")
    if device is None:
        param = next(iter(model.parameters()), None)
        device = param.device if param is not None else torch.device("cpu")
    device = torch.device(device)
    if forward is None:

        def forward(x: torch.Tensor, m: int) -> Any:
            return model(x, x, m)

    def run(x: torch.Tensor, m: int) -> torch.Tensor:
        out = forward(x, m)
        if isinstance(out, (tuple, list)):
            out = out[-1]
        if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != x.shape[0]:
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise UserError(f"the model must return (B, D) features for a batch of {x.shape[0]}, got {shape}")
        return out.float()

    dataset = ImageDataset(samples, loader=loader, transform=transform, size=size)
    groups: dict[int, list[int]] = {}
    for i, s in enumerate(samples):
        m = modal if modal is not None else (1 if s.modality == VISIBLE else 2)
        groups.setdefault(m, []).append(i)

    was_training = model.training
    model.eval()
    feats: torch.Tensor | None = None
    try:
        with torch.no_grad():
            for m, indices in sorted(groups.items()):
                batches = DataLoader(Subset(dataset, indices), batch_size=batch_size, shuffle=False, num_workers=num_workers)
                done = 0
                for images, *_ in batches:
                    x = images.to(device, non_blocking=True)
                    f = run(x, m)
                    if flip:
                        f = (f + run(x.flip(-1), m)) / 2
                    if feats is None:
                        feats = torch.empty(len(samples), f.shape[1], dtype=torch.float32, device=device)
                    rows = torch.tensor(indices[done : done + x.shape[0]], device=device)
                    feats.index_copy_(0, rows, f.to(device))
                    done += x.shape[0]
    finally:
        model.train(was_training)
    assert feats is not None
    return feats


def distance_matrix(
    query_feats: torch.Tensor,
    gallery_feats: torch.Tensor,
    distance: Distance = "euclidean",
    chunk_size: int = 4096,
) -> torch.Tensor:
    """``(Q, G)`` distances between query and gallery features, chunked over queries.

    Args:
        query_feats: ``(Q, D)`` floating.
        gallery_feats: ``(G, D)`` floating, same device.
        distance: ``"euclidean"`` or ``"cosine"`` (``1 - cos``: the features are
            L2-normalised first; ranks like AGW's ``-q @ g.T`` on normalised features).
        chunk_size: query rows per matmul.

    Returns:
        ``(Q, G)`` float32 (float64 for float64 features), no autograd graph. Uses
        :func:`mag_mmt.functional.pairwise_distance`, so the conventions are the library's.

    Example:
        >>> import torch
        >>> distance_matrix(torch.tensor([[0.0, 0.0]]), torch.tensor([[3.0, 4.0], [0.0, 1.0]]))
        tensor([[5., 1.]])
    """
    for name, x in (("query_feats", query_feats), ("gallery_feats", gallery_feats)):
        if not isinstance(x, torch.Tensor) or x.dim() != 2 or not x.is_floating_point():
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise UserError(f"{name} must be a 2-D floating tensor (N, D), got {shape}")
    if query_feats.shape[1] != gallery_feats.shape[1]:
        raise UserError(
            f"query_feats and gallery_feats must have the same feature size, got "
            f"{query_feats.shape[1]} and {gallery_feats.shape[1]}"
        )
    if distance not in ("euclidean", "cosine"):
        raise UserError(f"distance must be 'euclidean' or 'cosine', got {distance!r}")
    with torch.no_grad():
        parts = [
            pairwise_distance(query_feats[i : i + chunk_size], gallery_feats, distance=distance)
            for i in range(0, query_feats.shape[0], chunk_size)
        ]
    if not parts:
        return query_feats.new_zeros(0, gallery_feats.shape[0])
    return torch.cat(parts)
