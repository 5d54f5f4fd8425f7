import os

import pytest
import torch
from hypothesis import HealthCheck, settings

settings.register_profile(
    "default",
    deadline=None,
    max_examples=60,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("ci", parent=settings.get_profile("default"), derandomize=True)
settings.load_profile("ci" if os.environ.get("CI") else "default")

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (none present)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


# --------------------------------------------------------------------------- datasets on disk


@pytest.fixture(scope="session")
def sysu_root(tmp_path_factory):
    """A tiny SYSU-MM01 in its released layout (see ``tests/layouts.py``); do not modify."""
    from tests.layouts import write_sysu

    return write_sysu(tmp_path_factory.mktemp("SYSU-MM01"))


@pytest.fixture(scope="session")
def regdb_root(tmp_path_factory):
    """A tiny RegDB (trial 1) with its ``idx/`` lists; do not modify."""
    from tests.layouts import write_regdb

    return write_regdb(tmp_path_factory.mktemp("RegDB"))


@pytest.fixture(scope="session")
def manifest_csv(tmp_path_factory):
    """A tiny NPU-ReID-style manifest (4 visible + 4 thermal cameras, indoor/outdoor); do not modify."""
    from tests.layouts import write_manifest

    return write_manifest(tmp_path_factory.mktemp("NPU-ReID"))
