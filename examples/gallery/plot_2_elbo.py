r"""
Part 2: the maths, measured
===========================

A VAE would like to maximise the log-likelihood of the data,

.. math::

    \log p(x) = \log \int p(x \mid z)\, p(z)\, dz,

but the integral over all codes is intractable. For *any* distribution
:math:`q(z \mid x)` it splits into two terms:

.. math::

    \log p(x) - \mathrm{KL}\big(q(z \mid x) \,\|\, p(z \mid x)\big)
    = \mathbb{E}_{q(z \mid x)}\big[\log p(x \mid z)\big]
      - \mathrm{KL}\big(q(z \mid x) \,\|\, p(z)\big)
    = \mathrm{ELBO}(x).

The right-hand side is computable: a reconstruction term, estimated with
samples of :math:`z`, minus a KL divergence between two Gaussians, known in
closed form. Since a KL divergence is never negative, the ELBO is a lower
bound on :math:`\log p(x)` (the *evidence*), and the gap is exactly how far
the encoder's :math:`q(z \mid x)` is from the true posterior
:math:`p(z \mid x)`. Training maximises the ELBO, which both raises
:math:`\log p(x)` and pulls :math:`q` towards the posterior.

This example checks each piece of that identity on a trained model:
the closed-form KL, the reparameterisation trick, and the gap, measured
with importance sampling.
"""

# %%
# A small VAE on binarized MNIST
# ------------------------------
# A Bernoulli likelihood is a true probability for binary pixels, so the
# images are binarized once (each pixel is ink with probability its
# intensity, :func:`fastvae.data.sample_binarize`).
import matplotlib.pyplot as plt
import numpy as np

import fastvae
from fastvae import data

train = data.sample_binarize(data.load_mnist(split="train").X[:10000], seed=0)
test = data.sample_binarize(data.load_mnist(split="test").X[::50], seed=1)  # 200 images

vae = fastvae.VAE(
    hidden=(200,), latent_dim=10, epochs=10, batch_size=100, random_state=0
)
vae.fit(train)
print(f"test ELBO (one z per image): {vae.score(test):.1f} nats")

# %%
# The closed-form KL
# ------------------
# With :math:`q(z \mid x) = \mathcal{N}(\mu, \operatorname{diag}\sigma^2)`
# and :math:`p(z) = \mathcal{N}(0, I)`,
#
# .. math::
#
#     \mathrm{KL}(q \,\|\, p) = \tfrac12 \sum_j
#     \big(\sigma_j^2 + \mu_j^2 - 1 - \log \sigma_j^2\big).
#
# The encoder outputs :math:`\mu` and :math:`\log\sigma^2` (the
# log-variance, for numerical range). Compare the formula with a Monte Carlo
# estimate :math:`\mathbb{E}_q[\log q(z \mid x) - \log p(z)]`:
mu, logvar = vae.encode(test)
mu, logvar = mu.astype(np.float64), logvar.astype(np.float64)
kl_closed = 0.5 * np.sum(np.exp(logvar) + mu**2 - 1 - logvar, axis=1)

rng = np.random.default_rng(0)
S = 2000
eps = rng.standard_normal((S, *mu.shape))
z = mu + np.exp(logvar / 2) * eps  # the reparameterisation trick
log_q = np.sum(-0.5 * eps**2 - 0.5 * logvar - 0.5 * np.log(2 * np.pi), axis=2)
log_p = np.sum(-0.5 * z**2 - 0.5 * np.log(2 * np.pi), axis=2)
kl_mc = np.mean(log_q - log_p, axis=0)
print(f"closed form {kl_closed[:4].round(2)}, Monte Carlo {kl_mc[:4].round(2)}")
print(
    f"largest difference over {len(test)} images: "
    f"{np.max(np.abs(kl_closed - kl_mc)):.3f} nats"
)

