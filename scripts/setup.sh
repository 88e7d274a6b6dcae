#!/usr/bin/env bash
# Create .venv and install the pinned requirements (CPU torch); extra requirement files may be named
# (scripts/test.sh adds requirements-scale.txt, the optional Ray engine). Safe to re-run: it only installs what changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.requirements.sha
want=$(cat requirements.txt "$@" | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  # torch first and alone: the CPU build on this machine's disk, never a CUDA download
  .venv/bin/python -m pip install -q "$(grep '^torch==' requirements.txt)"
  extra=()
  for f in "$@"; do extra+=(-r "$f"); done
  .venv/bin/python -m pip install -q -r requirements.txt "${extra[@]}"
  echo "$want" > "$stamp"
fi
