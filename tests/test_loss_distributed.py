"""``cross_rank=True`` for real: 2 CPU processes, gloo backend.

Each rank holds half of a global batch. The loss shares summed over ranks must equal the loss
of one process on the concatenated batch, and the gradient reaching each rank's embeddings must
equal the single-process gradient of those rows (times the world size with
``scale_by_world_size=True``). Under DDP, whose gradient *averaging* divides by the world size,
the default scaling must give parameters exactly the single-process gradient.
"""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from mag_mmt.distributed import all_gather_with_grad, world_size
from mag_mmt.functional import multi_masking_triplet_loss
from mag_mmt.losses import MultiMaskingTripletLoss

WORLD = 2
N_LOCAL = 8
D_IN, D = 6, 5


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def global_batch(layout: str):
    g = torch.Generator().manual_seed(7)
    x = torch.randn(WORLD * N_LOCAL, D, generator=g, dtype=torch.float64)
    inputs = torch.randn(WORLD * N_LOCAL, D_IN, generator=g, dtype=torch.float64)
    if layout == "split_modalities":
        # rank 0 holds only visible images, rank 1 only thermal ones: without the gather no
        # anchor would have a cross-modality positive
        labels = torch.arange(N_LOCAL).remainder(4).repeat(WORLD)
        mods = torch.arange(WORLD).repeat_interleave(N_LOCAL)
    else:
        labels = torch.randint(0, 4, (WORLD * N_LOCAL,), generator=g)
        mods = torch.randint(0, 2, (WORLD * N_LOCAL,), generator=g)
    return x, inputs, labels, mods


CASES = [
    ("split_modalities", "mean", False),
    ("split_modalities", "mean", True),
    ("random", "mean", False),
    ("random", "sum", True),
    ("random", "none", False),
]


def _worker(rank: int, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    try:
        sl = slice(rank * N_LOCAL, (rank + 1) * N_LOCAL)
        results = {}
        for layout, reduction, scale in CASES:
            x, _, labels, mods = global_batch(layout)
            xl = x[sl].clone().requires_grad_(True)
            out = multi_masking_triplet_loss(xl, labels[sl], mods[sl], margin=1.0, cross_rank=True,
                                             scale_by_world_size=scale, reduction=reduction, return_parts=True)
            (out.loss.sum() if reduction == "none" else out.loss).backward()
            results[(layout, reduction, scale)] = (out.loss.detach(), xl.grad, out.num_valid)

        # DDP: a linear embedding model, the default module (scale_by_world_size=True)
        x, inputs, labels, mods = global_batch("split_modalities")
        torch.manual_seed(0)
        model = torch.nn.Linear(D_IN, D).double()
        ddp = torch.nn.parallel.DistributedDataParallel(model)
        crit = MultiMaskingTripletLoss(margin=1.0, cross_rank=True)
        crit(ddp(inputs[sl]), labels[sl], mods[sl]).backward()
        results["ddp"] = [p.grad.clone() for p in model.parameters()]

        # the gather itself: rows come back in rank order, gradients summed over ranks
        local = torch.full((2, 3), float(rank + 1), dtype=torch.float64, requires_grad=True)
        gathered = all_gather_with_grad(local)
        (gathered * (rank + 1)).sum().backward()
        results["gather"] = (gathered.detach(), local.grad, world_size())
        torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def rank_results(tmp_path_factory):
    out_dir = str(tmp_path_factory.mktemp("dist"))
    mp.spawn(_worker, args=(_free_port(), out_dir), nprocs=WORLD, join=True)
    return [torch.load(os.path.join(out_dir, f"rank{r}.pt"), weights_only=True) for r in range(WORLD)]


pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()), reason="needs torch.distributed with gloo"),
]


@pytest.mark.parametrize("layout, reduction, scale", CASES)
def test_cross_rank_equals_single_process(rank_results, layout, reduction, scale):
    x, _, labels, mods = global_batch(layout)
    xs = x.clone().requires_grad_(True)
    single = multi_masking_triplet_loss(xs, labels, mods, margin=1.0, reduction=reduction, return_parts=True)
    (single.loss.sum() if reduction == "none" else single.loss).backward()
    factor = WORLD if (scale and reduction != "none") else 1
    losses = [r[(layout, reduction, scale)][0] for r in rank_results]
    grads = [r[(layout, reduction, scale)][1] for r in rank_results]
    if reduction == "none":
        torch.testing.assert_close(torch.cat(losses), single.loss.detach())
    else:
        torch.testing.assert_close(sum(losses), factor * single.loss.detach())
    torch.testing.assert_close(torch.cat(grads), factor * xs.grad)
    for r in rank_results:
        assert int(r[(layout, reduction, scale)][2]) == int(single.num_valid)
    if layout == "split_modalities":
        assert int(single.num_valid) == WORLD * N_LOCAL  # every anchor found its partner on the other rank
        assert float(xs.grad.abs().sum()) > 0


def test_ddp_gets_the_single_process_gradient(rank_results):
    x, inputs, labels, mods = global_batch("split_modalities")
    torch.manual_seed(0)
    model = torch.nn.Linear(D_IN, D).double()
    MultiMaskingTripletLoss(margin=1.0)(model(inputs), labels, mods).backward()
    for r in rank_results:  # DDP leaves identical (averaged) gradients on every rank
        for got, p in zip(r["ddp"], model.parameters()):
            torch.testing.assert_close(got, p.grad)


def test_all_gather_with_grad(rank_results):
    for rank, r in enumerate(rank_results):
        gathered, grad, ws = r["gather"]
        assert ws == WORLD
        torch.testing.assert_close(gathered, torch.tensor([1.0] * 6 + [2.0] * 6, dtype=torch.float64).view(4, 3))
        # d/d local of sum_s (s + 1) * sum(gathered) = 1 + 2 = 3 for every row
        torch.testing.assert_close(grad, torch.full((2, 3), 3.0, dtype=torch.float64))


def test_without_process_group_cross_rank_is_local():
    x, _, labels, mods = global_batch("random")
    a = multi_masking_triplet_loss(x, labels, mods, cross_rank=True)
    b = multi_masking_triplet_loss(x, labels, mods)
    torch.testing.assert_close(a, b)
