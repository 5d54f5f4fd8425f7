"""A dataset's own protocol: dispatch on ``ReIDData.protocol`` (set by each reader)."""

from __future__ import annotations

from typing import Any

import torch

from mag_mmt.data.records import DATASET_PROTOCOLS, ReIDData
from mag_mmt.errors import UserError
from mag_mmt.evaluation.protocols._trials import DIRECTIONS
from mag_mmt.evaluation.protocols.cross_modality import evaluate_cross_modality
from mag_mmt.evaluation.protocols.regdb import evaluate_regdb
from mag_mmt.evaluation.protocols.sysu import evaluate_sysu
from mag_mmt.evaluation.results import ProtocolResult

SYSU_SETTINGS = (("all", "single"), ("all", "multi"), ("indoor", "single"), ("indoor", "multi"))


def check_protocol(data: ReIDData, protocol: str | None = None,
                   gallery_sampling: str = "default") -> tuple[str, list[str]]:
    """``(protocol, directions)`` for ``data`` (before any feature is extracted); a
    :class:`~mag_mmt.errors.UserError` if the protocol is unknown or does not fit the data."""
    protocol = data.protocol if protocol is None else protocol
    if protocol not in DATASET_PROTOCOLS:
        raise UserError(f"unknown protocol {protocol!r}; choose one of {', '.join(DATASET_PROTOCOLS)}")
    if gallery_sampling != "default" and protocol != "sysu":
        raise UserError(f"gallery sampling {gallery_sampling!r} applies to the SYSU-MM01 protocol, not {protocol!r}")
    if protocol == "sysu":
        return protocol, []
    query_mods, gallery_mods = {s.modality for s in data.query}, {s.modality for s in data.gallery}
    directions = [d for d, qm in DIRECTIONS.items() if qm in query_mods and 1 - qm in gallery_mods]
    if not directions:
        raise UserError(f"{data.name}: protocol {protocol!r} needs query images of one modality and "
                        "gallery images of the other; this dataset has none")
    return protocol, directions


def evaluate_dataset(query_feats: torch.Tensor, gallery_feats: torch.Tensor, data: ReIDData, *,
                     protocol: str | None = None, full: bool = False, trials: int = 10,
                     gallery_sampling: str = "default", **options: Any) -> dict[str, ProtocolResult]:
    """Score ``data.query`` x ``data.gallery`` features with the dataset's protocol.

    ``query_feats`` ``(Q, D)`` and ``gallery_feats`` ``(G, D)`` are in the order of
    ``data.query`` / ``data.gallery``. ``protocol`` defaults to ``data.protocol``:

    * ``"sysu"`` (SYSU-MM01, synthetic data): thermal -> visible, all-search single-shot;
      ``full``: all/indoor x single/multi-shot.
    * ``"regdb"``: both directions, the whole other modality as gallery (``full`` changes nothing).
    * ``"npu"`` (manifests): both directions, all-search single-shot; ``full``: both directions
      x all + each scene of ``data.meta["camera_scene"]`` x single/multi-shot.

    Directions without query or gallery images are left out. ``gallery_sampling`` applies to
    ``"sysu"`` only; ``options`` (``rerank``, ``distance``) go to every protocol function.
    Returns ``{setting name: ProtocolResult}``, the main setting first.

    Example::

        >>> import torch
        >>> from mag_mmt.data import make_synthetic
        >>> data = make_synthetic("demo", num_identities=8, images_per_camera=1)
        >>> qf, gf = torch.randn(len(data.query), 16), torch.randn(len(data.gallery), 16)
        >>> list(evaluate_dataset(qf, gf, data, trials=2))
        ['SYSU-MM01 all-search single-shot']
    """
    protocol, directions = check_protocol(data, protocol, gallery_sampling)
    q, g = data.query, data.gallery
    if protocol == "sysu":
        results = [evaluate_sysu(query_feats, gallery_feats, q, g, mode=mode, shot=shot, trials=trials,
                                 gallery_sampling=gallery_sampling, **options)
                   for mode, shot in (SYSU_SETTINGS if full else SYSU_SETTINGS[:1])]
        return {r.name: r for r in results}
    if protocol == "regdb":
        res = evaluate_regdb(query_feats, gallery_feats, q, g, directions=directions, **options)
    else:
        res = evaluate_cross_modality(
            query_feats, gallery_feats, q, g, directions=directions, camera_scene=data.meta.get("camera_scene"),
            trials=trials, searches=None if full else ["all"], shots=("single", "multi") if full else ("single",),
            **options)
    return {r.name: r for r in res.values()}
