"""Evaluation inside a run: the test protocols on a model, checkpoints, the validation split.

:func:`evaluate_model` gives the headline numbers of a dataset's main setting,
:func:`run_protocol` every setting of a protocol, :func:`evaluate_checkpoint` what
``mag-mmt eval`` prints; :func:`split_validation` / :func:`evaluate_validation` are the
model selection of ``TrainConfig.val`` (never the test set). Features are taken with the
training normalisation (:func:`features`).

Example::

    from mag_mmt.training import evaluate_model, image_size, model_from_checkpoint, load_data
    model, cfg, _ = model_from_checkpoint("runs/demo/last.pt")
    data = load_data(cfg)
    print(evaluate_model(model, data, image_size(cfg, data)))
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from ..checkpoint import load_checkpoint
from ..data.records import ReIDData, Sample
from ..errors import UserError
from .checkpoints import write_json
from .config import PROTOCOLS, TrainConfig, check_data_source
from .setup import build_model_for, image_size, load_data, normalize_images, resolve_device

__all__ = ["features", "evaluate_model", "run_protocol", "model_from_checkpoint", "evaluate_checkpoint",
           "split_validation", "evaluate_validation"]


def split_validation(cfg: TrainConfig, data: ReIDData) -> tuple[ReIDData, list[Sample], list[Sample]]:
    """Hold the validation identities out of ``data.train``: ``(data with the remaining train
    identities relabelled 0..C'-1, val thermal queries, val visible gallery)``.

    ``cfg.val``: ``"dataset"`` uses the dataset's own split (SYSU-MM01 ``exp/val_id.txt``, which
    AGW trains on; a manifest's ``val`` rows) and fails without one; ``"holdout"`` holds out
    ``val_identities`` training identities (N, or a fraction), drawn with ``cfg.seed``;
    ``"auto"``: the dataset's split where there is one, else the hold-out. ``data.query`` and
    ``data.gallery`` (the test set) are untouched and never read here.
    """
    from ..data.records import relabel
    from ..modalities import VISIBLE

    id_map = data.meta.get("train_id_map") or {}
    own: list[Sample] = []
    source = ""
    if cfg.val in ("auto", "dataset") and data.meta.get("val_ids") and id_map:
        val_labels = {id_map[i] for i in data.meta["val_ids"] if i in id_map}
        own = [s for s in data.train if s.identity in val_labels]
        train = [s for s in data.train if s.identity not in val_labels]
        source = f"the dataset's val split ({len(val_labels)} identities)"
    elif cfg.val in ("auto", "dataset") and data.meta.get("val"):
        own, train, source = list(data.meta["val"]), list(data.train), "the manifest's val rows"
    elif cfg.val == "dataset":
        raise UserError(f"--val dataset: {data.name} has no validation split (SYSU-MM01 exp/val_id.txt or "
                        "manifest 'val' rows); use --val holdout --val-identities N")
    else:
        labels = sorted({s.identity for s in data.train})
        n = int(cfg.val_identities) if cfg.val_identities >= 1 else max(2, round(cfg.val_identities * len(labels)))
        if n > len(labels) - 2:
            raise UserError(f"--val-identities {cfg.val_identities}: holding out {n} of {len(labels)} training "
                            "identities leaves fewer than 2 to train on")
        held = {labels[i] for i in np.random.RandomState(cfg.seed % 2**32).permutation(len(labels))[:n]}
        own = [s for s in data.train if s.identity in held]
        train = [s for s in data.train if s.identity not in held]
        source = f"{n} held-out training identities"
    query = [s for s in own if s.modality != VISIBLE]
    gallery = [s for s in own if s.modality == VISIBLE]
    if not query or not gallery:
        raise UserError(f"validation split ({source}) needs thermal and visible images, got "
                        f"{len(query)} thermal and {len(gallery)} visible")
    train, new_map = relabel(train)
    meta = {**data.meta, "train_id_map": {k: new_map[v] for k, v in id_map.items() if v in new_map} if id_map else new_map,
            "validation": source}
    return dataclasses.replace(data, train=train, meta=meta), query, gallery


def evaluate_validation(model: nn.Module, data: ReIDData, query: Sequence[Sample], gallery: Sequence[Sample],
                        size: tuple[int, int], device: torch.device | None = None) -> dict[str, float]:
    """``val_rank1``, ``val_mAP``, ``val_mINP``: thermal queries against the whole visible
    gallery of the validation identities (euclidean distance, standard CMC)."""
    from ..evaluation import distance_matrix, rank_metrics

    qf = features(model, query, data, size, device)
    gf = features(model, gallery, data, size, device)
    res = rank_metrics(distance_matrix(qf, gf), [s.identity for s in query], [s.identity for s in gallery],
                       protocol="standard")
    return {"val_rank1": float(res.cmc[0]), "val_mAP": float(res.mAP), "val_mINP": float(res.mINP)}


# --------------------------------------------------------------------------- test protocols


def features(model: nn.Module, samples: Sequence[Sample], data: ReIDData, size: tuple[int, int],
             device: torch.device | None = None, flip: bool = False, batch_size: int = 128) -> torch.Tensor:
    """Eval-mode features of ``samples`` with the training normalisation."""
    from ..evaluation import extract_features

    return extract_features(model, samples, loader=data.loader, size=size, transform=normalize_images_single,
                            device=device, flip=flip, batch_size=batch_size)


def normalize_images_single(x: torch.Tensor) -> torch.Tensor:
    """:func:`normalize_images` for one ``(3, H, W)`` image (a dataset transform)."""
    return normalize_images(x.unsqueeze(0)).squeeze(0)


def evaluate_model(model: nn.Module, data: ReIDData, size: tuple[int, int], *, trials: int = 10,
                   device: torch.device | None = None, flip: bool = False) -> dict[str, Any]:
    """The headline numbers of ``data``'s main setting: ``rank1``, ``mAP``, ``mINP``, ``cmc``
    and ``setting`` (its name).

    The protocol is ``data.protocol`` (see :func:`run_protocol`); the main setting is
    SYSU-MM01 (and synthetic data): thermal-to-visible all-search single-shot; RegDB:
    visible-to-thermal; manifest data: visible-to-thermal all-search single-shot.
    """
    result = run_protocol(model, data, size, trials=trials, device=device, flip=flip)
    main = next(iter(result.values()))
    return {"rank1": float(main.cmc[0]), "mAP": float(main.mAP), "mINP": float(main.mINP),
            "cmc": [float(v) for v in main.cmc], "setting": main.name}


def run_protocol(model: nn.Module, data: ReIDData, size: tuple[int, int], *, protocol: str | None = None,
                 trials: int = 10, device: torch.device | None = None, flip: bool = False,
                 full: bool = False, gallery_sampling: str = "default", rerank: Any = None,
                 distance: str = "euclidean") -> dict[str, Any]:
    """Extract ``data``'s test features with ``model`` and score them with
    :func:`mag_mmt.evaluation.evaluate_dataset` (``protocol`` defaults to ``data.protocol``);
    returns ``{setting: ProtocolResult}``, the main setting first."""
    from ..evaluation.protocols.dataset import check_protocol, evaluate_dataset

    check_protocol(data, protocol, gallery_sampling)
    qf = features(model, data.query, data, size, device, flip)
    gf = qf if data.gallery == data.query else features(model, data.gallery, data, size, device, flip)
    return evaluate_dataset(qf, gf, data, protocol=protocol, full=full, trials=trials,
                            gallery_sampling=gallery_sampling, rerank=rerank, distance=distance)


def model_from_checkpoint(path: str, device: torch.device | None = None) -> tuple[nn.Module, TrainConfig, dict]:
    """Rebuild the model of a training checkpoint (architecture from its stored config)."""
    state = load_checkpoint(path, map_location="cpu", kind="train")
    cfg = TrainConfig.from_dict(state["config"])
    cfg.pretrained = None
    model = build_model_for(cfg, int(state["num_classes"]))
    model.load_state_dict(state["model"])
    if device is not None:
        model = model.to(device)
    return model, cfg, state


def evaluate_checkpoint(checkpoint: str, *, device: str | None = None, data: str | None = None,
                        root: str | None = None, seed: int | None = None, synthetic_preset: str | None = None,
                        regdb_trial: int | None = None, img_size: tuple[int, int] | None = None,
                        protocol: str | None = None, trials: int = 10, flip: bool = False, full: bool = False,
                        distance: str = "euclidean", gallery_sampling: str = "default", rerank: Any = None,
                        json_path: str | None = None, log: Callable[[str], None] = print) -> dict[str, Any]:
    """What ``mag-mmt eval`` runs: the model of a training checkpoint under a protocol.

    The dataset (``data``, ``root``, ``seed``, ``synthetic_preset``, ``regdb_trial``) is the
    checkpoint's training run's where not given; ``img_size`` likewise. Logs the table of
    every setting, writes their summaries to ``json_path`` if given, and returns
    ``{setting: ProtocolResult}`` (:func:`run_protocol`).
    """
    from ..evaluation import format_table

    device_ = resolve_device(device)
    model, cfg, _ = model_from_checkpoint(checkpoint, device_)
    if data is not None:
        cfg.data, cfg.root = data, root
    if seed is not None:
        cfg.seed = seed
    if synthetic_preset is not None:
        cfg.synthetic_preset, cfg.synthetic_kwargs = synthetic_preset, {}
    if regdb_trial is not None:
        cfg.regdb_trial = regdb_trial
    try:
        check_data_source(cfg.data, cfg.root)
    except UserError as exc:
        raise UserError(f"{exc} (dataset of the checkpoint; pass --data/--root)") from None
    dataset = load_data(cfg)
    size = tuple(img_size) if img_size else image_size(cfg, dataset)
    results = run_protocol(model, dataset, size, protocol=protocol, trials=trials, device=device_, flip=flip,
                           full=full, distance=distance, gallery_sampling=gallery_sampling, rerank=rerank)
    log(format_table(list(results.values())))
    if json_path:
        write_json(json_path, {name: r.summary() for name, r in results.items()})
    return results
