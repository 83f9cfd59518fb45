"""The estimators (VAE, Autoencoder, DenoisingAutoencoder), their training
loop, persistence, checkpoints and MPI training.

Layer: above the compiled core and the data, below the command line.
"""

from fastvae.models.estimators import (
    VAE,
    Autoencoder,
    DenoisingAutoencoder,
    checkpoint_info,
    load,
    resume,
)

__all__ = [
    "VAE",
    "Autoencoder",
    "DenoisingAutoencoder",
    "checkpoint_info",
    "load",
    "resume",
]
