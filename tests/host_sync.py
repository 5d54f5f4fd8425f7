"""Detect host-device syncs (reading tensor values back to Python) in a piece of code, on a
machine without a GPU.

On a CPU tensor most read-backs never reach the dispatcher (``.tolist()``, ``.numpy()``,
``.cpu()`` read the memory directly), so recording dispatcher ops alone misses them. Two
nets are used together:

* the code runs on *fake* tensors (``FakeTensorMode``: shapes, dtypes and devices, no data),
  so anything that needs a value (``.item()``, ``.tolist()``, ``if tensor:``, ``int(t)``,
  ``nonzero``, boolean-mask indexing, ``torch.unique``, ``.numpy()`` ...) raises, however
  deep in C++ it happens;
* the Tensor methods that read back or move to the host are wrapped for the duration and
  record their call (``.cpu()`` of a CPU tensor is a no-op that fake tensors let through, and
  code may catch the exception).

Usage::

    found = host_syncs(fn, x, y)   # x, y are real tensors; fn gets fake copies
    assert not found, found
"""

from __future__ import annotations

import contextlib
from typing import Callable

import torch
from torch._subclasses.fake_tensor import (
    DataDependentOutputException,
    DynamicOutputShapeException,
    FakeTensor,
    FakeTensorMode,
)

#: Tensor methods that read values back to the host (or copy to it)
READBACK_METHODS = ("tolist", "item", "numpy", "cpu", "nonzero", "__bool__", "__int__", "__float__", "__index__")


def _is_mask(index) -> bool:
    items = index if isinstance(index, tuple) else (index,)
    return any(isinstance(i, torch.Tensor) and i.dtype in (torch.bool, torch.uint8) for i in items)


@contextlib.contextmanager
def _recording(found: list[str]):
    """Wrap the read-back methods of ``torch.Tensor`` (and the overrides ``FakeTensor`` has of
    its own) so that each call is recorded; restored on exit."""
    saved = []  # (class, name, what its __dict__ held or None)

    def wrap(name, original):
        def method(self, *args, **kwargs):
            found.append(name if name.startswith("__") else f".{name}()")
            return original(self, *args, **kwargs)
        return method

    def getitem_of(original):
        def getitem(self, index):
            if _is_mask(index):
                found.append("boolean-mask indexing")
            return original(self, index)
        return getitem

    try:
        for cls in (torch.Tensor, FakeTensor):
            for name in READBACK_METHODS + ("__getitem__",):
                if cls is not torch.Tensor and name not in cls.__dict__:
                    continue
                saved.append((cls, name, cls.__dict__.get(name)))
                original = getattr(cls, name)
                setattr(cls, name, getitem_of(original) if name == "__getitem__" else wrap(name, original))
        yield
    finally:
        for cls, name, original in reversed(saved):
            if original is None:
                delattr(cls, name)
            else:
                setattr(cls, name, original)


def host_syncs(fn: Callable, *tensors: torch.Tensor, backward: bool = True) -> list[str]:
    """Run ``fn(*fake_copies)`` (and ``.backward()`` of its result, or of its first element
    when it returns a tuple, if that requires grad) and return what read values back: a list
    of descriptions, empty when the code is free of host syncs."""
    found: list[str] = []
    mode = FakeTensorMode()
    with mode:
        fakes = [mode.from_tensor(t).requires_grad_(t.requires_grad) if isinstance(t, torch.Tensor) else t
                 for t in tensors]
    try:
        with mode, _recording(found):
            out = fn(*fakes)
            if backward:
                out = out[0] if isinstance(out, tuple) else out
                if isinstance(out, torch.Tensor) and out.requires_grad:
                    out.sum().backward()
    except (DataDependentOutputException, DynamicOutputShapeException) as e:
        found.append(f"{type(e).__name__}: {e}")
    except Exception as e:  # a recorded read-back failing on fake data (e.g. ``.numpy()``)
        if not found:
            raise
        found.append(f"{type(e).__name__}: {e}")
    return found
