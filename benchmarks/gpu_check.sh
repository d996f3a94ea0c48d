#!/usr/bin/env bash
# Runs benchmarks/gpu_check.py with the repository's venv python (or $PYTHON, or python3 where there is
# no venv, as on a fresh GPU machine), passing every argument through: see benchmarks/README.md.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="${PYTHON:-$here/../.venv/bin/python}"
[ -x "$python" ] || python=python3
exec "$python" "$here/gpu_check.py" "$@"
