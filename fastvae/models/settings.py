"""An estimator's settings, validated once into one typed, frozen object.

The estimators keep scikit-learn's protocol: ``__init__`` stores its
arguments untouched. ``fit`` (and restoring a saved model) turns them, with
fit's overrides, into a :class:`Settings`: every value checked against its
rule, the defaults filled in (the decoder mirrors the encoder, the optimizer
object made from its name and learning rate, the thread count resolved).
Everything past that point reads typed attributes, never the raw arguments.
"""

from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np

import fastvae._core._step as _step
from fastvae._core.threads import resolve_num_threads
from fastvae._validation import Param, check_dtype, check_layer_sizes, check_params
from fastvae.models.columns import COUNT_KINDS, check_likelihood
from fastvae.optim import SGD, Adam, Momentum, make_optimizer

__all__ = [
    "HIDDEN_ACTIVATIONS",
    "LIKELIHOODS",
    "MAX_HIDDEN_LAYERS",
    "OBJECTIVES",
    "RULES",
    "Settings",
]

HIDDEN_ACTIVATIONS = ("relu", "tanh", "sigmoid", "identity")
LIKELIHOODS = ("bernoulli", "gaussian")
OBJECTIVES = ("elbo", "iwae")
# batch_size * n_latent_samples rows go through the decoder, a C int
MAX_LATENT_SAMPLES = 2**20
# The compiled network holds at most 32 layers (FV_MAX_LAYERS).
MAX_HIDDEN_LAYERS = 15
# The kernels take layer widths as C ints.
_MAX_WIDTH = 2**31 - 1


class _Likelihood:
    """Param rule for likelihood: one name for every feature, or one entry
    per column (fastvae.models.columns)."""

    def check(self, name, value):
        return check_likelihood(name, value)


class _Sigma:
    """Param rule for sigma: a positive number or "learned"."""

    def check(self, name, value):
        if value == "learned" and isinstance(value, str):
            return value
        return Param(numbers.Real, low=0.0, low_open=True).check(name, value)


