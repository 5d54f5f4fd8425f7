import importlib

import pytest

import mag_mmt


def test_version_and_modality_codes():
    assert mag_mmt.__version__
    assert (mag_mmt.VISIBLE, mag_mmt.THERMAL) == (0, 1)


def test_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no_such_name"):
        mag_mmt.no_such_name  # noqa: B018


@pytest.mark.parametrize("name", sorted(mag_mmt._EXPORTS))
def test_every_export_resolves(name):
    obj = getattr(mag_mmt, name)
    module = importlib.import_module(mag_mmt._EXPORTS[name])
    assert getattr(module, name) is obj


def test_functional_names_exist():
    import mag_mmt.functional as F

    for name in F.__all__:
        assert callable(getattr(F, name)), name


def test_functional_is_an_attribute_after_import_mag_mmt():
    """In a fresh interpreter, ``import mag_mmt`` alone gives ``mag_mmt.functional``, without kornia."""
    import os
    import subprocess
    import sys

    code = ("import sys, mag_mmt\n"
            "f = mag_mmt.functional.multi_masking_triplet_loss\n"
            "assert 'functional' in dir(mag_mmt) and f.__module__ == 'mag_mmt.functional.triplet'\n"
            "assert not [m for m in sys.modules if m.startswith('kornia')]\n"
            "print('ok')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
