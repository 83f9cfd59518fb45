"""The benchmark's VAE in PyTorch, written the way a PyTorch user would.

Same model and step as ``numpy_vae``: dense layers ``act(x @ W + b)``, a
linear encoder head ``[mu | logvar]`` with logvar clamped to [-30, 20],
``z = mu + exp(logvar / 2) * eps``, Bernoulli logits (or Gaussian) likelihood,
loss = mean over the batch of recon + beta * KL, ``torch.optim.Adam``.
Importing this module needs PyTorch.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

LOGVAR_MIN, LOGVAR_MAX = -30.0, 20.0

_ACTIVATIONS = {
    "identity": nn.Identity,
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
}


def _mlp(dims, activation):
    layers = []
    for i, (n_in, n_out) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(dims) - 2:
            layers.append(_ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


class TorchVAE(nn.Module):
    """VAE with an MLP encoder (to 2 * latent) and decoder (to n_features).

    Parameters
    ----------
    encoder_dims, decoder_dims : sequence of int
    activation : str
    likelihood : {"bernoulli", "gaussian"}
    sigma, beta : float
    """

    def __init__(
        self,
        encoder_dims,
        decoder_dims,
        activation="relu",
        likelihood="bernoulli",
        sigma=1.0,
        beta=1.0,
    ):
        super().__init__()
        self.latent = decoder_dims[0]
        self.encoder = _mlp(encoder_dims, activation)
        self.decoder = _mlp(decoder_dims, activation)
        self.likelihood, self.sigma, self.beta = likelihood, sigma, beta

    def loss(self, x, eps=None):
        """Mean negative ELBO (recon + beta * KL) over the batch."""
        h = self.encoder(x)
        mu, logvar = h[:, : self.latent], h[:, self.latent :]
        logvar = torch.clamp(logvar, LOGVAR_MIN, LOGVAR_MAX)
        if eps is None:
            eps = torch.randn_like(mu)
        z = mu + torch.exp(0.5 * logvar) * eps
        out = self.decoder(z)
        if self.likelihood == "bernoulli":
            recon = F.binary_cross_entropy_with_logits(out, x, reduction="sum")
        else:
            recon = ((out - x) ** 2).sum() / (2 * self.sigma**2) + x.numel() * (
                math.log(self.sigma) + 0.5 * math.log(2 * math.pi)
            )
        kl = 0.5 * torch.sum(torch.exp(logvar) + mu * mu - 1.0 - logvar)
        return (recon + self.beta * kl) / x.shape[0]

    def load_numpy_layers(self, layers):
        """Copy (W, b) pairs with W of shape (n_in, n_out), encoder first."""
        linears = [
            m for m in [*self.encoder, *self.decoder] if isinstance(m, nn.Linear)
        ]
        with torch.no_grad():
            for lin, (W, b) in zip(linears, layers, strict=True):
                lin.weight.copy_(torch.as_tensor(W).T)
                lin.bias.copy_(torch.as_tensor(b))


def make_trainer(encoder_dims, decoder_dims, dtype="float32", lr=1e-3, seed=0):
    """A model, its Adam optimizer and a step function ``step(x) -> loss``."""
    torch.manual_seed(seed)
    model = TorchVAE(encoder_dims, decoder_dims).to(getattr(torch, dtype))
    opt = torch.optim.Adam(model.parameters(), lr=lr)

    def step(x):
        opt.zero_grad(set_to_none=True)
        loss = model.loss(x)
        loss.backward()
        opt.step()
        return loss

    return model, step
