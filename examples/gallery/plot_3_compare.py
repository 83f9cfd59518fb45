"""
Part 3: training, inference and a comparison
============================================

Four models of the same MNIST digits, side by side:

- a variational autoencoder, :class:`fastvae.VAE`;
- a plain autoencoder, :class:`fastvae.Autoencoder`: the same networks
  trained to reconstruct, with a deterministic code and no KL term;
- a denoising autoencoder, :class:`fastvae.DenoisingAutoencoder`: the same
  again, trained to reconstruct clean images from copies with a quarter of
  their pixels erased;
- scikit-learn's :class:`~sklearn.neural_network.BernoulliRBM`, a restricted
  Boltzmann machine: an energy-based model of binary data trained with
  persistent contrastive divergence.

All four train on the same 6,000 images for a few seconds, and we ask each
to reconstruct test images and to generate new ones.
"""

# %%
# Training
# --------
# The three fastvae estimators share one API and one compiled training step;
# only the objective differs. The RBM needs values in [0, 1], which MNIST's
# scaled intensities are. scikit-learn's RBM computes with NumPy's BLAS: we
# keep that to one thread, since a threaded BLAS slows to a crawl on a
# machine whose cores are busy with other work (fastvae limits BLAS the same
# way inside its own calls, and runs its own thread pool).
import time

import matplotlib.pyplot as plt
import numpy as np
from sklearn.neural_network import BernoulliRBM
from threadpoolctl import threadpool_limits

import fastvae
from fastvae import data

train = data.load_mnist(split="train").X[:6000]
test_set = data.load_mnist(split="test")
test = test_set.X[::10]  # 1,000 test images

settings = dict(hidden=(256,), latent_dim=16, epochs=8, batch_size=100, random_state=0)
models = {
    "VAE": fastvae.VAE(**settings),
    "autoencoder": fastvae.Autoencoder(**settings),
    "denoising AE": fastvae.DenoisingAutoencoder(corruption=0.25, **settings),
    "RBM": BernoulliRBM(
        n_components=128, learning_rate=0.06, batch_size=10, n_iter=10, random_state=0
    ),
}
for name, model in models.items():
    start = time.perf_counter()
    with threadpool_limits(limits=1, user_api="blas"):
        model.fit(train)
    print(f"{name:13s} trained in {time.perf_counter() - start:4.1f} s")

# %%
# Inference: reconstructions
# --------------------------
# The autoencoders and the VAE encode an image to a code and decode it back
# (the VAE through its posterior mean). An RBM has no code in that sense;
# its closest analogue is one up-down pass: the hidden units' probabilities
# given the image, then the visible units' probabilities given those.


def sigmoid(a):
    return 1 / (1 + np.exp(-a))


def rbm_reconstruct(rbm, X):
    hidden = rbm.transform(X)  # P(h = 1 | v)
    return sigmoid(hidden @ rbm.components_ + rbm.intercept_visible_)


