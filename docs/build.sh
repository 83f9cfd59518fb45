#!/usr/bin/env bash
# Builds the documentation site (HTML) into docs/_build/html, running the
# gallery (examples/gallery) on the way. Warnings are errors: the script
# exits non-zero on any warning, a failing example or a docstring numpydoc
# rejects. It installs nothing: run it in an environment with fastvae and
# docs/requirements.txt installed (pip install -e ".[docs]"). The gallery
# reads MNIST from $FASTVAE_DATA_DIR, by default ../shared/data beside the
# repository. Extra arguments go to sphinx-build (e.g. -q).
set -euo pipefail
docs="$(cd "$(dirname "$0")" && pwd)"
out="$docs/_build"
# Generated pages are rebuilt every time, so a removed object or example
# cannot linger in them.
rm -rf "$out" "$docs/generated" "$docs/auto_examples"
data="${FASTVAE_DATA_DIR:-$docs/../../shared/data}"
if [ ! -f "$data/mnist/train-images-idx3-ubyte.gz" ]; then
    echo "docs: MNIST not found in $data/mnist; the gallery trains on it." >&2
    echo "docs: set FASTVAE_DATA_DIR to a folder holding mnist/ (../shared/data beside the repository by default)." >&2
    exit 1
fi
start=$(date +%s)
python -m sphinx -b html -W --keep-going -j 1 "$@" "$docs" "$out/html"
echo "docs: built $out/html/index.html in $(( $(date +%s) - start )) s"
