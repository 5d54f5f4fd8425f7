"""The example scripts run end to end: the quickstart reports the MMT parts, the dual-path Swin
reference trains and prints its dataset's protocol table."""

import ast
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "quickstart.py"


@pytest.mark.slow
def test_quickstart_runs(capsys):
    spec = importlib.util.spec_from_file_location("quickstart", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    final = module.main(steps=6)
    printed = capsys.readouterr().out
    assert "MMAN" in printed and "valid anchors" in printed
    assert final == final and final > 0  # finite, positive


# --------------------------------------------------------------------------- examples/dual_path_swin.py

SWIN_EXAMPLE = EXAMPLE.parent / "dual_path_swin.py"
SUMMARY = re.compile(r"^(?P<setting>.+): rank-1 (?P<r1>[\d.]+)%  mAP (?P<map>[\d.]+)%  mINP (?P<minp>[\d.]+)%$", re.M)


def _summary(printed: str) -> dict[str, float]:
    match = SUMMARY.search(printed)
    assert match, printed
    values = {k: float(match.group(k)) for k in ("r1", "map", "minp")}
    assert all(0.0 <= v <= 100.0 for v in values.values()), values
    return {"setting": match.group("setting"), **values}


@pytest.mark.slow
def test_dual_path_swin_synthetic_quick_run():
    """The documented quick run (Swin-T, 224 x 224) trains 2 steps and prints the SYSU table."""
    proc = subprocess.run([sys.executable, str(SWIN_EXAMPLE), "--data", "synthetic", "--steps", "2"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "batch 2 x 2 x 2 at 224x224" in out
    assert "epoch 1 step 2  loss" in out
    for setting in ("all-search single-shot", "all-search multi-shot", "indoor-search single-shot",
                    "indoor-search multi-shot"):
        assert f"SYSU-MM01 {setting}" in out
    assert _summary(out)["setting"] == "SYSU-MM01 all-search single-shot"


def _run_swin(capsys, *argv: str):
    spec = importlib.util.spec_from_file_location("dual_path_swin", SWIN_EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    tiny = ["--model-config", "tiny-test", "--img-size", "32,16", "-P", "2", "-K", "2", "--device", "cpu",
            "--workers", "0"]
    results = module.main([*argv, *tiny])
    return results, capsys.readouterr().out


def test_dual_path_swin_regdb_on_disk(capsys, regdb_root, tmp_path):
    """RegDB read from its on-disk layout is trained on and scored in both directions."""
    saved = tmp_path / "model.pt"
    results, out = _run_swin(capsys, "--data", "regdb", "--root", str(regdb_root), "--steps", "2",
                             "--log-every", "1", "--save", str(saved))
    assert list(results) == ["RegDB visible-to-thermal", "RegDB thermal-to-visible"]
    assert "epoch 1 step 1  loss" in out and "epoch 1 step 2  loss" in out and "step 3" not in out
    assert "RegDB visible-to-thermal |" in out and "RegDB thermal-to-visible |" in out  # the table
    summary = _summary(out)
    assert summary["setting"] == "RegDB visible-to-thermal"
    assert summary["r1"] == pytest.approx(100 * results["RegDB visible-to-thermal"].cmc[0], abs=0.005)
    state = torch.load(saved, weights_only=True)
    assert state["head.classifier.weight"].shape[0] == 4  # the 4 RegDB training identities


@pytest.mark.parametrize("data", ["sysu", "manifest"])
def test_dual_path_swin_other_readers(capsys, data, sysu_root, manifest_csv):
    """SYSU-MM01 gets its four settings, a manifest the NPU-ReID ones (directions x searches)."""
    root = sysu_root if data == "sysu" else manifest_csv
    results, out = _run_swin(capsys, "--data", data, "--root", str(root), "--steps", "1")
    if data == "sysu":
        assert [r.name for r in results.values()][0] == "SYSU-MM01 all-search single-shot"
        assert len(results) == 4
    else:
        assert "NPU-ReID visible-to-thermal/indoor-search/single-shot" in results
        assert "NPU-ReID thermal-to-visible/outdoor-search/multi-shot" in results
    for result in results.values():
        assert 0.0 <= result.mAP <= 1.0 and 0.0 <= result.cmc[0] <= 1.0
    _summary(out)


def test_dual_path_swin_uses_the_public_api_only():
    """The reference example imports the library's public modules, never the CLI or the training loop."""
    tree = ast.parse(SWIN_EXAMPLE.read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    ours = {name for name in imported if name.split(".")[0] == "mag_mmt"}
    public = {"mag_mmt", "mag_mmt.data", "mag_mmt.device", "mag_mmt.evaluation", "mag_mmt.models", "mag_mmt.recipes",
              "mag_mmt.schedule", "mag_mmt.transforms"}
    assert ours and ours <= public, ours - public
