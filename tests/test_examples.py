"""The example script runs end to end and reports the MMT parts."""

import importlib.util
from pathlib import Path

import pytest

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
