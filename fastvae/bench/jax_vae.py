"""The benchmark's VAE in JAX: the whole training step under one ``jax.jit``.

Same model and step as ``numpy_vae``: dense layers ``act(x @ W + b)``, a
linear encoder head ``[mu | logvar]`` with logvar clamped to [-30, 20],
``z = mu + exp(logvar / 2) * eps`` with eps drawn inside the step, Bernoulli
logits likelihood, loss = mean over the batch of recon + KL, Adam with
PyTorch's placement of eps written out (as a user without optax would).
Importing this module needs JAX.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

LOGVAR_MIN, LOGVAR_MAX = -30.0, 20.0


def init_layers(encoder_dims, decoder_dims, dtype="float32", seed=0):
    """Glorot-uniform (W, b) pairs, encoder first, as NumPy arrays."""
    rng = np.random.default_rng(seed)
    layers = []
    for dims in (encoder_dims, decoder_dims):
        for n_in, n_out in zip(dims[:-1], dims[1:], strict=True):
            limit = math.sqrt(6.0 / (n_in + n_out))
            layers.append(
                (
                    rng.uniform(-limit, limit, (n_in, n_out)).astype(dtype),
                    np.zeros(n_out, dtype),
                )
            )
    return layers


def negative_elbo(layers, x, eps, n_encoder):
    """Mean over the batch of recon + KL for a ReLU MLP VAE."""
    h = x
    for i, (W, b) in enumerate(layers[:n_encoder]):
        h = h @ W + b
        if i < n_encoder - 1:
            h = jax.nn.relu(h)
    latent = h.shape[1] // 2
    mu, logvar = h[:, :latent], jnp.clip(h[:, latent:], LOGVAR_MIN, LOGVAR_MAX)
    z = mu + jnp.exp(0.5 * logvar) * eps
    h = z
    decoder = layers[n_encoder:]
    for i, (W, b) in enumerate(decoder):
        h = h @ W + b
        if i < len(decoder) - 1:
            h = jax.nn.relu(h)
    recon = jnp.sum(jax.nn.softplus(h) - x * h)
    kl = 0.5 * jnp.sum(jnp.exp(logvar) + mu * mu - 1.0 - logvar)
    return (recon + kl) / x.shape[0]


def make_trainer(
    encoder_dims,
    decoder_dims,
    dtype="float32",
    lr=1e-3,
    seed=0,
    beta1=0.9,
    beta2=0.999,
    eps=1e-8,
):
    """Initial state and a jitted ``step(state, x) -> (state, loss)``."""
    n_encoder = len(encoder_dims) - 1
    latent = decoder_dims[0]
    layers = [
        tuple(jnp.asarray(a) for a in layer)
        for layer in init_layers(encoder_dims, decoder_dims, dtype, seed)
    ]
    zeros = jax.tree_util.tree_map(jnp.zeros_like, layers)
    state = (layers, zeros, zeros, jnp.zeros((), jnp.int32), jax.random.PRNGKey(seed))

    @jax.jit
    def step(state, x):
        params, m, v, t, key = state
        key, sub = jax.random.split(key)
        noise = jax.random.normal(sub, (x.shape[0], latent), x.dtype)
        loss, grads = jax.value_and_grad(negative_elbo)(params, x, noise, n_encoder)
        t = t + 1
        m = jax.tree_util.tree_map(lambda a, g: beta1 * a + (1 - beta1) * g, m, grads)
        v = jax.tree_util.tree_map(
            lambda a, g: beta2 * a + (1 - beta2) * g * g, v, grads
        )
        step_size = lr / (1 - beta1**t)
        root_bc2 = jnp.sqrt(1 - beta2**t)
        params = jax.tree_util.tree_map(
            lambda p, a, b: p - step_size * a / (jnp.sqrt(b) / root_bc2 + eps),
            params,
            m,
            v,
        )
        return (params, m, v, t, key), loss

    return state, step
