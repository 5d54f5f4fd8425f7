"""The application layer: training runs, evaluation of checkpoints, MMGL pre-training runs.

What ``mag-mmt train``, ``eval`` and ``pretrain`` run, as functions a script can call::

    from mag_mmt.training import TrainConfig, train
    result = train(TrainConfig(data="synthetic", model="small-cnn", epochs=5, out="runs/demo"))
    print(result.history[-1])

Modules, one job each: :mod:`~mag_mmt.training.config` (:class:`TrainConfig`),
:mod:`~mag_mmt.training.setup` (device, seeding, data, model, loss, optimiser: the pieces both
loops share), :mod:`~mag_mmt.training.checkpoints` (resumable ``OUT/last.pt``),
:mod:`~mag_mmt.training.loop` (:func:`train`), :mod:`~mag_mmt.training.evaluate` (protocols on
a model or checkpoint, validation split) and :mod:`~mag_mmt.training.pretrain` (the MMGL loop).
"""

from __future__ import annotations

from .checkpoints import (
    check_resumable,
    check_same_run,
    gather_rng_states,
    restore_run_state,
    save_run_state,
    write_json,
)
from .config import (
    AUGMENTS,
    DATASETS,
    LOSSES,
    PROTOCOLS,
    RESUME_MAY_CHANGE,
    SELECT_METRICS,
    VAL_SPLITS,
    TrainConfig,
    check_data_source,
    config_differences,
    share_point_value,
)
from .evaluate import (
    evaluate_checkpoint,
    evaluate_model,
    evaluate_validation,
    features,
    model_from_checkpoint,
    run_protocol,
    split_validation,
)
from .loop import TrainResult, lr_at, train, train_and_evaluate
from .pretrain import PretrainResult, pretrain, run_pretraining
from .setup import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    OPTIMIZERS,
    augment_seed,
    batch_loader,
    build_augment,
    build_model_for,
    build_optimizer,
    build_triplet,
    dist_setup,
    image_size,
    load_data,
    load_init,
    normalize_images,
    param_groups,
    random_flip,
    resolve_device,
    seed_everything,
)

__all__ = [
    # config
    "TrainConfig", "DATASETS", "LOSSES", "PROTOCOLS", "RESUME_MAY_CHANGE", "AUGMENTS", "VAL_SPLITS", "SELECT_METRICS",
    "check_data_source", "config_differences", "share_point_value",
    # loops
    "train", "TrainResult", "train_and_evaluate", "lr_at", "pretrain", "PretrainResult", "run_pretraining",
    # evaluation
    "evaluate_model", "run_protocol", "features", "model_from_checkpoint", "evaluate_checkpoint",
    "split_validation", "evaluate_validation",
    # building blocks
    "resolve_device", "seed_everything", "augment_seed", "dist_setup", "load_data", "image_size", "batch_loader",
    "build_model_for", "build_triplet", "build_augment", "param_groups", "build_optimizer", "OPTIMIZERS",
    "normalize_images", "random_flip", "load_init", "IMAGENET_MEAN", "IMAGENET_STD",
    # checkpoints
    "save_run_state", "restore_run_state", "gather_rng_states", "check_resumable", "check_same_run", "write_json",
]