RULES: dict[str, Any] = {
    "input_dim": Param(numbers.Integral, low=1, high=_MAX_WIDTH, allow_none=True),
    "latent_dim": Param(numbers.Integral, low=1, high=_MAX_WIDTH // 2),
    "likelihood": _Likelihood(),
    "missing": Param(str, choices=("mask",), allow_none=True),
    "library": Param(str, choices=("observed",), allow_none=True),
    "dispersion": Param(str, choices=("gene", "gene-batch")),
    "sigma": _Sigma(),
    "activation": Param(str, choices=HIDDEN_ACTIVATIONS),
    "corruption": Param(numbers.Real, low=0.0, high=1.0, high_open=True),
    "dynamic_binarization": Param(int, choices=(False, True)),
    "epochs": Param(numbers.Integral, low=1),
    "batch_size": Param(numbers.Integral, low=1, high=2**31 - 1),
    "lr": Param(numbers.Real, low=0.0, low_open=True, allow_none=True),
    "random_state": Param(numbers.Integral, low=0, high=2**64 - 1),
    "seed": Param(numbers.Integral, low=0, high=2**64 - 1, allow_none=True),
    "n_threads": Param(
        numbers.Integral, low=1, high=_step.MAX_THREADS, allow_none=True
    ),
    "verbose": Param(int, choices=(0, 1, 2)),
    "warm_start": Param(int, choices=(False, True)),
    "beta": Param(numbers.Real, low=0.0),
    "kl_warmup": Param(numbers.Integral, low=0),
    "objective": Param(str, choices=OBJECTIVES),
    "n_latent_samples": Param(numbers.Integral, low=1, high=MAX_LATENT_SAMPLES),
}


@dataclass(frozen=True)
class Settings:
    """The validated settings of one fit (or of a restored model).

    The fields are the constructor arguments of the estimators, normalised:
    ``hidden`` and ``decoder_hidden`` are tuples (the decoder mirrors the
    encoder when not given), ``dtype`` a NumPy dtype, ``optimizer`` an
    optimizer object holding the learning rate in effect, ``n_threads`` the
    resolved thread count. ``beta``, ``kl_warmup``, ``objective``,
    ``n_latent_samples``, ``missing``, ``library`` and ``dispersion`` exist
    for the VAE only; the autoencoders keep their defaults. ``likelihood`` is
    a name or a tuple with one entry per column (fastvae.models.columns).
    """

    input_dim: int | None
    hidden: tuple[int, ...]
    decoder_hidden: tuple[int, ...]
    latent_dim: int
    likelihood: str | tuple
    sigma: float | str
    activation: str
    corruption: float
    dynamic_binarization: bool
    optimizer: SGD | Momentum | Adam
    lr: float | None
    epochs: int
    batch_size: int
    dtype: np.dtype
    seed: int
    n_threads: int
    verbose: int
    warm_start: bool
    beta: float = 1.0
    kl_warmup: int = 0
    objective: str = "elbo"
    n_latent_samples: int = 1
    missing: str | None = None
    library: str | None = None
    dispersion: str = "gene"

    @classmethod
    def from_params(cls, values: dict[str, Any]) -> Settings:
        """Check `values` (an estimator's get_params() with fit's overrides)
        and normalise them.

        Raises
        ------
        ValueError, TypeError
            Naming the first setting that breaks its rule, or two settings
            that do not go together.
        """
        values = dict(values)
        check_params(values, {k: r for k, r in RULES.items() if k in values})
        # The deprecated `seed` wins over random_state when given (and warns
        # in BaseAutoencoder._settings); the engine's field is `seed`.
        seed = values.pop("seed", None)
        state = values.pop("random_state", 0)
        values["seed"] = state if seed is None else seed
        values["dtype"] = check_dtype(values["dtype"])
        values["hidden"] = check_layer_sizes(values["hidden"], "hidden")
        dec = values["decoder_hidden"]
        values["decoder_hidden"] = (
            tuple(reversed(values["hidden"]))
            if dec is None
            else check_layer_sizes(dec, "decoder_hidden")
        )
        for name in ("hidden", "decoder_hidden"):
            if len(values[name]) > MAX_HIDDEN_LAYERS:
                raise ValueError(
                    f"{name} has {len(values[name])} layers; at most "
                    f"{MAX_HIDDEN_LAYERS} are supported"
                )
        likelihood = values["likelihood"]
        per_column = likelihood not in ("bernoulli", "gaussian") or values.get(
            "missing"
        )
        if values["sigma"] == "learned" and not (
            likelihood == "gaussian"
            or (not isinstance(likelihood, str) and "gaussian" in likelihood)
        ):
            raise ValueError(
                "sigma='learned' needs likelihood='gaussian' (or a Gaussian column)"
            )
        if values["dynamic_binarization"] and (likelihood != "bernoulli" or per_column):
            raise ValueError(
                "dynamic_binarization needs likelihood='bernoulli' and no "
                "missing='mask'"
            )
        if per_column and values["corruption"] > 0:
            raise ValueError(
                "corruption needs one likelihood for every feature and no "
                "missing='mask'"
            )
        if values.get("library") is not None:
            kinds = (likelihood,) if isinstance(likelihood, str) else likelihood
            if not all(k in COUNT_KINDS for k in kinds) or values.get("missing"):
                raise ValueError(
                    "library='observed' needs a count likelihood for every column "
                    f"({', '.join(COUNT_KINDS)}) and no missing='mask', got "
                    f"likelihood={likelihood!r}"
                )
        if values.get("dispersion") == "gene-batch":
            kinds = (likelihood,) if isinstance(likelihood, str) else likelihood
            named = {k if isinstance(k, str) else k[0] for k in kinds}
            learned = values["sigma"] == "learned" and "gaussian" in named
            if not (per_column and ({"negbin", "zinb"} & named or learned)):
                raise ValueError(
                    "dispersion='gene-batch' needs a likelihood with a "
                    "per-column tail: a 'negbin' or 'zinb' column, or per-column "
                    "likelihoods with a Gaussian column and sigma='learned'; got "
                    f"likelihood={likelihood!r}"
                )
        if values.get("n_latent_samples", 1) * values["batch_size"] >= 2**31:
            raise ValueError(
                "batch_size * n_latent_samples must be < 2**31, got "
                f"{values['batch_size']} * {values['n_latent_samples']}"
            )
        values["optimizer"] = make_optimizer(values["optimizer"], values["lr"])
        values["n_threads"] = resolve_num_threads(values["n_threads"])
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:  # a new constructor argument without a field here
            raise TypeError(f"settings without a field: {unknown}")
        return cls(**values)

    def replace(self, **changes: Any) -> Settings:
        """A copy with some fields changed (not re-validated)."""
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        """Field name -> value (the values themselves, not copies)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
