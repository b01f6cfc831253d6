#!/usr/bin/env bash
# The prepared GPU check (bench/gpu_check.py; its docstring says what it runs), with the
# project's Python packages brought where the machine lacks them: on a machine whose python3
# has torch but not pydantic/trio/web3 (a lent GPU machine, no network), the wheels that
# bench/gpu_wheels.sh downloaded into bench/.wheels (carry that path) are unpacked into a
# throwaway directory first. GPU_CHECK_PYTHON picks the interpreter; GPU_WHEELS the wheels.
#
#   bench/gpu_check.sh [--smoke] [bench/gpu_check.py options]
set -euo pipefail
cd "$(dirname "$0")/.."
py="${GPU_CHECK_PYTHON:-}"
if [ -z "$py" ]; then
    if [ -x .venv/bin/python ] && .venv/bin/python -c "import torch, pydantic" 2>/dev/null; then
        py=.venv/bin/python
    else
        py=python3
    fi
fi
site=""
if ! "$py" -c "import pydantic, trio, web3" 2>/dev/null; then
    wheels="${GPU_WHEELS:-bench/.wheels}"
    if compgen -G "$wheels/*.whl" >/dev/null; then
        site="$(mktemp -d "${TMPDIR:-/tmp}/gpumarket-site.XXXXXX")"
        echo "gpu_check: unpacking $(ls "$wheels"/*.whl | wc -l) wheels from $wheels into $site" >&2
        # A wheel is a zip of site-packages content: unpacking needs neither pip nor a venv.
        "$py" - "$site" "$wheels"/*.whl <<'PY'
import sys, zipfile
for wheel in sys.argv[2:]:
    zipfile.ZipFile(wheel).extractall(sys.argv[1])
PY
    else
        echo "gpu_check: $py lacks the project's packages and $wheels has no wheels" \
            "(run bench/gpu_wheels.sh where there is a network); going on with what imports" >&2
    fi
fi
export PYTHONPATH="$PWD${site:+:$site}${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
exec "$py" -m bench.gpu_check "$@"
