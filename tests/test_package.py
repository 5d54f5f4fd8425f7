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
