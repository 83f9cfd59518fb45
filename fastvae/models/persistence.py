"""Persistence of the estimators: their complete state as JSON metadata and
flat arrays (model files, checkpoints), checked field by field on the way
back in, and in-memory pickling for scikit-learn's clone and joblib."""

from __future__ import annotations

import math
import numbers
import os
import threading

import numpy as np

from fastvae._validation import check_dtype
from fastvae._version import __version__
from fastvae.models import columns as _columns
from fastvae.models.anndata_input import FITTED as ANNDATA_FITTED
from fastvae.models.history import HISTORY_FIELDS, STEP_FIELDS
from fastvae.models.inference import INFERENCE_CHUNK

_STATE_ARRAYS = {"params", "opt_state1", "opt_state2"}


# How each history list's entries may look: (type, allow None, allow inf).
# Per field of history_: (number type, None allowed, infinity allowed).
_HISTORY_RULES = {
    "epoch": (numbers.Integral, False, False),
    "loss": (numbers.Real, False, False),
    "reconstruction": (numbers.Real, False, False),
    "kl": (numbers.Real, False, False),
    "elbo": (numbers.Real, False, False),
    "val_elbo": (numbers.Real, True, False),
    "lr": (numbers.Real, True, False),
    "active_units": (numbers.Integral, True, False),
    "seconds": (numbers.Real, False, False),
    "samples_per_second": (numbers.Real, False, True),
    "step": (numbers.Integral, False, False),
    "step_loss": (numbers.Real, False, False),
}


def _section(state, key):
    value = state.get(key)
    if not isinstance(value, dict):
        raise ValueError(f"{key!r} must be a JSON object, got {type(value).__name__}")
    return value