def show_rows(rows, labels, title):
    n_cols = rows[0].shape[0]
    width = 1.2 + n_cols * 0.55  # 1.2 inches for the row labels
    fig, axes = plt.subplots(len(rows), n_cols, figsize=(width, len(rows) * 0.62 + 0.4))
    fig.subplots_adjust(left=1.2 / width, right=0.98, wspace=0.1, hspace=0.1)
    for r, (images, label) in enumerate(zip(rows, labels, strict=True)):
        for c in range(n_cols):
            ax = axes[r, c]
            ax.imshow(images[c].reshape(28, 28), cmap="gray_r", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    fig.suptitle(title)
    plt.show()


# the first test image of each digit
originals = test_set.X[[np.flatnonzero(test_set.y == d)[0] for d in range(10)]]
reconstructions = {
    "VAE": models["VAE"].reconstruct(originals),
    "autoencoder": models["autoencoder"].reconstruct(originals),
    "denoising AE": models["denoising AE"].reconstruct(originals),
    "RBM": rbm_reconstruct(models["RBM"], originals),
}
show_rows(
    [originals, *reconstructions.values()],
    ["original", *reconstructions],
    "reconstructions of test images",
)

# %%
# How close the reconstructions are, as the mean squared error per pixel
# over the 1,000 test images:
errors = {
    "VAE": models["VAE"].reconstruct(test),
    "autoencoder": models["autoencoder"].reconstruct(test),
    "denoising AE": models["denoising AE"].reconstruct(test),
    "RBM": rbm_reconstruct(models["RBM"], test),
}
for name, recon in errors.items():
    print(f"{name:13s} reconstruction MSE {np.mean((recon - test) ** 2):.4f}")

# %%
# The plain autoencoder reconstructs best: all of its code is spent on
# reconstruction, while the VAE pays for a code distribution close to the
# prior (its KL term). The denoising autoencoder shows what it was trained
# for when the input is damaged. Erase a quarter of the pixels at random and
# reconstruct:
rng = np.random.default_rng(0)
damaged = originals * (rng.random(originals.shape) >= 0.25)
show_rows(
    [
        damaged,
        models["autoencoder"].reconstruct(damaged),
        models["denoising AE"].reconstruct(damaged),
    ],
    ["damaged", "autoencoder", "denoising AE"],
    "reconstructing damaged images",
)

# %%
# Generation
# ----------
# Here the models part ways.
#
# - The **VAE** samples in one step: decode z ~ N(0, I), the prior it was
#   trained to match (:meth:`fastvae.VAE.sample`).
# - The **autoencoders** have no prior. Nothing in their training says which
#   codes are likely, so there is nothing to sample from: decoding the same
#   N(0, I) draws (below, codes scaled to the spread of the training codes)
#   gives mostly shapes that are no digit.
# - The **RBM** does define a distribution, but only up to its normalising
#   constant; drawing from it needs a Markov chain, alternating Gibbs steps
#   h ~ p(h | v), v ~ p(v | h), many of them, started here from random
#   pixels, and successive samples of one chain are strongly correlated.
#   Chains mix slowly: after a few hundred steps, chains started from
#   different noise often sit in the same few modes.
n = 10
vae_samples = models["VAE"].sample(n, seed=1)

rng = np.random.default_rng(1)
ae_codes = models["autoencoder"].transform(train[:2000])
z = rng.standard_normal((n, 16)) * ae_codes.std(axis=0) + ae_codes.mean(axis=0)
ae_samples = models["autoencoder"].decode(z.astype(np.float32))

rbm = models["RBM"]
v = (rng.random((n, 784)) < 0.5).astype(np.float64)
start = time.perf_counter()
with threadpool_limits(limits=1, user_api="blas"):
    for _ in range(300):
        v = rbm.gibbs(v)
print(f"300 Gibbs steps for {n} chains: {time.perf_counter() - start:.1f} s")
hidden = rbm.transform(v)
rbm_samples = sigmoid(hidden @ rbm.components_ + rbm.intercept_visible_)

show_rows(
    [vae_samples, ae_samples, rbm_samples],
    ["VAE", "autoencoder", "RBM (Gibbs)"],
    "new images",
)

# %%
# What each can and cannot do
# ---------------------------
# The VAE alone gives a number for how likely an image is that can be
# compared between models: a lower bound (:meth:`~fastvae.VAE.score`, the
# ELBO) and an importance-sampled estimate of log p(x)
# (:meth:`~fastvae.VAE.log_likelihood`). An RBM's likelihood needs its
# partition function, which is intractable; scikit-learn reports a
# *pseudo*-likelihood instead
# (:meth:`~sklearn.neural_network.BernoulliRBM.score_samples`), a different
# quantity. The autoencoders' ``score`` is the reconstruction
# log-likelihood of the input, which is not a density: it rewards copying.
binary_test = data.sample_binarize(test, seed=0)
vae, ae = models["VAE"], models["autoencoder"]
print(
    f"VAE      ELBO {vae.score(binary_test):8.1f}   "
    f"log p(x) (k=100) {vae.log_likelihood(binary_test, k=100).mean():8.1f}"
)
print(
    f"AE       reconstruction log-likelihood {ae.score(binary_test):8.1f}"
    "  (not a density)"
)
print(
    f"RBM      pseudo-log-likelihood {rbm.score_samples(binary_test).mean():8.1f}"
    "  (not comparable)"
)

# %%
# ================== ============= ============ ============= ================
# model              encode        reconstruct  sample        density of x
# ================== ============= ============ ============= ================
# VAE                q(z|x)        yes          z ~ N(0, I)   ELBO, log p(x)
# autoencoder        a point       best         no prior      no
# denoising AE       a point       from damage  no prior      no
# RBM                P(h|v)        up-down      Gibbs chains  up to a constant
# ================== ============= ============ ============= ================
#
# Further: :doc:`/user_guide/models` (beta, warm-up, conditional VAEs,
# learned Gaussian noise), :doc:`/user_guide/results` (a published MNIST
# log-likelihood reproduced).
