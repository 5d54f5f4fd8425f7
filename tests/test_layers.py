"""The direction of imports between the three layers of the package.

* layer 0, utilities: errors, input checks, modality codes, the distributed gather (torch only)
* layer 1, ``mag_mmt.functional``: pure tensor functions; torch, the standard library, layer 0
* layer 2, the library: every other module not in layer 3 (losses, augment, models, data, ...)
* layer 3, the application: the training loop, CLI, demo, ablation, recipes, run logs

Nothing in layers 0-2 may import layer 3, and layer 1 imports nothing but torch, the standard
library and layers 0-1 (no kornia, numpy or torchvision). Checked twice: statically (every
``import`` statement of every file, function bodies included) and at run time (what importing a
module in a fresh interpreter loads).
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mag_mmt"

LAYER0 = ("mag_mmt.errors", "mag_mmt._validation", "mag_mmt.modalities", "mag_mmt.distributed", "mag_mmt.device")
LAYER1 = ("mag_mmt.functional",)
LAYER3 = (
    "mag_mmt.training",
    "mag_mmt.cli",
    "mag_mmt.demo",
    "mag_mmt.ablation",
    "mag_mmt.recipes",
    "mag_mmt.runlog",
)
#: layer-2 entry points imported in a fresh interpreter
LIBRARY = (
    "mag_mmt",
    "mag_mmt.losses",
    "mag_mmt.augment",
    "mag_mmt.augment_kornia",
    "mag_mmt.augment_v2",
    "mag_mmt.memory",
    "mag_mmt.transforms",
    "mag_mmt.distributed",
    "mag_mmt.models",
    "mag_mmt.data",
    "mag_mmt.evaluation",
    "mag_mmt.adapters",
    "mag_mmt.pretrain",
    "mag_mmt.checkpoint",
    "mag_mmt.visualize",
    "mag_mmt.schedule",
)
#: known violations, each owned by a pending change (strict: the marker must go once fixed)
KNOWN: dict[str, str] = {}


def _in(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def layer(module: str) -> int:
    if _in(module, LAYER0):
        return 0
    if _in(module, LAYER1):
        return 1
    if _in(module, LAYER3):
        return 3
    return 2


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path) -> list[str]:
    """Absolute names of everything ``path`` imports (for ``from X import y``: ``X`` and ``X.y``)."""
    return imports_of(_module_name(path), path.name == "__init__.py", path.read_text(encoding="utf-8"))


def imports_of(name: str, is_package: bool, source: str) -> list[str]:
    package = name if is_package else name.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            out.append(target)
            out += [f"{target}.{a.name}" for a in node.names if a.name != "*"]
    return out


FILES = sorted(p for p in PACKAGE.rglob("*.py") if layer(_module_name(p)) < 3)


def _param(path: Path):
    name = _module_name(path)
    marks = [pytest.mark.xfail(strict=True, reason=KNOWN[name])] if name in KNOWN else []
    return pytest.param(path, id=name, marks=marks)


def test_layer_lists_name_real_modules():
    names = {_module_name(p) for p in PACKAGE.rglob("*.py")}
    for prefix in LAYER0 + LAYER1 + LIBRARY:
        assert any(_in(n, (prefix,)) for n in names), prefix
    assert layer("mag_mmt.training.loop") == 3 and layer("mag_mmt.functional.mining") == 1


@pytest.mark.parametrize("path", [_param(p) for p in FILES])
def test_no_file_below_the_application_imports_it(path):
    bad = [m for m in imported_modules(path) if m.startswith("mag_mmt") and layer(m) == 3]
    assert not bad, f"{_module_name(path)} (layer {layer(_module_name(path))}) imports layer 3: {bad}"


@pytest.mark.parametrize("path", [p for p in FILES if layer(_module_name(p)) <= 1], ids=_module_name)
def test_functional_core_imports_only_torch_and_the_stdlib(path):
    own = layer(_module_name(path))
    bad = []
    for m in imported_modules(path):
        top = m.split(".")[0]
        if top == "mag_mmt":
            if m != "mag_mmt" and layer(m) > own:
                bad.append(m)
        elif top not in ("torch", "__future__") and top not in sys.stdlib_module_names:
            bad.append(m)
    assert not bad, f"{_module_name(path)} (layer {own}) imports {bad}"


def test_top_level_lazy_exports_are_below_the_application():
    """``mag_mmt.__getattr__`` imports by name (invisible to the static check): its targets too."""
    import mag_mmt

    targets = [*mag_mmt._EXPORTS.values(), *(f"mag_mmt.{m}" for m in mag_mmt._SUBMODULES)]
    assert targets and all(layer(m) < 3 for m in targets), [m for m in targets if layer(m) == 3]


def test_static_check_sees_function_level_and_relative_imports():
    src = "import torch\n\ndef f():\n    from ..training import train\n    from . import protocols\n"
    got = imports_of("mag_mmt.evaluation.metrics", False, src)
    assert got == ["torch", "mag_mmt.training", "mag_mmt.training.train", "mag_mmt.evaluation",
                   "mag_mmt.evaluation.protocols"]
    assert imports_of("mag_mmt.data", True, "from .records import VISIBLE")[0] == "mag_mmt.data.records"


def _loaded_by(*modules: str) -> dict[str, list[str]]:
    """Import ``modules`` in this order in a fresh interpreter that has imported torch; for each,
    the modules its import added."""
    code = (
        "import importlib, json, sys, torch\n"
        "out = {}\n"
        f"for name in {list(modules)!r}:\n"
        "    before = set(sys.modules)\n"
        "    importlib.import_module(name)\n"
        "    out[name] = sorted(set(sys.modules) - before)\n"
        "print(json.dumps(out))\n"
    )
    env = dict(os.environ, OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_import_functional_loads_only_layers_0_and_1():
    loaded = _loaded_by("mag_mmt.functional")["mag_mmt.functional"]
    assert "mag_mmt.functional.triplet" in loaded  # the probe works
    # (torch itself imports numpy when it is installed: the static test above pins "no numpy")
    foreign = [m for m in loaded if m.split(".")[0] in ("kornia", "numpy", "torchvision", "PIL")]
    assert not foreign, foreign
    ours = [m for m in loaded if m.startswith("mag_mmt.")]
    assert all(layer(m) <= 1 for m in ours), ours


@pytest.mark.slow
def test_library_modules_load_no_application_module():
    """One interpreter imports every library entry point: if no layer-3 module is loaded at the
    end, none of them loads one (a module, once loaded, stays). The kornia-free ones go first."""
    light = ("mag_mmt", "mag_mmt.losses", "mag_mmt.augment", "mag_mmt.memory")
    loaded = _loaded_by(*light, *(m for m in LIBRARY if m not in light))
    assert list(loaded) == list(light) + [m for m in LIBRARY if m not in light]
    kornia = [(name, m) for name in light for m in loaded[name] if m.startswith("kornia")]
    assert not kornia, kornia
    app = [(name, m) for name, new in loaded.items() for m in new if m.startswith("mag_mmt.") and layer(m) == 3]
    assert not app, app
