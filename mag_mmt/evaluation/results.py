"""Result tables: :class:`ProtocolResult` (one setting over its trials), :func:`format_table`
(several settings as the papers print them) and :func:`aggregate_splits` (e.g. RegDB's 10
splits into one result per setting).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import numpy as np

from mag_mmt.errors import UserError
from mag_mmt.evaluation.metrics import RankResult

__all__ = ["ProtocolResult", "format_table", "aggregate_splits"]


@dataclass
class ProtocolResult:
    """Results of one protocol setting over its trials.

    Attributes:
        name: the setting, e.g. ``"SYSU-MM01 all-search single-shot"``.
        trials: one :class:`~mag_mmt.evaluation.RankResult` per trial (or per split).

    Means and standard deviations are over trials; the standard deviation is the sample
    one (``ddof=1``), 0 for a single trial. CMC curves of trials with different lengths
    (tiny galleries) are cut to the shortest.
    """

    name: str
    trials: list[RankResult]

    def __post_init__(self) -> None:
        if not self.trials:
            raise UserError(f"{self.name}: a ProtocolResult needs at least one trial")

    def _cmcs(self) -> np.ndarray:
        length = min(len(t.cmc) for t in self.trials)
        return np.stack([t.cmc[:length] for t in self.trials])

    @staticmethod
    def _std(values: np.ndarray) -> np.ndarray:
        if values.shape[0] < 2:
            return np.zeros_like(values[0], dtype=np.float64)
        return values.std(axis=0, ddof=1)

    @property
    def cmc(self) -> np.ndarray:
        """``(L,)`` mean CMC over trials."""
        return self._cmcs().mean(axis=0)

    @property
    def cmc_std(self) -> np.ndarray:
        return self._std(self._cmcs())

    @property
    def mAP(self) -> float:
        return float(np.mean([t.mAP for t in self.trials]))

    @property
    def mAP_std(self) -> float:
        return float(self._std(np.array([t.mAP for t in self.trials])))

    @property
    def mINP(self) -> float:
        return float(np.mean([t.mINP for t in self.trials]))

    @property
    def mINP_std(self) -> float:
        return float(self._std(np.array([t.mINP for t in self.trials])))

    def summary(self, ranks: Iterable[int] = (1, 10, 20)) -> dict[str, tuple[float, float]]:
        """``{"rank-1": (mean, std), ..., "mAP": ..., "mINP": ...}`` as fractions.

        Ranks beyond the CMC length are left out.
        """
        cmc, std = self.cmc, self.cmc_std
        out = {f"rank-{k}": (float(cmc[k - 1]), float(std[k - 1])) for k in ranks if 1 <= k <= len(cmc)}
        out["mAP"] = (self.mAP, self.mAP_std)
        out["mINP"] = (self.mINP, self.mINP_std)
        return out

    def table(self, ranks: Iterable[int] = (1, 10, 20), std: bool = True) -> str:
        """This result as a one-row table (see :func:`format_table`)."""
        return format_table([self], ranks=ranks, std=std)

    @classmethod
    def merge(cls, results: Sequence["ProtocolResult"], name: str | None = None) -> "ProtocolResult":
        """One result holding the trials of all ``results`` (e.g. the 10 RegDB splits)."""
        if not results:
            raise UserError("merge needs at least one ProtocolResult")
        trials = [t for r in results for t in r.trials]
        return cls(name if name is not None else results[0].name, trials)

    def __repr__(self) -> str:
        body = ", ".join(f"{k}={m:.4f}+-{s:.4f}" for k, (m, s) in self.summary().items())
        return f"ProtocolResult({self.name!r}, trials={len(self.trials)}, {body})"


def format_table(
    results: Sequence[ProtocolResult] | Mapping[str, ProtocolResult],
    ranks: Iterable[int] = (1, 10, 20),
    std: bool = True,
) -> str:
    """A plain-text table like the papers': one row per setting, percentages.

    Columns ``Rank-1``, ``Rank-10``, ``Rank-20`` (``ranks``), ``mAP``, ``mINP``; cells are
    ``mean +- std`` over trials (``std=False``: mean only). A mapping's keys name the rows.

    Example:
        >>> import numpy as np
        >>> from mag_mmt.evaluation import ProtocolResult, rank_metrics, format_table
        >>> r = rank_metrics(np.array([[0.1, 0.9]]), [1], [1, 2], protocol="regdb")
        >>> print(format_table({"toy": ProtocolResult("toy", [r])}, ranks=(1, 2), std=False))
        Setting | Rank-1 | Rank-2 |    mAP |   mINP
        ------- | ------ | ------ | ------ | ------
        toy     | 100.00 | 100.00 | 100.00 | 100.00
    """
    rows = list(results.items()) if isinstance(results, Mapping) else [(r.name, r) for r in results]
    ranks = list(ranks)
    header = ["Setting", *[f"Rank-{k}" for k in ranks], "mAP", "mINP"]
    body = []
    for name, result in rows:
        summary = result.summary(ranks)
        cells = [name]
        for key in [f"rank-{k}" for k in ranks] + ["mAP", "mINP"]:
            if key not in summary:
                cells.append("-")
                continue
            mean, dev = summary[key]
            cells.append(f"{100 * mean:.2f} +- {100 * dev:.2f}" if std else f"{100 * mean:.2f}")
        body.append(cells)
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = [c.rjust(w) for c, w in zip(cells[1:], widths[1:])]
        return " | ".join([first, *rest])

    sep = " | ".join("-" * w for w in widths)
    return "\n".join([line(header), sep, *[line(r) for r in body]])


def aggregate_splits(per_split: Sequence[Mapping[str, ProtocolResult]]) -> dict[str, ProtocolResult]:
    """Merge per-split results (e.g. RegDB's 10 splits) into one result per setting.

    Every split must hold the same settings; the trials of a setting are concatenated in
    split order, so means and standard deviations are over splits.
    """
    if not per_split:
        raise UserError("aggregate_splits needs at least one split")
    keys = list(per_split[0])
    for i, split in enumerate(per_split):
        if list(split) != keys:
            raise UserError(f"split {i} has settings {list(split)}, expected {keys}")
    return {k: ProtocolResult.merge([split[k] for split in per_split]) for k in keys}
