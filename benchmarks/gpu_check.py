"""The Python parts of ``benchmarks/gpu_check.sh`` (run that script, not this file, on a GPU).

Sections (each prints one JSON line, ``{"section": ..., "ok": ..., ...}``, and exits non-zero
when its check fails):

* ``amp DTYPE``   float16 / bfloat16 autocast training steps of the small CNN with MAG, identity
  CE and MMT (a GradScaler for float16): losses and gradients finite, time per step.
* ``compile``     ``torch.compile(fullgraph=True)`` of the MMT loss and of MAG's sampling and
  exchange: equal to eager (loss, gradients, images), eager and compiled times.
* ``sync``        the hot paths (MMT with ``validate=False``, MAG without labels) forward and
  backward under ``torch.cuda.set_sync_debug_mode("error")``: any host sync raises.
* ``compare A B`` two training checkpoints: largest absolute difference of the weights, relative
  to the largest weight (``--tolerance``, default 1e-4; 0 asks for bitwise equality).

``--device cpu`` runs the same code on the CPU (a dry run of the script; ``sync`` then only
checks that the code runs, since CUDA's sync detector does not exist there).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mag_mmt.augment import ModalityAugment  # noqa: E402
from mag_mmt.functional import modality_exchange, sample_exchange_params  # noqa: E402
from mag_mmt.losses import MultiMaskingTripletLoss  # noqa: E402
from mag_mmt.models import build_model  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _batch(device: torch.device, p: int = 8, k: int = 4, h: int = 128, w: int = 64, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    visible = torch.rand(p * k, 3, h, w, generator=g).to(device)
    thermal = torch.rand(p * k, 3, h, w, generator=g).to(device)
    labels = torch.arange(p).repeat_interleave(k).to(device)
    return visible, thermal, torch.cat([labels, labels]), torch.cat([torch.zeros(p * k), torch.ones(p * k)]).long().to(device)


def amp_steps(device: torch.device, dtype_name: str, steps: int, small: bool = False) -> dict:
    dtype = {"float16": torch.float16, "bfloat16": torch.bfloat16}[dtype_name]
    torch.manual_seed(0)
    visible, thermal, labels, modalities = _batch(device, *((4, 2, 32, 16) if small else (8, 4, 128, 64)))
    model = build_model("small-cnn", num_classes=8).to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    mag = ModalityAugment(p=0.5, generator=0)
    mmt = MultiMaskingTripletLoss(validate=False)
    losses, times = [], []
    for _ in range(steps):
        _sync(device)
        t = time.perf_counter()
        v, th = mag(visible, thermal)
        with torch.autocast(device_type=device.type, dtype=dtype):
            feat, logits = model(v, th)
            loss = F.cross_entropy(logits.float(), labels) + mmt(feat, labels, modalities)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        grads_finite = all(bool(torch.isfinite(p.grad).all()) for p in model.parameters() if p.grad is not None)
        scaler.step(opt)
        scaler.update()
        _sync(device)
        times.append(time.perf_counter() - t)
        losses.append(float(loss.detach()))
        if not grads_finite and dtype == torch.bfloat16:  # fp16 may skip a step (the scaler's job)
            break
    finite = all(torch.isfinite(torch.tensor(losses)).tolist())
    return dict(section=f"amp {dtype_name}", ok=finite and len(losses) == steps, steps=len(losses),
                first_loss=losses[0], last_loss=losses[-1], feat_dtype=str(feat.dtype),
                median_step_s=sorted(times[1:] or times)[len(times[1:] or times) // 2])


def _timed(fn, device, repeats: int = 5) -> float:
    fn()  # warm-up (compilation)
    _sync(device)
    t = time.perf_counter()
    for _ in range(repeats):
        fn()
    _sync(device)
    return (time.perf_counter() - t) / repeats


def compile_check(device: torch.device, n: int) -> dict:
    torch._dynamo.reset()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, 2048, generator=g).to(device)
    labels = torch.arange(n // 8).repeat_interleave(8).to(device)
    modalities = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1]).repeat(n // 8).to(device)
    crit = MultiMaskingTripletLoss(validate=False)
    compiled = torch.compile(crit, fullgraph=True)
    x1, x2 = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    a, b = compiled(x1, labels, modalities), crit(x2, labels, modalities)
    a.backward()
    b.backward()
    loss_diff = float((a - b).detach().abs())
    grad_diff = float((x1.grad - x2.grad).abs().max())

    def step(v, t):
        prm = sample_exchange_params(v.shape[0], v.shape[-2], v.shape[-1], p=0.5, device=v.device)
        v2, t2 = modality_exchange(v, t, prm["boxes"], prm["batch_prob"])
        return v2, t2, prm["boxes"], prm["batch_prob"]

    mag_compiled = torch.compile(step, fullgraph=True, dynamic=False)
    v, t = torch.rand(64, 3, 288, 144, device=device), torch.rand(64, 3, 288, 144, device=device)
    v2, t2, boxes, apply = mag_compiled(v, t)
    ev, et = modality_exchange(v, t, boxes, apply)
    mag_equal = bool(torch.equal(v2, ev) and torch.equal(t2, et))

    xr = x.clone().requires_grad_(True)
    eager_s = _timed(lambda: crit(xr, labels, modalities).backward(), device)
    compiled_s = _timed(lambda: compiled(xr, labels, modalities).backward(), device)
    mag_eager_s = _timed(lambda: step(v, t), device)
    mag_compiled_s = _timed(lambda: mag_compiled(v, t), device)
    ok = loss_diff <= 1e-4 * max(1.0, float(b.detach().abs())) and grad_diff <= 1e-4 and mag_equal
    return dict(section="compile", ok=ok, n=n, loss_abs_diff=loss_diff, grad_max_abs_diff=grad_diff,
                mag_equal=mag_equal, mmt_eager_s=eager_s, mmt_compiled_s=compiled_s,
                mag_eager_s=mag_eager_s, mag_compiled_s=mag_compiled_s)


def sync_check(device: torch.device, n: int) -> dict:
    g = torch.Generator().manual_seed(2)
    x = torch.randn(n, 512, generator=g).to(device).requires_grad_(True)
    labels = torch.arange(n // 8).repeat_interleave(8).to(device)
    modalities = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1]).repeat(n // 8).to(device)
    crit = MultiMaskingTripletLoss(validate=False)
    mag = ModalityAugment(p=0.5, generator=3)
    v, t = torch.rand(32, 3, 64, 32, device=device), torch.rand(32, 3, 64, 32, device=device)
    crit(x, labels, modalities).backward()  # warm-up outside the detector (allocator, lazy init)
    mag(v, t)
    _sync(device)
    error = None
    if device.type == "cuda":
        torch.cuda.set_sync_debug_mode("error")
    try:
        crit(x, labels, modalities).backward()
        crit(x, labels, modalities, ref_emb=x, ref_labels=labels, ref_modalities=modalities).backward()
        mag(v, t)
    except RuntimeError as exc:
        error = str(exc).splitlines()[0]
    finally:
        if device.type == "cuda":
            torch.cuda.set_sync_debug_mode(0)
    return dict(section="sync", ok=error is None, checked_with_cuda_detector=device.type == "cuda", error=error)


def compare(a: str, b: str, tolerance: float) -> dict:
    sa = torch.load(a, map_location="cpu", weights_only=False)["model"]
    sb = torch.load(b, map_location="cpu", weights_only=False)["model"]
    if sa.keys() != sb.keys():
        return dict(section="resume compare", ok=False, error="different parameter names")
    diff, scale, equal = 0.0, 0.0, True
    for k in sa:
        if not sa[k].is_floating_point():
            equal &= bool(torch.equal(sa[k], sb[k]))
            continue
        d = (sa[k].double() - sb[k].double()).abs().max().item() if sa[k].numel() else 0.0
        diff = max(diff, d)
        scale = max(scale, sa[k].double().abs().max().item() if sa[k].numel() else 0.0)
        equal &= d == 0.0
    relative = diff / max(scale, 1e-12)
    ok = equal if tolerance == 0 else (relative <= tolerance and all(
        torch.equal(sa[k], sb[k]) for k in sa if not sa[k].is_floating_point()))
    return dict(section="resume compare", ok=ok, bitwise_equal=equal, max_abs_diff=diff,
                max_abs_weight=scale, relative=relative, tolerance=tolerance)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("section", choices=["amp", "compile", "sync", "compare"])
    ap.add_argument("args", nargs="*")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--small", action="store_true", help="tiny sizes (the CPU dry run)")
    ap.add_argument("--tolerance", type=float, default=1e-4)
    a = ap.parse_args()
    device = torch.device(a.device)
    if a.section == "amp":
        out = amp_steps(device, a.args[0], steps=3 if a.small else 20, small=a.small)
    elif a.section == "compile":
        out = compile_check(device, n=64 if a.small else 1024)
    elif a.section == "sync":
        out = sync_check(device, n=64 if a.small else 1024)
    else:
        out = compare(a.args[0], a.args[1], a.tolerance)
    print(json.dumps(out), flush=True)
    return 0 if out["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