# %%
# The reparameterisation trick
# ----------------------------
# Above, a sample of :math:`q(z \mid x)` was written
# :math:`z = \mu + \sigma \odot \varepsilon` with
# :math:`\varepsilon \sim \mathcal{N}(0, I)`: the randomness is in
# :math:`\varepsilon`, which does not depend on the encoder, so
# :math:`\partial z / \partial \mu = 1` and
# :math:`\partial z / \partial \sigma = \varepsilon`, and the gradient of the
# ELBO flows through the sample into the encoder. (Note that :math:`\sigma`,
# not :math:`\mu`, scales :math:`\varepsilon`.) fastvae draws
# :math:`\varepsilon` from a counter-based Philox generator inside its
# compiled training step, so the draws, and the trained parameters, are the
# same for any number of threads.
#
# The reconstruction term
# :math:`\mathbb{E}_q[\log p(x \mid z)]` is estimated with the same samples:
# decode each :math:`z`, then score the image under the Bernoulli
# likelihood.
n_z = 50
recon = np.zeros(len(test))
for s in range(n_z):
    p = vae.decode(z[s].astype(np.float32)).astype(np.float64)
    p = np.clip(p, 1e-7, 1 - 1e-7)
    recon += np.sum(test * np.log(p) + (1 - test) * np.log1p(-p), axis=1) / n_z
elbo_numpy = recon - kl_closed
print(
    f"ELBO by hand: {elbo_numpy.mean():.2f} nats; "
    f"fastvae's one-sample elbo(): {vae.elbo(test).mean():.2f}"
)

# %%
# Measuring the gap with importance sampling
# ------------------------------------------
# The left-hand side needs :math:`\log p(x)`. Importance sampling with
# :math:`q` as the proposal estimates it:
#
# .. math::
#
#     \log p(x) \approx \log \frac1k \sum_{s=1}^{k}
#     \frac{p(x \mid z_s)\, p(z_s)}{q(z_s \mid x)}, \qquad z_s \sim q(z \mid x).
#
# With :math:`k = 1` its expectation is the ELBO; as :math:`k` grows it rises
# towards :math:`\log p(x)` (Burda et al., 2016). This is
# :meth:`fastvae.VAE.log_likelihood`, computed in compiled code; VAE papers
# report it with k = 5000. The ELBO itself is the mean of many one-sample
# estimates (``k=1`` with different seeds).
elbo = np.mean([vae.log_likelihood(test, k=1, seed=s) for s in range(50)], axis=0)
ks = [1, 10, 100, 1000]
estimates = {k: vae.log_likelihood(test, k=k, seed=123) for k in ks}
for k in ks:
    print(f"k = {k:4d}: mean estimate {estimates[k].mean():8.2f} nats")
print(f"ELBO (50 one-sample estimates):  {elbo.mean():8.2f} nats")

fig, ax = plt.subplots(figsize=(5.5, 3.5))
ax.semilogx(
    ks, [estimates[k].mean() for k in ks], "o-", label="importance-sampled log p(x)"
)
ax.axhline(elbo.mean(), color="C1", ls="--", label="ELBO")
ax.set_xlabel("importance samples k")
ax.set_ylabel("nats per image (mean over 200)")
ax.legend()
ax.set_title("the bound tightens as k grows")
plt.show()

# %%
# The gap, per image
# ------------------
# With :math:`k = 1000` the estimate is close to :math:`\log p(x)`, so
# :math:`\log p(x) - \mathrm{ELBO}` measures
# :math:`\mathrm{KL}(q(z \mid x) \,\|\, p(z \mid x))` for every test image:
# how much the encoder's Gaussian misses the true posterior. It is positive
# for every image (up to the noise of the estimates), and smaller than the
# KL term :math:`\mathrm{KL}(q(z \mid x) \,\|\, p(z))` the ELBO subtracts:
# that term would remain with a perfect encoder, the gap would not.
gap = estimates[1000] - elbo
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.5))
ax1.hist(gap, bins=30, color="C2")
ax1.set_xlabel("log p(x) - ELBO  =  KL(q(z|x) || p(z|x))   [nats]")
ax1.set_ylabel("test images")
ax2.scatter(kl_closed, gap, s=8)
ax2.set_xlabel("KL(q(z|x) || p(z))   [nats]")
ax2.set_ylabel("gap [nats]")
fig.tight_layout()
plt.show()
print(
    f"mean gap {gap.mean():.2f} nats, "
    f"mean KL(q || p(z)) {kl_closed.mean():.2f} nats, "
    f"images with a negative gap: {np.sum(gap < 0)}"
)
