"""
Part 1: what a VAE is
=====================

A variational autoencoder is a *generative* model: it learns a distribution
p(x) over data such as images of digits, and new images are drawn from it in
two steps,

1. draw a code :math:`z \\sim \\mathcal{N}(0, I)` from the prior, a standard
   normal distribution over a small latent space (here 16 numbers);
2. decode it: a neural network :math:`f(z)` (the *decoder*) gives the
   parameters of :math:`p(x \\mid z)`, here the probability of each pixel
   being ink (a Bernoulli likelihood).

To learn the decoder, the VAE also trains an *encoder* that maps an image x
to a distribution :math:`q(z \\mid x) = \\mathcal{N}(\\mu(x),
\\operatorname{diag} \\sigma^2(x))` over the codes that could have produced
it. Part 2 (:ref:`sphx_glr_auto_examples_plot_2_elbo.py`) derives the
objective that trains both; here we train a model and use it.

The generation step needs only the decoder: no image goes in.
"""

# %%
# Data: a subsample of MNIST
# --------------------------
# :func:`fastvae.data.load_mnist` reads the original IDX files (checked
# against their published checksums) from ``$FASTVAE_DATA_DIR/mnist``, here
# ``../shared/data/mnist``; pixels are scaled to [0, 1]. A few thousand
# images are plenty for a few seconds of training.
import matplotlib.pyplot as plt
import numpy as np

import fastvae
from fastvae import data

mnist = data.load_mnist(split="train")
train = mnist.subset(slice(0, 10000))
print(train.X.shape, train.X.dtype, train.X.min(), train.X.max())

# %%
# Train a VAE
# -----------
# :class:`fastvae.VAE` follows scikit-learn's conventions: the constructor
# stores settings and :meth:`~fastvae.VAE.fit` trains. One hidden layer of
# 256 units in the encoder (and, mirrored, in the decoder), a 16-dimensional
# code, a Bernoulli likelihood for pixel intensities in [0, 1].
vae = fastvae.VAE(
    hidden=(256,), latent_dim=16, epochs=8, batch_size=100, random_state=0
)
vae.fit(train.X)
print(
    f"{vae.n_iter_} epochs, {vae.t_} steps, "
    f"training ELBO {vae.history_['elbo'][-1]:.1f} nats per image"
)

# %%
# Generate: decode z ~ N(0, I)
# ----------------------------
# Drawing the codes by hand makes the recipe explicit:
# :meth:`~fastvae.VAE.decode` returns the mean of :math:`p(x \mid z)`, the
# ink probability of every pixel. (:meth:`~fastvae.VAE.sample` does the same
# in one call, with fastvae's own random stream.)
rng = np.random.default_rng(0)
z = rng.standard_normal((36, vae.latent_dim)).astype(np.float32)
images = vae.decode(z)


def show_grid(images, n_cols, title, ax=None):
    """Tile 28x28 images into one picture."""
    n_rows = int(np.ceil(len(images) / n_cols))
    grid = np.ones((n_rows * 29 + 1, n_cols * 29 + 1))
    for i, image in enumerate(images):
        r, c = divmod(i, n_cols)
        grid[1 + 29 * r : 29 * (r + 1), 1 + 29 * c : 29 * (c + 1)] = image.reshape(
            28, 28
        )
    ax = ax or plt.figure(figsize=(n_cols * 0.6, n_rows * 0.6 + 0.4)).gca()
    ax.imshow(grid, cmap="gray_r", vmin=0, vmax=1)
    ax.set_title(title)
    ax.axis("off")
    return ax


show_grid(images, 6, "decode(z), z ~ N(0, I)")
plt.show()

# %%
# Every image above is new: none of them is a training image. They are
# blurry because each one is the *mean* of :math:`p(x \mid z)`, and because
# this model is small and trained for seconds;
# :doc:`/user_guide/results` shows what longer training reaches.
#
# The same model as an encoder
# ----------------------------
# Going the other way, :meth:`~fastvae.VAE.encode` gives the parameters of
# :math:`q(z \mid x)`, and :meth:`~fastvae.VAE.reconstruct` decodes the
# posterior mean. Originals on the top row, reconstructions below:
test = data.load_mnist(split="test").subset(slice(0, 8))
mu, logvar = vae.encode(test.X)
print("mu", mu.shape, "sigma of the first code:", np.exp(logvar[0] / 2).round(2))
show_grid(
    np.vstack([test.X, vae.reconstruct(test.X)]), 8, "originals / reconstructions"
)
plt.show()

# %%
# A two-dimensional latent space
# ------------------------------
# With a 2-D code the whole generative model fits in one picture: decode a
# grid of codes placed at the quantiles of N(0, 1) along each axis, so that
# equal areas of the picture hold equal prior mass. Nearby codes decode to
# similar images, and the digits morph into one another.
from scipy.stats import norm  # noqa: E402

vae2 = fastvae.VAE(
    hidden=(256,), latent_dim=2, epochs=8, batch_size=100, random_state=0
)
vae2.fit(train.X)
q = norm.ppf(np.linspace(0.05, 0.95, 12))
zz = np.array([[a, b] for b in q[::-1] for a in q], dtype=np.float32)
show_grid(vae2.decode(zz), 12, "decoded grid of 2-D codes")
plt.show()

# %%
# And the encoder places the test images in that plane (posterior means,
# coloured by the digit they show; the labels were never used in training):
test_all = data.load_mnist(split="test").subset(slice(0, 2000))
Z = vae2.transform(test_all.X)
fig, ax = plt.subplots(figsize=(5, 4.5))
points = ax.scatter(Z[:, 0], Z[:, 1], c=test_all.y, cmap="tab10", s=4)
fig.colorbar(points, ax=ax, label="digit")
ax.set_xlabel("$\\mu_1(x)$")
ax.set_ylabel("$\\mu_2(x)$")
ax.set_title("posterior means of 2,000 test images")
plt.show()
