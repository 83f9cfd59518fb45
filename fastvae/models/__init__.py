"""The estimators (VAE, Autoencoder, DenoisingAutoencoder, TabularVAE), their training
loop, persistence, checkpoints and MPI training.

Layer: above the compiled core and the data, below the command line.
"""

from fastvae.models.autoencoders import Autoencoder, DenoisingAutoencoder
from fastvae.models.loading import checkpoint_info, load, resume
from fastvae.models.tabular import TabularVAE
from fastvae.models.vae import VAE

__all__ = [
    "VAE",
    "Autoencoder",
    "DenoisingAutoencoder",
    "TabularVAE",
    "checkpoint_info",
    "load",
    "resume",
]
