"""Jigsaw primitives: permutation sets far apart in Hamming distance, tile shuffle / unshuffle.

An image ``(B, C, H, W)`` is cut into a ``gh x gw`` grid of tiles (row-major order) and the
tiles are permuted; the permutations come from a fixed set (:func:`permutation_set`, row 0
the identity) so that a classifier can predict which one was used.

Example:
    >>> import torch
    >>> from mag_mmt.functional import jigsaw_shuffle, jigsaw_unshuffle, permutation_set
    >>> perms = permutation_set(4, 10)
    >>> rgb, ir = torch.rand(2, 3, 8, 8), torch.rand(2, 1, 8, 8)
    >>> idx = torch.tensor([3, 7])
    >>> s_rgb, s_ir = jigsaw_shuffle((rgb, ir), idx, perms, grid=(2, 2))
    >>> torch.equal(jigsaw_unshuffle(s_rgb, idx, perms, grid=(2, 2)), rgb)
    True
"""

from __future__ import annotations

import itertools
import math
from typing import Literal, Sequence

import torch

from mag_mmt._validation import check_integer, check_tensor, check_values

__all__ = [
    "permutation_set",
    "hamming_distances",
    "min_hamming_distance",
    "jigsaw_shuffle",
    "jigsaw_unshuffle",
]

Remainder = Literal["error", "crop", "keep"]


