"""The benchmark configurations and the FLOP count of one training step."""

from __future__ import annotations

from dataclasses import dataclass

N_FEATURES = 784


@dataclass(frozen=True)
class Config:
    """A VAE to time: encoder 784-hidden-2*latent, decoder mirrored, Bernoulli.

    Attributes
    ----------
    hidden : tuple of int
        Encoder hidden widths (the decoder uses them reversed).
    latent : int
    batch : int
    dtype : {"float32", "float64"}
    """

    hidden: tuple[int, ...]
    latent: int
    batch: int
    dtype: str = "float32"

    @property
    def name(self) -> str:
        suffix = "" if self.dtype == "float32" else f" {self.dtype}"
        return (
            f"784-{'-'.join(map(str, self.hidden))}/{self.latent}/{self.batch}{suffix}"
        )

    @property
    def encoder_dims(self) -> tuple[int, ...]:
        return (N_FEATURES, *self.hidden, 2 * self.latent)

    @property
    def decoder_dims(self) -> tuple[int, ...]:
        return (self.latent, *self.hidden[::-1], N_FEATURES)

    def layer_shapes(self) -> list[tuple[int, int]]:
        enc, dec = self.encoder_dims, self.decoder_dims
        return list(zip(enc[:-1], enc[1:], strict=True)) + list(
            zip(dec[:-1], dec[1:], strict=True)
        )

    def flops_per_sample(self) -> int:
        """GEMM FLOPs of one sample's training step, 2 per multiply-add.

        Forward and weight gradient of every layer, input gradient of every
        layer but the first (nothing needs the gradient of the data). The
        element-wise work (activations, losses, Adam) is not counted.
        """
        macs = 0
        for i, (n_in, n_out) in enumerate(self.layer_shapes()):
            macs += n_in * n_out * (2 if i == 0 else 3)
        return 2 * macs

    def to_dict(self) -> dict:
        return {
            "hidden": list(self.hidden),
            "latent": self.latent,
            "batch": self.batch,
            "dtype": self.dtype,
        }

    @classmethod
    def from_dict(cls, d: dict) -> Config:
        return cls(tuple(d["hidden"]), int(d["latent"]), int(d["batch"]), d["dtype"])


# The configurations of the performance targets (issue "Benchmarks against
# NumPy, PyTorch and JAX").
CONFIGS = (
    Config((400,), 20, 128),
    Config((400,), 20, 16),
    Config((512, 256), 32, 256),
    Config((1024, 1024), 64, 512),
    Config((400,), 20, 128, "float64"),
)
QUICK_CONFIGS = (Config((64,), 8, 32),)


def parse_config(text: str) -> Config:
    """A configuration from its name, e.g. ``784-400/20/128`` or
    ``784-400/20/128 float64``."""
    try:
        arch, _, rest = text.strip().partition(" ")
        dims, latent, batch = arch.split("/")
        widths = dims.split("-")
        if widths[0] != str(N_FEATURES):
            raise ValueError
        return Config(
            tuple(int(w) for w in widths[1:]),
            int(latent),
            int(batch),
            rest.strip() or "float32",
        )
    except ValueError:
        raise ValueError(
            f"configuration {text!r} is not of the form 784-H1[-H2...]/LATENT/BATCH "
            "[float32|float64]"
        ) from None
