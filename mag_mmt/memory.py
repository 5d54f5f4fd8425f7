"""A cross-batch memory that keeps modalities: past embeddings as extra references for MMT.

pytorch-metric-learning's ``CrossBatchMemory`` keeps embeddings and labels of past batches so
that a loss mines its positives and negatives among many more samples than one batch holds. It
has no place for modalities, which the multi-masking triplet loss needs to pick cross-modality
pairs. :class:`CrossModalityMemory` is the same idea for this library: a fixed-size ring queue
of *detached* past embeddings with their labels and modalities, used as the loss's reference set.

For a batch ``B`` and the queue ``Q`` (past batches only)::

    anchors    = rows of B                (on each rank: its local rows)
    references = [B ; Q]                  (B is the global batch with torch.distributed)
    loss       = the wrapped loss on these anchors and references, each anchor's own row excluded
    then B (gathered from all ranks) is written into Q, overwriting the oldest rows

so the current batch is counted once (it is not in the queue yet when the loss runs) and no row
is its own positive. Gradients flow only into the current batch; the queue holds no graph.

How it stays free of host syncs: the write position and the number of filled rows are 0-d
tensors (buffers), never read back. While the queue is filling, the rows not yet written are not
dropped (that would make shapes depend on data) but replaced by repeats of written ones
(``slot % num_filled``): MMT and batch-hard take maxima and minima over the reference rows, and a
repeated row changes neither. The only Python state is whether anything was written at all,
so a compiled step has two graphs: the first step and all later ones.

With an initialised ``torch.distributed`` group every rank gathers the batch once per step after
the loss and writes the same rows at the same place, so all queues stay identical; the loss runs
with ``cross_rank=True`` (its gathered global batch followed by the queue as references, each
rank returning its share as :func:`mag_mmt.functional.multi_masking_triplet_loss` describes).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from mag_mmt import _validation as V
from mag_mmt import distributed as _dist
from mag_mmt.errors import UserError
from mag_mmt.functional.triplet import MMTOutput
from mag_mmt.losses import BatchHardTripletLoss, MultiMaskingTripletLoss

__all__ = ["CrossModalityMemory"]


class CrossModalityMemory(nn.Module):
    """Wrap a :class:`~mag_mmt.losses.MultiMaskingTripletLoss` (or
    :class:`~mag_mmt.losses.BatchHardTripletLoss`) with a queue of the last ``memory_size``
    embeddings, labels and modalities of past batches (see the module docstring).

    Args:
        loss: the loss to wrap. A deep copy is kept as ``self.loss`` with ``cross_rank=True``,
            which puts the (global) batch in front of the queue; ``loss`` itself is untouched.
            Soft-weighted losses (WRT) are refused: the queue relies on max/min mining.
        embedding_size: ``D``, the feature size of the embeddings.
        memory_size: ``K`` rows in the queue; at least the global batch size.
        dtype: the queue's floating dtype (default float32; the loss computes in float32, or
            float64 for float64 inputs).

    ``forward(embeddings, labels, modalities=None, enqueue=True)``: ``(N, D)``, ``(N,)``,
    ``(N,)`` as the wrapped loss takes them (``modalities`` may be omitted for batch-hard only);
    returns the loss, then writes the batch into the queue unless ``enqueue=False``.
    Buffers ``embedding_memory (K, D)``, ``label_memory (K,)``, ``modality_memory (K,)``,
    ``queue_idx`` (next slot) and ``num_filled`` (0-d int64 each) move with ``.to()`` and
    are saved in ``state_dict()``. ``last_parts`` is the wrapped loss's.

    Example:
        >>> import torch
        >>> from mag_mmt import MultiMaskingTripletLoss
        >>> from mag_mmt.memory import CrossModalityMemory
        >>> memory = CrossModalityMemory(MultiMaskingTripletLoss(margin=0.3), embedding_size=16,
        ...                              memory_size=24)
        >>> labels = torch.tensor([0, 0, 1, 1, 0, 0, 1, 1])
        >>> modalities = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
        >>> for step in range(4):
        ...     x = torch.randn(8, 16, requires_grad=True)
        ...     memory(x, labels + 2 * step, modalities).backward()
        >>> int(memory.num_filled), int(memory.queue_idx)  # 32 rows written into 24 slots
        (24, 8)
    """

    def __init__(
        self,
        loss: MultiMaskingTripletLoss,
        embedding_size: int,
        memory_size: int = 1024,
        *,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        if not isinstance(loss, MultiMaskingTripletLoss):
            raise UserError(
                f"CrossModalityMemory wraps a MultiMaskingTripletLoss or BatchHardTripletLoss, "
                f"got {type(loss).__name__}"
            )
        for name, value in (("embedding_size", embedding_size), ("memory_size", memory_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UserError(f"{name} must be a positive int, got {value!r}")
        if not dtype.is_floating_point:
            raise UserError(f"dtype must be a floating dtype, got {dtype}")
        self.loss = copy.deepcopy(loss)
        self.loss.cross_rank = True
        self.embedding_size = embedding_size
        self.memory_size = memory_size
        self.register_buffer("embedding_memory", torch.zeros(memory_size, embedding_size, dtype=dtype))
        self.register_buffer("label_memory", torch.zeros(memory_size, dtype=torch.int64))
        self.register_buffer("modality_memory", torch.zeros(memory_size, dtype=torch.int64))
        self.register_buffer("queue_idx", torch.zeros((), dtype=torch.int64))
        self.register_buffer("num_filled", torch.zeros((), dtype=torch.int64))
        self._empty = True  # the only Python state: has anything been written yet?
        self.register_load_state_dict_post_hook(_refresh_empty)

    embedding_memory: torch.Tensor
    label_memory: torch.Tensor
    modality_memory: torch.Tensor
    queue_idx: torch.Tensor
    num_filled: torch.Tensor

    @property
    def last_parts(self) -> MMTOutput | None:
        """The wrapped loss's detached :class:`~mag_mmt.functional.MMTOutput` of the last call."""
        return self.loss.last_parts

    def reset_queue(self) -> None:
        """Empty the queue (the buffers are zeroed; nothing is freed)."""
        for buf in (self.embedding_memory, self.label_memory, self.modality_memory, self.queue_idx, self.num_filled):
            buf.zero_()
        self._empty = True

    def references(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The queue as ``(K, D)``, ``(K,)``, ``(K,)`` references, slots not yet written
        replaced by repeats of written ones; no rows before the first write. No sync."""
        if self._empty:
            return self.embedding_memory[:0], self.label_memory[:0], self.modality_memory[:0]
        slots = torch.arange(self.memory_size, device=self.num_filled.device) % self.num_filled.clamp_min(1)
        return (self.embedding_memory.index_select(0, slots), self.label_memory.index_select(0, slots),
                self.modality_memory.index_select(0, slots))

    @torch.no_grad()
    def enqueue(self, embeddings: torch.Tensor, labels: torch.Tensor, modalities: torch.Tensor) -> None:
        """Gather the batch from all ranks (when distributed) and write it over the oldest
        rows. Every rank writes the same rows at the same slots. No sync."""
        x = _dist.all_gather_no_grad(embeddings.detach())
        pairs = _dist.all_gather_no_grad(torch.stack([labels.long(), modalities.long()], dim=1))
        rows = x.shape[0]
        slots = (self.queue_idx + torch.arange(rows, device=self.queue_idx.device)) % self.memory_size
        self.embedding_memory.index_copy_(0, slots, x.to(self.embedding_memory.dtype))
        self.label_memory.index_copy_(0, slots, pairs[:, 0])
        self.modality_memory.index_copy_(0, slots, pairs[:, 1])
        self.queue_idx.copy_((self.queue_idx + rows) % self.memory_size)
        self.num_filled.copy_((self.num_filled + rows).clamp_max(self.memory_size))
        self._empty = False

    def forward(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor,
        modalities: torch.Tensor | None = None,
        enqueue: bool = True,
    ) -> torch.Tensor:
        if modalities is None:
            if not isinstance(self.loss, BatchHardTripletLoss):
                raise UserError("modalities are required (only BatchHardTripletLoss may omit them)")
            V.check_tensor(labels, "labels", 1)
            modalities = torch.zeros_like(labels, dtype=torch.int64)
        V.check_tensor(embeddings, "embeddings", 2)
        if embeddings.shape[1] != self.embedding_size:
            raise UserError(
                f"embeddings have {embeddings.shape[1]} features but the memory was built with "
                f"embedding_size={self.embedding_size}"
            )
        rows = embeddings.shape[0] * _dist.world_size()
        if rows > self.memory_size:
            raise UserError(
                f"the global batch ({rows} rows) does not fit in memory_size={self.memory_size}; "
                f"use a memory at least as large as the batch"
            )
        V.check_same_device(embeddings=embeddings, embedding_memory=self.embedding_memory)
        ref = self.references()
        out = self.loss(embeddings, labels, modalities, *ref)
        if enqueue:
            self.enqueue(embeddings, labels, modalities)
        return out

    def extra_repr(self) -> str:
        return f"embedding_size={self.embedding_size}, memory_size={self.memory_size}"


def _refresh_empty(module: CrossModalityMemory, incompatible_keys) -> None:
    # loading a state dict is not on the hot path: one read of the fill count is fine here
    module._empty = int(module.num_filled) == 0
