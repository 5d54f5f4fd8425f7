"""CrossModalityMemory under torch.distributed: 2 CPU processes, gloo backend.

Each rank holds half of every global batch. After each step both ranks' queues must be
identical (and equal to the queue of one process fed the global batches); the ranks' loss shares
must sum to that process's loss, and the gradient reaching each rank's rows must be its
gradient for those rows (times the world size with ``scale_by_world_size=True``).
"""

from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from mag_mmt.losses import BatchHardTripletLoss, MultiMaskingTripletLoss
from mag_mmt.memory import CrossModalityMemory
from tests.test_loss_distributed import _free_port

WORLD = 2
N_LOCAL = 4
D = 5
MEMORY = 20  # 8 rows a step: partly filled, then wrapped from the third step on
STEPS = 5
BUFFERS = ("embedding_memory", "label_memory", "modality_memory", "queue_idx", "num_filled")

CASES = {
    "mmt-split": (lambda scale: MultiMaskingTripletLoss(margin=1.0, scale_by_world_size=scale), "split", False),
    "mmt-split-scaled": (lambda scale: MultiMaskingTripletLoss(margin=1.0, scale_by_world_size=scale), "split", True),
    "batch-hard-random": (lambda scale: BatchHardTripletLoss(margin=1.0, scale_by_world_size=scale), "random", False),
}


def global_batches(layout: str):
    g = torch.Generator().manual_seed(13)
    out = []
    for step in range(STEPS):
        x = torch.randn(WORLD * N_LOCAL, D, generator=g, dtype=torch.float64)
        if layout == "split":
            # rank 0 holds only visible rows, rank 1 only thermal ones, the identities change
            # every step: cross-modality positives come from the other rank and the queue
            labels = torch.arange(N_LOCAL).remainder(2).repeat(WORLD) + step % 3
            mods = torch.arange(WORLD).repeat_interleave(N_LOCAL)
        else:
            labels = torch.randint(0, 4, (WORLD * N_LOCAL,), generator=g)
            mods = torch.randint(0, 2, (WORLD * N_LOCAL,), generator=g)
        out.append((x, labels, mods))
    return out


def run_memory(case: str, rows: slice | None):
    """Losses, gradients and final buffers of one memory fed ``rows`` of each global batch
    (all rows: the single-process run)."""
    make, layout, scale = CASES[case]
    memory = CrossModalityMemory(make(scale), embedding_size=D, memory_size=MEMORY, dtype=torch.float64)
    losses, grads = [], []
    for x, labels, mods in global_batches(layout):
        sl = rows or slice(None)
        xl = x[sl].clone().requires_grad_(True)
        loss = memory(xl, labels[sl], mods[sl])
        loss.backward()
        losses.append(loss.detach())
        grads.append(xl.grad)
    return losses, grads, {name: getattr(memory, name).clone() for name in BUFFERS}


def _worker(rank: int, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    try:
        sl = slice(rank * N_LOCAL, (rank + 1) * N_LOCAL)
        torch.save({case: run_memory(case, sl) for case in CASES}, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def rank_results(tmp_path_factory):
    out_dir = str(tmp_path_factory.mktemp("memdist"))
    mp.spawn(_worker, args=(_free_port(), out_dir), nprocs=WORLD, join=True)
    return [torch.load(os.path.join(out_dir, f"rank{r}.pt")) for r in range(WORLD)]


pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()), reason="needs torch.distributed with gloo"),
]


@pytest.mark.parametrize("case", sorted(CASES))
def test_memory_across_ranks_equals_single_process(rank_results, case):
    scale = CASES[case][2]
    factor = WORLD if scale else 1
    single_losses, single_grads, single_buffers = run_memory(case, None)
    for step in range(STEPS):
        shares = [r[case][0][step] for r in rank_results]
        torch.testing.assert_close(sum(shares), factor * single_losses[step])
        grads = torch.cat([r[case][1][step] for r in rank_results])
        torch.testing.assert_close(grads, factor * single_grads[step])
    for r in rank_results:  # every rank's queue is the one-process queue of the global batches
        for name in BUFFERS:
            torch.testing.assert_close(r[case][2][name], single_buffers[name], rtol=0, atol=0)
    assert int(single_buffers["num_filled"]) == MEMORY
    assert int(single_buffers["queue_idx"]) == STEPS * WORLD * N_LOCAL % MEMORY
    if case.startswith("mmt-split"):  # the losses are not trivially zero
        assert all(float(v) > 0 for v in single_losses[1:])
        assert all(float(g.abs().sum()) > 0 for g in single_grads)
