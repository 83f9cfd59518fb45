"""Train a tiny VAE with the nogil loop of the embed extension.

    python setup.py build_ext --inplace && python demo.py

The Python side only sets things up: a fastvae._core._network.Network describes the
architecture and the layout of the flat parameter buffer; embed.train copies
that layout into a C struct once and runs every step without the GIL.
"""

import embed
import numpy as np

from fastvae._core import _dense, _network
from fastvae._core.params import Layout
from fastvae._core.threads import blas_single_threaded, partition_count

D, H, K, BATCH, STEPS, SEED = 64, 32, 4, 16, 200, 0

relu, identity = _dense.ACTIVATIONS["relu"], _dense.ACTIVATIONS["identity"]
layout = Layout((D, H, 2 * K), (K, H, D))  # encoder and decoder widths
network = _network.Network(
    layout.encoder_dims,
    layout.decoder_dims,
    [relu, identity, relu, identity],  # the head and the output are linear
    layout.w_offsets,
    layout.b_offsets,
    layout.size,
    "bernoulli",
    1.0,  # sigma, unused by a Bernoulli likelihood
    BATCH,  # max_batch
    np.float32,
    partition_count(),  # GEMM blocks, as fastvae.VAE uses
)
network.set_optimizer("adam", 1e-2)

rng = np.random.default_rng(SEED)
prototypes = rng.random((4, D)) < 0.5  # four binary patterns, 5% of bits flipped
X = (prototypes[rng.integers(0, 4, 512)] ^ (rng.random((512, D)) < 0.05)).astype(
    np.float32
)
params = layout.zeros(np.float32)  # 64-byte aligned, padding zero
for W, _ in layout.views(params):
    W[...] = rng.uniform(-1, 1, W.shape) * np.sqrt(6 / sum(W.shape))
m, v = layout.zeros(np.float32), layout.zeros(np.float32)  # Adam's moments
rows = np.stack([rng.choice(len(X), BATCH, replace=False) for _ in range(STEPS)])

with blas_single_threaded():  # OpenMP owns the cores, BLAS runs inside it
    sums = embed.train(network, params, m, v, X, rows.astype(np.int64), seed=SEED)

loss = sums.sum(axis=1) / BATCH  # negative ELBO per sample, nats
print(
    f"negative ELBO per sample: first 10 steps {loss[:10].mean():.2f}, "
    f"last 10 steps {loss[-10:].mean():.2f}"
)
