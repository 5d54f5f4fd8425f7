#!/usr/bin/env bash
# Test the declared dependency floors: install the lowest version that pyproject.toml allows
# of every dependency except torch/torchvision (kornia, numpy, pillow, tqdm) into a fresh
# virtual environment, install this checkout with --no-deps, and run the fast tests.
#
# torch and torchvision install only at one version on the machines this project is tested on,
# so they come from the interpreter's own site-packages (--system-site-packages) when present
# there, else from `pip install torch==$TORCH torchvision==$TORCHVISION`. The venv's own
# installs shadow the system copies of the floored packages; the script checks that the
# interpreter really imports the floor versions before it runs the tests.
#
# Usage: scripts/test_floors.sh [extra pytest args]
#   FLOORS_VENV=/path  reuse or create the venv there (default: a fresh temporary folder)
#   PYTHON=python3.11  the interpreter to build the venv from (default: python3)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TORCH=${TORCH:-2.14.1}
TORCHVISION=${TORCHVISION:-0.29.1}
start=$(date +%s)
tmp=""
finish() {
  local rc=$?
  [ -n "$tmp" ] && rm -rf "$tmp"
  echo "test_floors.sh: finished (exit $rc) in $(( $(date +%s) - start )) s"
}
trap finish EXIT

# The floors, read from pyproject.toml's `dependencies` ("name>=X" -> "name==X").
mapfile -t floors < <("$PYTHON" - <<'PY'
import re, tomllib
deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]
for dep in deps:
    m = re.fullmatch(r"\s*([A-Za-z0-9_.-]+)\s*>=\s*([0-9][0-9A-Za-z.]*)\s*", dep)
    if m is None:
        raise SystemExit(f"test_floors.sh: cannot read a floor from dependency {dep!r}")
    name, version = m.groups()
    if name.lower() not in ("torch", "torchvision"):
        print(f"{name}=={version}")
PY
)
echo "floors: ${floors[*]}"

if [ -n "${FLOORS_VENV:-}" ]; then
  venv=$FLOORS_VENV
else
  tmp=$(mktemp -d)
  venv=$tmp/venv
fi
[ -x "$venv/bin/python" ] || "$PYTHON" -m venv --system-site-packages "$venv"
py="$venv/bin/python"
if ! "$py" -c "import torch, torchvision, sys; sys.exit(not (torch.__version__.split('+')[0] == '$TORCH' and torchvision.__version__.split('+')[0] == '$TORCHVISION'))" 2>/dev/null; then
  "$py" -m pip install -q "torch==$TORCH" "torchvision==$TORCHVISION"
fi
# Wheels only: a floor that would have to be compiled here is not a floor users can install.
"$py" -m pip install -q --disable-pip-version-check --only-binary=:all: "${floors[@]}" \
  "pytest>=7" "hypothesis>=6.80"
"$py" -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .

# Check that the venv imports exactly the floors (not the system's newer copies).
"$py" - "${floors[@]}" <<'PY'
import importlib, importlib.metadata as md, sys
modules = {"pillow": "PIL", "kornia": "kornia", "numpy": "numpy", "tqdm": "tqdm"}
def norm(v):  # "0.7" == "0.7.0"
    parts = [int(p) for p in v.split(".")]
    while parts and parts[-1] == 0:
        parts.pop()
    return parts
for spec in sys.argv[1:]:
    name, version = spec.split("==")
    got = md.version(name)
    mod = importlib.import_module(modules.get(name.lower(), name))
    print(f"  {name} {got} from {mod.__file__}")
    if norm(got) != norm(version) or not mod.__file__.startswith(sys.prefix):
        raise SystemExit(f"test_floors.sh: expected {name}=={version} from the venv, got {got} ({mod.__file__})")
import torch, torchvision, mag_mmt
print(f"  torch {torch.__version__}, torchvision {torchvision.__version__}; mag_mmt from {mag_mmt.__file__}")
PY

PYTHONPATH=$PWD "$py" -m pytest -q -m "not slow" -p no:cacheprovider "$@"
