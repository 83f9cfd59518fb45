#!/bin/sh
# Regenerates the example pictures of the README (docs/images/*.png) with the
# command line: a VAE trained for 10 epochs on 10,000 built-in shapes images.
# Run from anywhere with fastvae installed; about a minute on 2 cores.
set -e
images="$(cd "$(dirname "$0")" && pwd)/images"
run="$(mktemp -d)"
trap 'rm -rf "$run"' EXIT
fastvae train --n-samples 10000 --epochs 10 --hidden 400 --latent-dim 8 --quiet --out "$run"
fastvae sample --model "$run/model.npz" -n 36 --out "$images/samples.png"
fastvae reconstruct --model "$run/model.npz" --n-samples 16 -n 8 --out "$images/reconstructions.png"
fastvae traverse --model "$run/model.npz" --data shapes --n-samples 2000 --index 0 --steps 7 --out "$images/traverse.png"
fastvae interpolate --model "$run/model.npz" --n-samples 16 --from 1 --to 2 --steps 8 --out "$images/interpolate.png"
fastvae plot --run "$run" --out "$images" --max-points 500
ls -l "$images"
