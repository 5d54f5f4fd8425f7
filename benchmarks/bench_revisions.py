"""Benchmark: the hot paths of two revisions of mag-mmt, interleaved in one run.

Times, for the working tree and for another git revision (default ``HEAD~1``), the paths a user
runs every step, through public names only (so both revisions can run the same code):

* ``mmt``       : ``MultiMaskingTripletLoss`` forward + backward, N = 256 and 1024, D = 2048.
* ``mag``       : ``ModalityAugment(p=0.5)`` on 64 pairs of 3 x 288 x 144 float32 images.
* ``rank``      : ``mag_mmt.evaluation.rank_metrics`` on 2000 queries x 4000 gallery (D = 512).
* ``step``      : one training step of the demo's small CNN (CE + MMT, MAG), batch 8 x 4 x 2.

Each revision runs in its own subprocess (``PYTHONPATH`` set to its tree); the two alternate for
``--rounds`` rounds, and each case's figure is the minimum over rounds (robust on a shared machine).
The ratio ``new / old`` is printed per case; above 1.10 is a regression beyond 10 %.

Run from the repository root::

    python benchmarks/bench_revisions.py --base 2b4dbd2          # working tree vs that commit
    python benchmarks/bench_revisions.py --base HEAD~3 --rounds 5
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CASES = ("mmt256", "mmt1024", "mag", "rank", "step")


def _time(fn, repeats: int) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def measure(repeats: int) -> dict[str, float]:
    """One round of every case in this interpreter (whichever ``mag_mmt`` it imports)."""
    import torch

    import mag_mmt
    from mag_mmt.evaluation import rank_metrics

    torch.manual_seed(0)
    out: dict[str, float] = {}
    loss = mag_mmt.MultiMaskingTripletLoss()
    for n in (256, 1024):
        x = torch.randn(n, 2048, requires_grad=True)
        labels = torch.arange(n // 8).repeat_interleave(8)
        mods = torch.arange(8).remainder(2).repeat(n // 8)

        def mmt(x=x, labels=labels, mods=mods):
            x.grad = None
            loss(x, labels, mods).backward()

        out[f"mmt{n}"] = _time(mmt, repeats)

    aug = mag_mmt.ModalityAugment(p=0.5, generator=0)
    v, t = torch.rand(64, 3, 288, 144), torch.rand(64, 3, 288, 144)
    out["mag"] = _time(lambda: aug(v, t), repeats)

    qf, gf = torch.randn(2000, 512), torch.randn(4000, 512)
    ql, gl = torch.randint(0, 200, (2000,)), torch.randint(0, 200, (4000,))
    qc, gc = torch.randint(0, 2, (2000,)) * 3 + 3, torch.randint(0, 4, (4000,)) + 1  # SYSU cameras
    dist = torch.cdist(qf, gf)
    out["rank"] = _time(lambda: rank_metrics(dist, ql, gl, qc, gc), repeats)

    model = mag_mmt.build_model("small-cnn", num_classes=64)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    vis, th = torch.rand(32, 3, 64, 32), torch.rand(32, 3, 64, 32)
    labels = torch.arange(8).repeat_interleave(4)
    both = torch.cat([labels, labels])
    mods = torch.cat([torch.zeros(32, dtype=torch.long), torch.ones(32, dtype=torch.long)])

    def step():
        a, b = aug(vis, th)
        feats, logits = model(a, b)
        total = torch.nn.functional.cross_entropy(logits, both) + loss(feats, both, mods)
        opt.zero_grad()
        total.backward()
        opt.step()

    out["step"] = _time(step, repeats)
    return out


def _tree_for(base: str, tmp: str) -> str:
    root = Path(__file__).resolve().parents[1]
    target = os.path.join(tmp, "base")
    subprocess.run(["git", "-C", str(root), "worktree", "add", "--detach", "-q", target, base], check=True)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="HEAD~1", help="git revision to compare the working tree with")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds per revision")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per case and round")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads in each subprocess")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        import torch

        torch.set_num_threads(args.threads)
        print(json.dumps(measure(args.repeats)))
        return

    root = str(Path(__file__).resolve().parents[1])
    with tempfile.TemporaryDirectory() as tmp:
        trees = {"new": root, "old": _tree_for(args.base, tmp)}
        best: dict[str, dict[str, float]] = {k: {} for k in trees}
        try:
            for r in range(args.rounds):
                for name, tree in (trees.items() if r % 2 == 0 else reversed(trees.items())):
                    env = dict(os.environ, PYTHONPATH=tree, OMP_NUM_THREADS=str(args.threads))
                    cmd = [sys.executable, os.path.abspath(__file__), "--child",
                           "--repeats", str(args.repeats), "--threads", str(args.threads)]
                    line = subprocess.run(cmd, env=env, cwd=tree, check=True, capture_output=True,
                                          text=True).stdout.strip().splitlines()[-1]
                    for case, sec in json.loads(line).items():
                        best[name][case] = min(sec, best[name].get(case, float("inf")))
        finally:
            subprocess.run(["git", "-C", root, "worktree", "remove", "--force", trees["old"]], check=False)
    print(f"base {args.base}, {args.rounds} rounds, {args.threads} thread(s), load {os.getloadavg()[0]:.1f}")
    print(f"{'case':<8} {'old s':>9} {'new s':>9} {'new/old':>8}")
    for case in CASES:
        old, new = best["old"][case], best["new"][case]
        print(f"{case:<8} {old:9.4f} {new:9.4f} {new / old:8.2f}")


if __name__ == "__main__":
    main()