def _count(name, value, low=0, high=2**63 - 1):
    """An integer in [low, high] (steps are uint64 in the kernels; 2**63 is
    far beyond any run)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Integral)
        or not low <= value <= high
    ):
        raise ValueError(f"{name} must be an integer in [{low}, {high}], got {value!r}")
    return int(value)


def _check_fitted(fitted):
    """The fitted counters and history of a state, checked and copied."""
    keys = {
        "n_features_in_",
        "n_conditions_",
        "n_iter_",
        "t_",
        "history_",
        "loss_curve_",
    }
    # Absent in early files: n_conditions_ (then 0), training_data_,
    # columns_ and the AnnData conversion (None).
    missing = keys - set(fitted) - {"n_conditions_"}
    optional = {"training_data_", "columns_", *ANNDATA_FITTED}
    if missing or set(fitted) - keys - optional:
        raise ValueError(
            f"fitted must have the keys {sorted(keys)}, got {sorted(map(str, fitted))}"
        )
    out = {
        "n_features_in_": _count("n_features_in_", fitted["n_features_in_"], low=1),
        "n_conditions_": _count("n_conditions_", fitted.get("n_conditions_", 0)),
        "n_iter_": _count("n_iter_", fitted["n_iter_"]),
        "t_": _count("t_", fitted["t_"]),
    }
    history = fitted["history_"]
    if isinstance(history, dict) and "epoch" in history:
        # Files from before these fields: not known for their epochs.
        for later in ("lr", "active_units"):
            if later not in history:
                history = {**history, later: [None] * len(history["epoch"])}
    if not isinstance(history, dict) or set(history) != set(HISTORY_FIELDS):
        raise ValueError(f"history_ must have the keys {sorted(HISTORY_FIELDS)}")
    for key, (kind, allow_none, allow_inf) in _HISTORY_RULES.items():
        values = history[key]
        if not isinstance(values, list):
            raise ValueError(f"history_[{key!r}] must be a list")
        for v in values:
            if v is None and allow_none:
                continue
            if (
                isinstance(v, bool)
                or not isinstance(v, kind)
                or math.isnan(v)
                or (math.isinf(v) and not allow_inf)
            ):
                raise ValueError(f"history_[{key!r}] holds {v!r}")
    lengths = {key: len(history[key]) for key in HISTORY_FIELDS}
    if (
        any(lengths[k] != out["n_iter_"] for k in lengths if k not in STEP_FIELDS)
        or lengths["step"] != lengths["step_loss"]
    ):
        raise ValueError(
            f"history_ lengths {lengths} do not fit n_iter_={out['n_iter_']}"
        )
    curve = fitted["loss_curve_"]
    if (
        not isinstance(curve, list)
        or len(curve) != out["n_iter_"]
        or any(
            isinstance(v, bool)
            or not isinstance(v, numbers.Real)
            or not math.isfinite(v)
            for v in curve
        )
    ):
        raise ValueError(
            f"loss_curve_ must be a list of {out['n_iter_']} finite numbers"
        )
    out["history_"] = {k: list(v) for k, v in history.items()}
    out["loss_curve_"] = [float(v) for v in curve]
    out["training_data_"] = _check_training_data(fitted.get("training_data_"))
    out["columns_"] = _check_columns(fitted.get("columns_"))
    out.update(_check_anndata(fitted, out["n_conditions_"]))
    return out


def _check_anndata(fitted, n_conditions):
    """How the model reads an AnnData (fastvae.models.anndata_input): a
    layer and a condition key, each None or a string, and the key's levels,
    one per condition column (None without a key)."""
    layer, key, levels = (fitted.get(name) for name in ANNDATA_FITTED)
    for name, value in (("anndata_layer_", layer), ("condition_key_", key)):
        if value is not None and not isinstance(value, str):
            raise ValueError(f"{name} must be a string or null, got {value!r}")
    if key is None:
        if levels is not None:
            raise ValueError("condition_levels_ given without condition_key_")
    elif (
        not isinstance(levels, list)
        or len(levels) != n_conditions
        or any(
            not isinstance(v, str | int | float)
            or (isinstance(v, float) and not math.isfinite(v))
            for v in levels
        )
        or len({(type(v), v) for v in levels}) != len(levels)
    ):
        raise ValueError(
            f"condition_levels_ must be {n_conditions} distinct strings or numbers "
            f"(one per condition column), got {levels!r}"
        )
    return {
        "anndata_layer_": layer,
        "condition_key_": key,
        "condition_levels_": None if levels is None else list(levels),
    }


_TRAINING_DATA_KEYS = {"n_samples", "n_features", "min", "max"}


def _jsonable_columns(columns):
    return None if columns is None else [[kind, levels] for kind, levels in columns]


def _check_columns(value):
    """The fitted per-column likelihoods of a state: None or a tuple of
    (kind, levels)."""
    if value is None:
        return None
    if not isinstance(value, list | tuple) or not value:
        raise ValueError("columns_ must be a non-empty list of [kind, levels]")
    out = []
    for entry in value:
        if (
            not isinstance(entry, list | tuple)
            or len(entry) != 2
            or entry[0] not in _columns.KINDS
            or isinstance(entry[1], bool)
            or not isinstance(entry[1], int)
            or not 1 <= entry[1] <= _columns.MAX_LEVELS
            or (entry[1] == 1) == (entry[0] == "categorical")
        ):
            raise ValueError(f"columns_ has a bad entry {entry!r}")
        out.append((str(entry[0]), int(entry[1])))
    return tuple(out)


def _check_training_data(value):
    """training_data_ of a state: None (files before it), or the summary fit
    made, with the "source" a caller may have added. (Its n_features is
    compared with the architecture's by _set_state.)"""
    if value is None:
        return None
    if not isinstance(value, dict) or not (
        _TRAINING_DATA_KEYS <= set(value) <= _TRAINING_DATA_KEYS | {"source"}
    ):
        raise ValueError(
            f"training_data_ must have the keys {sorted(_TRAINING_DATA_KEYS)} "
            "(and optionally source)"
        )
    _count("training_data_ n_samples", value["n_samples"], low=1)
    _count("training_data_ n_features", value["n_features"], low=1)
    lo, hi = value["min"], value["max"]
    for v in (lo, hi):
        if (
            isinstance(v, bool)
            or not isinstance(v, numbers.Real)
            or not math.isfinite(v)
        ):
            raise ValueError(f"training_data_ min and max must be finite, got {v!r}")
    if lo > hi:
        raise ValueError(f"training_data_ min {lo} exceeds max {hi}")
    source = value.get("source")
    if source is not None and not isinstance(source, dict):
        raise ValueError("training_data_ source must be a JSON object")
    return dict(value)


def _aligned_copy(a, layout):
    out = layout.zeros(a.dtype)
    out[...] = a
    return out


def _fields(opt):
    from dataclasses import asdict

    return asdict(opt)


def _jsonable(v):
    if isinstance(v, tuple | list):
        return [_jsonable(e) for e in v]
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return float(v)
    if isinstance(v, type) or isinstance(v, np.dtype):
        return np.dtype(v).name
    return v


class Persistence:
    """Mixin of BaseAutoencoder: the state of model files and checkpoints
    (_state, _set_state), pickling and save."""

    def _state(self):
        """The fitted model's complete state, as (metadata, arrays).

        metadata (JSON-serialisable): "estimator" (class name), "params"
        (constructor arguments but the optimizer), "optimizer" (name and
        hyper-parameters in effect), "fitted" (n_features_in_, n_conditions_,
        n_iter_, t_, history_, loss_curve_, training_data_, columns_ and the
        AnnData conversion: anndata_layer_, condition_key_,
        condition_levels_) and "fastvae_version". arrays:
        "params", "opt_state1", "opt_state2", the flat buffers of shape
        (n_params,) (the model's own buffers, not copies). Nothing in it
        depends on a process, a thread count or a machine: `_set_state`
        restores exactly this state anywhere, model files are it written by
        fastvae.models.file_format, and checkpoints are it plus the training progress.
        """

        self._check_fitted()
        s = self._fitted_settings
        params = {
            k: _jsonable(v) for k, v in self.get_params().items() if k != "optimizer"
        }
        params["dtype"] = np.dtype(s.dtype).name
        opt = s.optimizer
        state = {
            "estimator": type(self).__name__,
            "params": params,
            "optimizer": {"name": opt.name, **_fields(opt)},
            "fitted": {
                "n_features_in_": self.n_features_in_,
                "n_conditions_": self.n_conditions_,
                "n_iter_": self.n_iter_,
                "t_": self.t_,
                "history_": self.history_,
                "loss_curve_": self.loss_curve_,
                "training_data_": getattr(self, "training_data_", None),
                "columns_": _jsonable_columns(getattr(self, "columns_", None)),
                **{name: getattr(self, name, None) for name in ANNDATA_FITTED},
            },
            "fastvae_version": __version__,
        }
        arrays = {
            "params": self.params_,
            "opt_state1": self._opt_state[0],
            "opt_state2": self._opt_state[1],
        }
        return state, arrays

    def _set_state(self, state, arrays):
        """Restore a state returned by `_state` (possibly read from a file).

        Everything is checked before anything is changed: the constructor
        arguments and optimizer against their rules, the fitted counters and
        history for types and consistency, and the arrays for dtype, the
        length the architecture implies, and finiteness. The estimator's
        class must match state["estimator"].

        Raises
        ------
        ValueError, TypeError
            Naming what is missing or wrong; the model is then unchanged.
        """
        from fastvae import optim

        if not isinstance(state, dict):
            raise TypeError(f"state must be a dict, got {type(state).__name__}")
        if state.get("estimator") != type(self).__name__:
            raise ValueError(
                f"the state is of a {state.get('estimator')!r}, not a "
                f"{type(self).__name__}"
            )
        params = _section(state, "params")
        allowed = set(self._param_names()) - {"optimizer"}
        unknown = sorted(map(str, set(params) - allowed))
        if unknown:
            raise ValueError(f"unknown parameters {unknown}")
        params = dict(params)
        if "random_state" not in params and "seed" in params:
            # A file from before random_state: its seed is the random_state.
            params["random_state"] = params.pop("seed")
        for name in ("hidden", "decoder_hidden"):  # JSON has no tuples
            if isinstance(params.get(name), list):
                params[name] = tuple(params[name])
        if isinstance(params.get("likelihood"), list):
            params["likelihood"] = tuple(
                tuple(e) if isinstance(e, list) else e for e in params["likelihood"]
            )
        if "dtype" in params:
            params["dtype"] = check_dtype(str(params["dtype"])).type
        opt_meta = dict(_section(state, "optimizer"))
        opt_cls = optim.OPTIMIZER_NAMES.get(str(opt_meta.pop("name", None)))
        if opt_cls is None:
            raise ValueError(
                f"optimizer must be one of {sorted(optim.OPTIMIZER_NAMES)}"
            )
        # The optimizer object holds the learning rate in effect, so lr is
        # None: a fit(lr=...) override must not be undone by the constructor's.
        values = {
            **self.get_params(),
            **params,
            "optimizer": opt_cls(**opt_meta),
            "lr": None,
        }
        s = self._settings(params=values)
        fitted = _check_fitted(_section(state, "fitted"))
        columns = fitted["columns_"]
        if columns is not None and len(columns) != fitted["n_features_in_"]:
            raise ValueError(
                f"columns_ names {len(columns)} columns but the model has "
                f"{fitted['n_features_in_']} features"
            )
        if (columns is None) == _columns.per_column(s.likelihood, s.missing):
            raise ValueError("columns_ does not match the likelihood and missing")
        layout = self._layout(
            s, fitted["n_features_in_"], fitted["n_conditions_"], columns
        )
        if not isinstance(arrays, dict) or set(arrays) != _STATE_ARRAYS:
            raise ValueError(f"the arrays must be {sorted(_STATE_ARRAYS)}")
        for name in sorted(_STATE_ARRAYS):
            a = arrays[name]
            if (
                not isinstance(a, np.ndarray)
                or a.dtype != s.dtype
                or a.shape != (layout.size,)
            ):
                got = (
                    f"{a.dtype}{list(a.shape)}"
                    if isinstance(a, np.ndarray)
                    else type(a).__name__
                )
                raise ValueError(
                    f"array {name!r} does not match the model's architecture (expected "
                    f"{np.dtype(s.dtype)}[{layout.size}], got {got})"
                )
            if not np.isfinite(a).all():
                raise ValueError(f"array {name!r} holds NaN or inf")
        seen = fitted["training_data_"]
        if seen is not None and seen["n_features"] != fitted["n_features_in_"]:
            raise ValueError(
                f"training_data_ has {seen['n_features']} features but the model "
                f"{fitted['n_features_in_']}"
            )

        for name, value in values.items():
            setattr(self, name, value)
        self.params_ = _aligned_copy(arrays["params"], layout)
        self._opt_state = [
            _aligned_copy(arrays[n], layout) for n in ("opt_state1", "opt_state2")
        ]
        self._optimizer_name = s.optimizer.name
        self.n_features_in_ = fitted["n_features_in_"]
        self.n_conditions_ = fitted["n_conditions_"]
        self.n_iter_ = fitted["n_iter_"]
        self.t_ = fitted["t_"]
        self.history_ = fitted["history_"]
        self.loss_curve_ = fitted["loss_curve_"]
        self.training_data_ = fitted["training_data_"]
        self.columns_ = columns
        for name in ANNDATA_FITTED:
            setattr(self, name, fitted[name])
        self._fitted_layout = layout
        self._fitted_settings = s
        self._lock = getattr(self, "_lock", None) or threading.RLock()
        self._infer_net = self._network(
            s, layout, INFERENCE_CHUNK, self.n_conditions_, columns=columns
        )

    def __getstate__(self):
        """Constructor arguments and fitted state, without the compiled
        networks and the lock (rebuilt by __setstate__). Model files use
        save/load, which never pickle."""
        state = self.__dict__.copy()
        state.pop("_lock", None)
        state.pop("_infer_net", None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        if getattr(self, "params_", None) is None:
            return
        layout = self._fitted_layout
        # An unpickled buffer may be unaligned, or a read-only memmap (joblib)
        self.params_ = _aligned_copy(self.params_, layout)
        self._opt_state = [_aligned_copy(a, layout) for a in self._opt_state]
        self._lock = threading.RLock()
        self._infer_net = self._network(
            self._fitted_settings,
            layout,
            INFERENCE_CHUNK,
            self.n_conditions_,
            columns=getattr(self, "columns_", None),
        )

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the fitted model to `path` (.npz + JSON, atomic, no pickle).

        The file holds the constructor arguments, the parameter buffer, the
        optimizer state and the training history; `fastvae.load` restores it.

        Parameters
        ----------
        path : str or os.PathLike
            The file to write (replaced atomically if it exists).
        """
        from fastvae.models import file_format as _io

        state, arrays = self._state()
        _io.save(path, state, arrays, format=_io.MODEL_FORMAT)
