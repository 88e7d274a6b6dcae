#!/usr/bin/env bash
# Create .venv and install the pinned requirements (CPU torch); extra requirement files may be named
# (scripts/test.sh adds requirements-scale.txt, the optional Ray engine). Safe to re-run: it only installs what changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
# one stamp per requirements file: the dashboard (requirements.txt) and the tests (plus requirements-scale.txt) share a
# venv without reinstalling each other's packages; requirements.txt's pins are always given to pip with the others
changed=()
for f in requirements.txt "$@"; do
  [ "$(cat ".venv/.stamp-$(basename "$f")" 2>/dev/null)" = "$(sha256sum < "$f")" ] || changed+=("$f")
done
if [ ${#changed[@]} -gt 0 ]; then
  if [ "${changed[0]}" = requirements.txt ]; then
    .venv/bin/python -m pip install -q --upgrade pip
    # torch first and alone: the CPU build on this machine's disk, never a CUDA download
    .venv/bin/python -m pip install -q "$(grep '^torch==' requirements.txt)"
  fi
  extra=()
  for f in "${changed[@]}"; do [ "$f" = requirements.txt ] || extra+=(-r "$f"); done
  .venv/bin/python -m pip install -q -r requirements.txt "${extra[@]}"
  for f in "${changed[@]}"; do sha256sum < "$f" > ".venv/.stamp-$(basename "$f")"; done
fi
