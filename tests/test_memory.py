"""CrossModalityMemory against the explicit concatenation, one anchor at a time.

At every step the memory's loss must equal the per-anchor reference
(:func:`tests.reference_losses.reference_mmt`) with the batch as anchors and, for anchor ``i``,
``[batch without row i ; the last K rows of all past batches]`` as references: wrap-around of
the ring, a partly filled queue and batches of changing size included. The gradient must be the
reference's gradient with respect to the current batch only.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import mag_mmt
from mag_mmt.errors import UserError
from mag_mmt.losses import BatchHardTripletLoss, MultiMaskingTripletLoss, WeightedRegularizedTripletLoss
from mag_mmt.memory import CrossModalityMemory
from tests.reference_losses import reference_mmt
from tests.host_sync import host_syncs

D = 3


def reference_step(x, y, m, past_x, past_y, past_m, reduction="mean", **opts):
    """Loss of anchors ``x`` against ``[x without the anchor ; past]``, anchor by anchor."""
    per, valid = [], 0
    for i in range(x.shape[0]):
        keep = [j for j in range(x.shape[0]) if j != i]
        loss_i, _, _, valid_i = reference_mmt(
            x[i : i + 1], y[i : i + 1].tolist(), m[i : i + 1].tolist(),
            ref_emb=torch.cat([x[keep], past_x]), ref_labels=torch.cat([y[keep], past_y]).tolist(),
            ref_modalities=torch.cat([m[keep], past_m]).tolist(), reduction="none", **opts,
        )
        per.append(loss_i[0])
        valid += valid_i
    per = torch.stack(per)
    if reduction == "none":
        return per, valid
    return (per.sum() / max(valid, 1) if reduction == "mean" else per.sum()), valid


LOSSES = {
    "mmt": (lambda **kw: MultiMaskingTripletLoss(margin=1.0, pos_margin=0.2, **kw),
            dict(margin=1.0, pos_margin=0.2)),
    "mmt-same-pos": (lambda **kw: MultiMaskingTripletLoss(margin=1.0, positive_modality="same", **kw),
                     dict(margin=1.0, positive_modality="same")),
    "mmt-any-neg": (lambda **kw: MultiMaskingTripletLoss(margin=1.0, negative_modality="any", **kw),
                    dict(margin=1.0, negative_modality="any")),
    "batch-hard": (lambda **kw: BatchHardTripletLoss(margin=1.0, **kw),
                   dict(margin=1.0, pos_margin=0.0, pos_weight=0.0, positive_modality="any",
                        negative_modality="any")),
}


def run_and_check(kind, memory_size, sizes, seed, reduction="mean", normalize=False):
    make, opts = LOSSES[kind]
    memory = CrossModalityMemory(make(reduction=reduction, normalize=normalize), embedding_size=D,
                                 memory_size=memory_size, dtype=torch.float64)
    g = torch.Generator().manual_seed(seed)
    seen_x, seen_y, seen_m = torch.zeros(0, D, dtype=torch.float64), torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long)
    for n in sizes:
        x = torch.randn(n, D, generator=g, dtype=torch.float64)
        y = torch.randint(0, 3, (n,), generator=g)
        m = torch.randint(0, 2, (n,), generator=g)
        xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
        got = memory(xa, y, m)
        past = slice(max(0, seen_x.shape[0] - memory_size), None)  # the queue: the last K past rows
        want, valid = reference_step(xb, y, m, seen_x[past], seen_y[past], seen_m[past],
                                     reduction=reduction, normalize=normalize, **opts)
        torch.testing.assert_close(got, want)
        assert int(memory.last_parts.num_valid) == valid
        (got.sum()).backward()
        want.sum().backward()
        torch.testing.assert_close(xa.grad, xb.grad)
        seen_x, seen_y, seen_m = torch.cat([seen_x, x]), torch.cat([seen_y, y]), torch.cat([seen_m, m])
        # the ring: row w of everything written sits in slot w % K, the newest write winning
        total = seen_x.shape[0]
        assert int(memory.num_filled) == min(total, memory_size)
        assert int(memory.queue_idx) == total % memory_size
        for w in range(max(0, total - memory_size), total):
            torch.testing.assert_close(memory.embedding_memory[w % memory_size], seen_x[w])
            assert int(memory.label_memory[w % memory_size]) == int(seen_y[w])
            assert int(memory.modality_memory[w % memory_size]) == int(seen_m[w])
    return memory


@settings(max_examples=40)
@given(
    kind=st.sampled_from(sorted(LOSSES)),
    memory_size=st.integers(4, 13),
    sizes=st.lists(st.integers(1, 4), min_size=1, max_size=5),
    seed=st.integers(0, 2**16),
)
def test_memory_equals_explicit_concatenation(kind, memory_size, sizes, seed):
    run_and_check(kind, memory_size, sizes, seed)


@pytest.mark.parametrize("reduction", ["sum", "none"])
def test_reductions_and_normalize(reduction):
    run_and_check("mmt", 10, [4, 4, 4, 4], seed=3, reduction=reduction, normalize=True)


def test_wraps_around_and_partly_filled():
    # 6 + 6 + 6 rows into 8 slots: partly filled after one step, wrapped on the second and third
    memory = run_and_check("mmt", 8, [6, 6, 6], seed=11)
    assert int(memory.num_filled) == 8 and int(memory.queue_idx) == 18 % 8


def test_queue_finds_a_positive_the_batch_lacks():
    """A visible-only batch has no cross-modality positive; the thermal rows of the previous
    batch provide them, so the anchors become valid only through the queue."""
    memory = CrossModalityMemory(MultiMaskingTripletLoss(margin=1.0), embedding_size=2, memory_size=8)
    y = torch.tensor([0, 0, 1, 1])
    memory(torch.randn(4, 2), y, torch.ones(4, dtype=torch.long))  # thermal
    x = torch.randn(4, 2, requires_grad=True)
    memory(x, y, torch.zeros(4, dtype=torch.long)).backward()  # visible
    assert int(memory.last_parts.num_valid) == 4
    assert float(x.grad.abs().sum()) > 0
    assert memory.embedding_memory.grad is None and not memory.embedding_memory.requires_grad


def test_enqueue_false_and_reset():
    memory = CrossModalityMemory(MultiMaskingTripletLoss(), embedding_size=D, memory_size=6)
    x, y, m = torch.randn(4, D), torch.tensor([0, 0, 1, 1]), torch.tensor([0, 1, 0, 1])
    memory(x, y, m, enqueue=False)
    assert int(memory.num_filled) == 0
    memory(x, y, m)
    assert int(memory.num_filled) == 4
    memory.reset_queue()
    assert int(memory.num_filled) == 0 and int(memory.queue_idx) == 0
    assert float(memory.embedding_memory.abs().sum()) == 0
    torch.testing.assert_close(memory(x, y, m), MultiMaskingTripletLoss()(x, y, m))  # empty again: batch only


def test_state_dict_round_trip_and_wrapped_loss_untouched():
    crit = MultiMaskingTripletLoss(margin=0.5)
    memory = CrossModalityMemory(crit, embedding_size=D, memory_size=6)
    assert crit.cross_rank is False and memory.loss.cross_rank is True and memory.loss.margin == 0.5
    x, y, m = torch.randn(4, D), torch.tensor([0, 0, 1, 1]), torch.tensor([0, 1, 0, 1])
    memory(x, y, m)
    other = CrossModalityMemory(crit, embedding_size=D, memory_size=6)
    other.load_state_dict(memory.state_dict())
    x2 = torch.randn(4, D)
    torch.testing.assert_close(other(x2, y, m), memory(x2, y, m))
    other.load_state_dict(CrossModalityMemory(crit, embedding_size=D, memory_size=6).state_dict())
    torch.testing.assert_close(other(x2, y, m), crit(x2, y, m))  # loaded an empty queue


def test_batch_hard_without_modalities():
    memory = CrossModalityMemory(BatchHardTripletLoss(margin=1.0), embedding_size=D, memory_size=8)
    x, y = torch.randn(4, D), torch.tensor([0, 0, 1, 1])
    memory(x, y)
    assert int(memory.num_filled) == 4 and int(memory.modality_memory.abs().sum()) == 0


@pytest.mark.parametrize("build, call, match", [
    (lambda: CrossModalityMemory(WeightedRegularizedTripletLoss(), D), None, "MultiMaskingTripletLoss"),
    (lambda: CrossModalityMemory(MultiMaskingTripletLoss(), 0), None, "embedding_size"),
    (lambda: CrossModalityMemory(MultiMaskingTripletLoss(), D, memory_size=2.5), None, "memory_size"),
    (lambda: CrossModalityMemory(MultiMaskingTripletLoss(), D, dtype=torch.long), None, "dtype"),
    (lambda: CrossModalityMemory(MultiMaskingTripletLoss(), D, 8),
     lambda mem: mem(torch.randn(4, D + 1), torch.zeros(4, dtype=torch.long), torch.zeros(4, dtype=torch.long)),
     "embedding_size=3"),
    (lambda: CrossModalityMemory(MultiMaskingTripletLoss(), D, 3),
     lambda mem: mem(torch.randn(4, D), torch.zeros(4, dtype=torch.long), torch.zeros(4, dtype=torch.long)),
     "memory_size=3"),
    (lambda: CrossModalityMemory(MultiMaskingTripletLoss(), D, 8),
     lambda mem: mem(torch.randn(4, D), torch.zeros(4, dtype=torch.long)), "modalities are required"),
])
def test_bad_input(build, call, match):
    with pytest.raises(UserError, match=match):
        mem = build()
        call(mem)


def test_bad_values_do_not_reach_the_queue():
    memory = CrossModalityMemory(MultiMaskingTripletLoss(), embedding_size=D, memory_size=8)
    x = torch.randn(4, D)
    x[1, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        memory(x, torch.tensor([0, 0, 1, 1]), torch.tensor([0, 1, 0, 1]))
    assert int(memory.num_filled) == 0


def test_exported():
    assert mag_mmt.CrossModalityMemory is CrossModalityMemory


def test_no_host_sync():
    """Four steps (empty, filling, wrapping) on fake tensors: nothing reads a value back."""
    y, m = torch.tensor([0, 0, 1, 1]), torch.tensor([0, 1, 0, 1])

    def steps(*xs):
        memory = CrossModalityMemory(MultiMaskingTripletLoss(validate=False), embedding_size=D, memory_size=10)
        return sum(memory(x, y_, m_) for x, y_, m_ in zip(xs[:4], (xs[4],) * 4, (xs[5],) * 4))

    xs = [torch.randn(4, D, requires_grad=True) for _ in range(4)]
    found = host_syncs(steps, *xs, y, m)
    assert not found, found


@pytest.mark.slow
def test_torch_compile_fullgraph_matches_eager():
    """fullgraph tracing of a whole step, buffer writes included: two graphs (the first step,
    then every later one). aot_eager keeps this test short; inductor gives the same results
    (checked by hand: about 70 s on 2 cores)."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    eager = CrossModalityMemory(MultiMaskingTripletLoss(margin=1.0, validate=False), embedding_size=D, memory_size=10)
    compiled_memory = CrossModalityMemory(MultiMaskingTripletLoss(margin=1.0, validate=False), embedding_size=D,
                                          memory_size=10)
    compiled = torch.compile(compiled_memory, fullgraph=True, backend="aot_eager")
    g = torch.Generator().manual_seed(5)
    y, m = torch.tensor([0, 0, 1, 1]), torch.tensor([0, 1, 0, 1])
    for step in range(5):  # empty, filling, wrapping: two graphs in all
        x = torch.randn(4, D, generator=g)
        x1, x2 = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
        a, b = compiled(x1, y + step % 2, m), eager(x2, y + step % 2, m)
        a.backward()
        b.backward()
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-5, atol=1e-6)
    for name in ("embedding_memory", "label_memory", "modality_memory", "queue_idx", "num_filled"):
        torch.testing.assert_close(getattr(compiled_memory, name), getattr(eager, name))
    assert int(compiled_memory.num_filled) == 10 and int(compiled_memory.queue_idx) == 20 % 10
    assert counters["stats"]["unique_graphs"] == 2


