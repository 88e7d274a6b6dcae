#!/usr/bin/env bash
# Create .venv and install the pinned requirements (CPU torch). Safe to re-run: it only installs what changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.requirements.sha
want=$(sha256sum requirements.txt | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  # torch first and alone: the CPU build on this machine's disk, never a CUDA download
  .venv/bin/python -m pip install -q "$(grep '^torch==' requirements.txt)"
  .venv/bin/python -m pip install -q -r requirements.txt
  echo "$want" > "$stamp"
fi
