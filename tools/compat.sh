#!/usr/bin/env bash
# `make compat`: the oldest versions pyproject.toml promises (Python 3.10, torch 2.2 with its torchvision
# 0.17 and numpy 1.x), checked: the unit tests and the notebooks (reduced mode) in a virtual environment
# outside the repository. Slow (a fresh environment downloads torch); not part of `make test`.
#
# Settings (environment variables):
#   COMPAT_PYTHON    the interpreter to build from; default: python3.10 on PATH, else pyenv's newest 3.10
#   COMPAT_VENV      where the environment lives (reused while the pins and Python stay the same);
#                    default: /tmp/tlhelpers-compat-venv
#   COMPAT_DATA      the notebooks' data folder (TLH_DATA), emptied first so that every notebook trains
#                    with these versions instead of resuming the checkpoints and caches of data/;
#                    default: /tmp/tlhelpers-compat-data
#   COMPAT_PIP_ARGS  extra pip options, e.g. an --index-url of CPU-only torch wheels (PyPI's Linux
#                    torch 2.2.2 wheel pulls about 2.8 GB of CUDA libraries)
#   COMPAT_PINS      the pinned versions; default below
set -uo pipefail
cd "$(dirname "$0")/.."

PINS=${COMPAT_PINS:-"torch==2.2.2 torchvision==0.17.2 numpy<2"}
VENV=${COMPAT_VENV:-/tmp/tlhelpers-compat-venv}
DATA=${COMPAT_DATA:-/tmp/tlhelpers-compat-data}
PY=${COMPAT_PYTHON:-}
PIP_ARGS=${COMPAT_PIP_ARGS:-}
if [ -z "$PY" ]; then
    if command -v python3.10 >/dev/null 2>&1 && python3.10 -c '' 2>/dev/null; then
        PY=python3.10
    elif command -v pyenv >/dev/null 2>&1 && v=$(pyenv latest 3.10 2>/dev/null); then
        PY="$(pyenv root)/versions/$v/bin/python"
    else
        echo "compat: no Python 3.10 found; install one (e.g. pyenv install 3.10) or set COMPAT_PYTHON." >&2
        exit 2
    fi
fi

stamp="$VENV/.compat-stamp"
want="$PINS | $("$PY" --version 2>&1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "compat: building $VENV from $("$PY" --version 2>&1) with $PINS"
    rm -rf "$VENV"
    "$PY" -m venv "$VENV" || exit 2
    echo "$want" > "$stamp"
fi
# every time (quick when nothing changed), in one resolver run so the extras cannot lift the pins
# shellcheck disable=SC2086
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check $PIP_ARGS $PINS -e '.[course,dev]' \
    || { echo "compat: pip install failed" >&2; exit 2; }
"$VENV/bin/python" -c 'import sys, torch, torchvision, numpy
print(f"compat: Python {sys.version.split()[0]}, torch {torch.__version__}, "
      f"torchvision {torchvision.__version__}, numpy {numpy.__version__}")' || exit 2

export TLH_REDUCED=1 TQDM_MININTERVAL=10
PYTEST=("$VENV/bin/python" -m pytest -q -p no:cacheprovider)
start=$SECONDS
"${PYTEST[@]}" tests
unit=$?
echo "compat: unit tests exit $unit in $((SECONDS - start)) s"
rm -rf "$DATA" && mkdir -p "$DATA" || exit 2
start=$SECONDS
TLH_DATA="$DATA" "${PYTEST[@]}" --nbval-lax --nbval-current-env notebooks examples
nb=$?
echo "compat: notebooks exit $nb in $((SECONDS - start)) s"
[ "$unit" -eq 0 ] && [ "$nb" -eq 0 ]
