#!/usr/bin/env bash
# Download (or build, for the few without one) cp312 x86-64 wheels of the project's runtime
# packages, torch and numpy excepted, at the versions of this checkout's .venv, into
# bench/.wheels (about 50 MB): what bench/gpu_check.sh unpacks on a machine with python 3.12
# and torch but nothing else of ours and no network. Needs a python3.12 here (WHEELS_PYTHON).
set -euo pipefail
cd "$(dirname "$0")/.."
py312="${WHEELS_PYTHON:-}"
if [ -z "$py312" ]; then
    for candidate in python3.12 "$HOME"/.pyenv/versions/3.12*/bin/python3.12; do
        if "$candidate" -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null; then
            py312="$candidate"
            break
        fi
    done
fi
[ -n "$py312" ] || { echo "gpu_wheels: no working python3.12 here; set WHEELS_PYTHON" >&2; exit 1; }
dest="${GPU_WHEELS:-bench/.wheels}"
mkdir -p "$dest"
constraints="$(mktemp)"
trap 'rm -f "$constraints"' EXIT
.venv/bin/python -m pip freeze | grep -v -i -E '^(torch|numpy|-e |gpumarket)' >"$constraints"
mapfile -t deps < <(.venv/bin/python -c '
import tomllib
for dep in tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]:
    if not dep.startswith(("numpy", "torch")):
        print(dep)')
"$py312" -m pip wheel -q --prefer-binary -c "$constraints" -w "$dest" "${deps[@]}"
rm -f "$dest"/numpy-*.whl "$dest"/torch-*.whl
echo "gpu_wheels: $(ls "$dest"/*.whl | wc -l) wheels, $(du -sh "$dest" | cut -f1) in $dest"
