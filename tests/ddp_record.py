"""Run ``mag-mmt`` under ``torchrun`` and record every MAG draw of this rank.

Used by ``test_ddp_train.py``: ``torchrun ... tests/ddp_record.py RECORD_DIR train ...`` runs
the command line as ``mag-mmt train ...`` would, with ``ModalityAugment.forward_parameters``
wrapped to keep its output, and writes ``RECORD_DIR/draws-rank{RANK}.pt``: a list with one
dict of tensors (``boxes``, ``batch_prob``) per training step.
"""

from __future__ import annotations

import os
import sys


def run(record_dir: str, argv: list[str]) -> int:
    import torch

    from mag_mmt.augment import ModalityAugment
    from mag_mmt.cli import main

    draws: list[dict[str, torch.Tensor]] = []
    draw = ModalityAugment.forward_parameters

    def recording(self, *args, **kwargs):
        params = draw(self, *args, **kwargs)
        draws.append({k: v.detach().cpu().clone() for k, v in params.items()})
        return params

    ModalityAugment.forward_parameters = recording  # type: ignore[method-assign]
    code = main(argv)
    torch.save(draws, os.path.join(record_dir, f"draws-rank{os.environ.get('RANK', '0')}.pt"))
    return code


if __name__ == "__main__":
    sys.exit(run(sys.argv[1], sys.argv[2:]))