@pytest.mark.gpu
def test_no_sync_on_cuda():
    memory = CrossModalityMemory(MultiMaskingTripletLoss(validate=False), embedding_size=D, memory_size=10).cuda()
    y, m = torch.tensor([0, 0, 1, 1], device="cuda"), torch.tensor([0, 1, 0, 1], device="cuda")
    x = torch.randn(4, D, device="cuda")
    memory(x, y, m)  # first call outside: lazy CUDA init may sync
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(3):
            x = torch.randn(4, D, device="cuda", requires_grad=True)
            memory(x, y, m).backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert int(memory.num_filled) == 10


@pytest.mark.parametrize("kind", ["mmt", "batch-hard"])
def test_functional_cross_rank_with_reference_set(kind):
    """The loss itself: ``cross_rank=True`` with a reference set means references =
    [batch ; set], each anchor's own row excluded (without a process group)."""
    from mag_mmt.functional import multi_masking_triplet_loss

    _, opts = LOSSES[kind]
    g = torch.Generator().manual_seed(2)
    x, rx = torch.randn(6, D, generator=g, dtype=torch.float64), torch.randn(5, D, generator=g, dtype=torch.float64)
    y, ry = torch.randint(0, 3, (6,), generator=g), torch.randint(0, 3, (5,), generator=g)
    m, rm = torch.randint(0, 2, (6,), generator=g), torch.randint(0, 2, (5,), generator=g)
    got = multi_masking_triplet_loss(x, y, m, ref_emb=rx, ref_labels=ry, ref_modalities=rm,
                                     cross_rank=True, **opts)
    torch.testing.assert_close(got, reference_step(x, y, m, rx, ry, rm, **opts)[0])
    alone = multi_masking_triplet_loss(x, y, m, ref_emb=rx, ref_labels=ry, ref_modalities=rm, **opts)
    torch.testing.assert_close(alone, reference_mmt(x, y, m, ref_emb=rx, ref_labels=ry, ref_modalities=rm,
                                                    **opts)[0])  # without cross_rank: the set alone