def _hamming_to(candidates: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    return (candidates != perm.unsqueeze(0)).sum(dim=1)


def permutation_set(
    num_patches: int,
    size: int,
    seed: int = 0,
    *,
    num_candidates: int | None = None,
    max_enumerate: int = 40320,
) -> torch.Tensor:
    """A fixed set of ``size`` permutations of ``num_patches`` tiles, far apart in Hamming distance.

    Greedy max-min selection (as in the jigsaw literature): start from the identity, then
    repeatedly add the candidate whose minimum Hamming distance to the permutations chosen so
    far is largest (ties broken by a ``seed``-ed generator). The candidates are *all*
    ``num_patches!`` permutations when there are at most ``max_enumerate`` of them (up to 8
    tiles with the default), otherwise ``num_candidates`` distinct random permutations
    (default ``max(10000, 20 * size)``) plus the identity. Deterministic for a given
    ``(num_patches, size, seed, num_candidates, max_enumerate)``. The achieved minimum
    distance is :func:`min_hamming_distance` of the result.

    Args:
        num_patches: tiles per image, ``gh * gw`` (>= 1).
        size: number of permutations, ``1 <= size <= num_patches!`` (and at most the number of
            candidates when they are sampled).
        seed: seeds candidate sampling and tie-breaking.

    Returns:
        ``int64`` tensor ``(size, num_patches)``; row ``k`` is permutation ``k``, row 0 the
        identity. Tile ``perm[j]`` of the original goes to position ``j`` when shuffled.

    Example::

        >>> p = permutation_set(4, 24)          # the whole of S_4
        >>> tuple(p.shape), min_hamming_distance(p)
        ((24, 4), 2)
        >>> min_hamming_distance(permutation_set(9, 30))
        7
    """
    if isinstance(num_patches, bool) or not isinstance(num_patches, int) or num_patches < 1:
        raise ValueError(f"num_patches must be a positive integer, got {num_patches!r}")
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be a positive integer, got {size!r}")
    total = math.factorial(num_patches)
    if size > total:
        raise ValueError(
            f"size={size} exceeds the {total} permutations of {num_patches} patches"
        )
    gen = torch.Generator().manual_seed(seed)
    identity = torch.arange(num_patches, dtype=torch.int64)
    if total <= max_enumerate:
        candidates = torch.tensor(list(itertools.permutations(range(num_patches))), dtype=torch.int64)
    else:
        n = num_candidates if num_candidates is not None else max(10000, 20 * size)
        if n < size:
            raise ValueError(f"num_candidates={n} is smaller than size={size}")
        drawn = torch.rand(n, num_patches, generator=gen).argsort(dim=1)  # n random permutations
        drawn = torch.unique(drawn, dim=0)  # sorted, distinct
        drawn = drawn[(drawn != identity).any(dim=1)]
        candidates = torch.cat([identity.unsqueeze(0), drawn])
        if len(candidates) < size:
            raise ValueError(
                f"only {len(candidates)} distinct candidates for size={size}; raise num_candidates"
            )
    # identity is row 0 in both branches (lexicographic order starts with it)
    chosen = [0]
    min_dist = _hamming_to(candidates, candidates[0])
    min_dist[0] = -1
    for _ in range(size - 1):
        ties = torch.nonzero(min_dist == min_dist.max()).flatten()
        pick = int(ties[torch.randint(len(ties), (1,), generator=gen)])
        chosen.append(pick)
        min_dist = torch.minimum(min_dist, _hamming_to(candidates, candidates[pick]))
        min_dist[chosen] = -1
    return candidates[chosen]


def _check_perm_set(perm_set: torch.Tensor) -> torch.Tensor:
    check_tensor(perm_set, "perm_set", 2)
    check_integer(perm_set, "perm_set")
    if perm_set.shape[0] < 1 or perm_set.shape[1] < 1:
        raise ValueError(f"perm_set must be non-empty, got shape {tuple(perm_set.shape)}")
    return perm_set


def hamming_distances(perm_set: torch.Tensor) -> torch.Tensor:
    """Pairwise Hamming distances ``(K, K)`` (int64) between the rows of ``perm_set`` ``(K, P)``."""
    _check_perm_set(perm_set)
    return (perm_set[:, None, :] != perm_set[None, :, :]).sum(dim=-1)


def min_hamming_distance(perm_set: torch.Tensor) -> int:
    """The smallest Hamming distance between two different rows of ``perm_set`` ``(K, P)``.

    A set with a single permutation returns ``P`` (no pair to compare).
    """
    d = hamming_distances(perm_set)
    if d.shape[0] < 2:
        return int(perm_set.shape[1])
    d.fill_diagonal_(perm_set.shape[1] + 1)
    return int(d.min())


# --------------------------------------------------------------------------------------
# jigsaw shuffle
# --------------------------------------------------------------------------------------


def _check_grid(grid: Sequence[int]) -> tuple[int, int]:
    try:
        gh, gw = (int(v) for v in grid)
    except (TypeError, ValueError):
        raise ValueError(f"grid must be (gh, gw), got {grid!r}") from None
    if gh < 1 or gw < 1 or (gh, gw) != tuple(grid):
        raise ValueError(f"grid must be two positive integers (gh, gw), got {grid!r}")
    return gh, gw


def _tile_region(
    h: int, w: int, gh: int, gw: int, remainder: str, name: str
) -> tuple[int, int, int, int]:
    """``(top, left, height, width)`` of the centred region that is cut into tiles."""
    if remainder not in ("error", "crop", "keep"):
        raise ValueError(f"remainder must be 'error', 'crop' or 'keep', got {remainder!r}")
    if h < gh or w < gw:
        raise ValueError(f"{name} of size {h}x{w} is smaller than the grid {gh}x{gw}")
    hc, wc = (h // gh) * gh, (w // gw) * gw
    if (hc, wc) != (h, w) and remainder == "error":
        raise ValueError(
            f"{name} height/width {h}x{w} is not divisible by the grid {gh}x{gw}; "
            "resize it, or pass remainder='crop' or 'keep'"
        )
    return (h - hc) // 2, (w - wc) // 2, hc, wc


def _permute_tiles(x: torch.Tensor, perms: torch.Tensor, gh: int, gw: int) -> torch.Tensor:
    """Output tile ``j`` of image ``b`` = input tile ``perms[b, j]`` (row-major tile order)."""
    b, c, h, w = x.shape
    ph, pw = h // gh, w // gw
    tiles = x.reshape(b, c, gh, ph, gw, pw).permute(0, 2, 4, 1, 3, 5).reshape(b, gh * gw, c, ph, pw)
    rows = torch.arange(b, device=x.device).unsqueeze(1)
    tiles = tiles[rows, perms]
    return tiles.reshape(b, gh, gw, c, ph, pw).permute(0, 3, 1, 4, 2, 5).reshape(b, c, h, w)


def _jigsaw(
    images: torch.Tensor | Sequence[torch.Tensor],
    perm_indices: torch.Tensor,
    perm_set: torch.Tensor,
    grid: Sequence[int],
    remainder: str,
    validate: bool,
    inverse: bool,
) -> torch.Tensor | tuple[torch.Tensor, ...]:
    gh, gw = _check_grid(grid)
    _check_perm_set(perm_set)
    if perm_set.shape[1] != gh * gw:
        raise ValueError(
            f"perm_set permutes {perm_set.shape[1]} tiles but the grid {gh}x{gw} has {gh * gw}"
        )
    check_tensor(perm_indices, "perm_indices", 1)
    check_integer(perm_indices, "perm_indices")
    single = isinstance(images, torch.Tensor)
    batch = (images,) if single else tuple(images)
    if not batch:
        raise ValueError("images must be a tensor or a non-empty sequence of tensors")
    for i, x in enumerate(batch):
        name = "images" if single else f"images[{i}]"
        check_tensor(x, name, 4)
        if x.shape[0] != perm_indices.shape[0]:
            raise ValueError(
                f"{name} has {x.shape[0]} images but perm_indices has {perm_indices.shape[0]} entries"
            )
        if x.device != perm_indices.device:
            raise ValueError(f"{name} is on {x.device} but perm_indices on {perm_indices.device}")
    if validate and perm_indices.numel():
        k = perm_set.shape[0]
        check_values([
            (((perm_indices >= 0) & (perm_indices < k)).all(),
             f"perm_indices must lie in [0, {k}) (the size of perm_set)"),
        ])
    perms = perm_set.to(perm_indices.device)[perm_indices.long()]
    if inverse:
        perms = perms.argsort(dim=1)
    out = []
    for i, x in enumerate(batch):
        name = "images" if single else f"images[{i}]"
        h, w = x.shape[-2:]
        top, left, hc, wc = _tile_region(h, w, gh, gw, remainder, name)
        region = x[..., top : top + hc, left : left + wc]
        shuffled = _permute_tiles(region, perms, gh, gw)
        if (hc, wc) != (h, w) and remainder == "keep":
            full = x.clone()
            full[..., top : top + hc, left : left + wc] = shuffled
            shuffled = full
        out.append(shuffled)
    return out[0] if single else tuple(out)


def jigsaw_shuffle(
    images: torch.Tensor | Sequence[torch.Tensor],
    perm_indices: torch.Tensor,
    perm_set: torch.Tensor,
    grid: Sequence[int] = (3, 3),
    *,
    remainder: Remainder = "error",
    validate: bool = True,
) -> torch.Tensor | tuple[torch.Tensor, ...]:
    """Cut every image into a ``gh x gw`` grid of tiles and shuffle the tiles.

    Image ``b`` is shuffled by permutation ``perm_set[perm_indices[b]]``: output tile ``j``
    (row-major) is input tile ``perm[j]``. Given a sequence of batches (e.g. ``(rgb, ir)``),
    the *same* permutation is applied to row ``b`` of every batch, so the RGB and IR image of
    a pair are shuffled alike; the batches may differ in channels and size. Batched (one
    gather per batch), differentiable, on the images' device.

    Args:
        images: ``(B, C, H, W)``, or a sequence of such tensors with the same ``B``.
        perm_indices: ``(B,)`` integer indices into ``perm_set``, on the images' device.
        perm_set: ``(K, gh * gw)`` permutations, e.g. :func:`permutation_set`.
        grid: ``(gh, gw)`` tiles per column and per row.
        remainder: what to do when ``H`` or ``W`` is not divisible by the grid:
            ``"error"`` (default) raises ``ValueError``; ``"crop"`` returns the centred
            ``(H // gh * gh, W // gw * gw)`` region, shuffled; ``"keep"`` shuffles that centred
            region in place and leaves the border strips untouched (output size unchanged,
            still exactly invertible).
        validate: check that the indices lie in ``[0, K)`` (one host sync); ``False`` on hot paths.

    Returns:
        the shuffled tensor, or a tuple matching ``images``.

    Example::

        >>> x = torch.arange(4.0).reshape(1, 1, 2, 2)
        >>> perms = torch.tensor([[0, 1, 2, 3], [3, 2, 1, 0]])
        >>> jigsaw_shuffle(x, torch.tensor([1]), perms, grid=(2, 2)).flatten().tolist()
        [3.0, 2.0, 1.0, 0.0]
    """
    return _jigsaw(images, perm_indices, perm_set, grid, remainder, validate, inverse=False)


def jigsaw_unshuffle(
    images: torch.Tensor | Sequence[torch.Tensor],
    perm_indices: torch.Tensor,
    perm_set: torch.Tensor,
    grid: Sequence[int] = (3, 3),
    *,
    remainder: Remainder = "error",
    validate: bool = True,
) -> torch.Tensor | tuple[torch.Tensor, ...]:
    """The exact inverse of :func:`jigsaw_shuffle` with the same arguments.

    ``jigsaw_unshuffle(jigsaw_shuffle(x, i, P, g), i, P, g) == x`` bit for bit (with
    ``remainder="crop"``, the shuffle's output is already divisible, so the round trip gives the
    centred crop of ``x``). Also un-shuffles feature maps whose size is divisible by the grid.
    """
    return _jigsaw(images, perm_indices, perm_set, grid, remainder, validate, inverse=True)
