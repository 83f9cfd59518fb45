"""The VAE estimator: a small scikit-learn-style API over the compiled core."""

from __future__ import annotations

import inspect
import math
import numbers
import threading
import time
import warnings

import numpy as np

from fastvae import _dense, _rng, _step
from fastvae import io as _io
from fastvae._validation import (
    NotFittedError,
    Param,
    check_array,
    check_dtype,
    check_layer_sizes,
    check_params,
)
from fastvae.optim import kernel_settings, make_optimizer
from fastvae.params import Layout
from fastvae.threads import blas_single_threaded, partition_count, resolve_num_threads

__all__ = ["VAE", "load"]

HIDDEN_ACTIVATIONS = ("relu", "tanh", "sigmoid", "identity")
LIKELIHOODS = ("bernoulli", "gaussian")
# Rows per compiled call in encode/decode/elbo: bounds workspace memory
# (about 4 kB per row for a 784-400-20 model) whatever the input size.
INFERENCE_CHUNK = 512
# Per-layer-count limit of the compiled network (FV_MAX_LAYERS = 32).
MAX_HIDDEN_LAYERS = 15
# Distinct key words so initialisation and shuffling never share a stream
# with each other or with the kernels' Philox streams.
_INIT_STREAM = 0x1A17
_SHUFFLE_STREAM = 0x5EED

_RULES = {
    "input_dim": Param(numbers.Integral, low=1, allow_none=True),
    "latent_dim": Param(numbers.Integral, low=1),
    "likelihood": Param(str, choices=LIKELIHOODS),
    "sigma": Param(numbers.Real, low=0.0, low_open=True),
    "activation": Param(str, choices=HIDDEN_ACTIVATIONS),
    "beta": Param(numbers.Real, low=0.0),
    "kl_warmup": Param(numbers.Integral, low=0),
    "epochs": Param(numbers.Integral, low=1),
    "batch_size": Param(numbers.Integral, low=1, high=2**31 - 1),
    "lr": Param(numbers.Real, low=0.0, low_open=True, allow_none=True),
    "seed": Param(numbers.Integral, low=0, high=2**64 - 1),
    "n_threads": Param(numbers.Integral, low=1, allow_none=True),
    "verbose": Param(int, choices=(0, 1, 2)),
    "warm_start": Param(int, choices=(False, True)),
}


class VAE:
    """Variational autoencoder trained by fastvae's compiled core.

    Encoder q(z|x) = N(mu(x), diag exp(logvar(x))) and decoder p(x|z) are
    MLPs; the prior is N(0, I). Training minimises the negative ELBO,
    recon + beta * KL, averaged over minibatches, with one compiled nogil
    call per step (forward, loss, backward and optimizer update).

    Parameters
    ----------
    input_dim : int, optional
        Number of features. Inferred from the data in `fit` when None.
    hidden : int or tuple of int, default=(400,)
        Encoder hidden layer widths.
    latent_dim : int, default=20
        Size of z.
    decoder_hidden : int or tuple of int, optional
        Decoder hidden layer widths; the reverse of `hidden` when None.
    likelihood : {"bernoulli", "gaussian"}, default="bernoulli"
        p(x|z): Bernoulli with logits for data in [0, 1], or Gaussian with
        fixed standard deviation `sigma`.
    sigma : float, default=1.0
        Observation noise of the Gaussian likelihood.
    activation : {"relu", "tanh", "sigmoid", "identity"}, default="relu"
        Activation of every hidden layer.
    beta : float, default=1.0
        Weight of the KL term (beta-VAE); 1 gives the ELBO.
    kl_warmup : int, default=0
        Number of steps over which the KL weight rises linearly from 0 to
        `beta`; 0 disables warm-up.
    optimizer : {"adam", "momentum", "sgd"} or a fastvae.optim object, default="adam"
    lr : float, optional
        Learning rate; the optimizer's default (Adam 1e-3, SGD and momentum
        0.01) when None.
    epochs : int, default=10
    batch_size : int, default=128
    dtype : numpy.float32 or numpy.float64, default=numpy.float32
        Precision of parameters and computation.
    seed : int, default=0
        Seeds initialisation, shuffling and every random draw (Philox key);
        the same seed gives bitwise identical results for any thread count.
    n_threads : int, optional
        Threads for this model; fastvae.get_num_threads() when None.
    verbose : {0, 1, 2}, default=0
        1 shows a progress bar during `fit`, 2 also prints one line per epoch.
    warm_start : bool, default=False
        When True, `fit` on a fitted model continues from its parameters and
        optimizer state instead of starting over.

    Attributes
    ----------
    params_ : ndarray of shape (n_params,)
        All weights and biases in one contiguous buffer.
    n_features_in_ : int
    n_iter_ : int
        Epochs trained.
    t_ : int
        Optimizer steps taken.
    history_ : dict of lists
        Per epoch: "epoch", "loss", "reconstruction", "kl", "elbo",
        "val_elbo" (None without validation data), "seconds",
        "samples_per_second"; finer: "step", "step_loss".
    loss_curve_ : list of float
        Mean training loss of each epoch.

    Examples
    --------
    >>> import numpy as np, fastvae
    >>> X = (np.random.default_rng(0).random((256, 64)) > 0.5).astype(np.float32)
    >>> vae = fastvae.VAE(hidden=(32,), latent_dim=4, epochs=2).fit(X)
    >>> vae.transform(X).shape
    (256, 4)
    """

    def __init__(
        self,
        input_dim=None,
        hidden=(400,),
        latent_dim=20,
        *,
        decoder_hidden=None,
        likelihood="bernoulli",
        sigma=1.0,
        activation="relu",
        beta=1.0,
        kl_warmup=0,
        optimizer="adam",
        lr=None,
        epochs=10,
        batch_size=128,
        dtype=np.float32,
        seed=0,
        n_threads=None,
        verbose=0,
        warm_start=False,
    ):
        self.input_dim = input_dim
        self.hidden = hidden
        self.latent_dim = latent_dim
        self.decoder_hidden = decoder_hidden
        self.likelihood = likelihood
        self.sigma = sigma
        self.activation = activation
        self.beta = beta
        self.kl_warmup = kl_warmup
        self.optimizer = optimizer
        self.lr = lr
        self.epochs = epochs
        self.batch_size = batch_size
        self.dtype = dtype
        self.seed = seed
        self.n_threads = n_threads
        self.verbose = verbose
        self.warm_start = warm_start

    # -- scikit-learn parameter protocol --------------------------------------

    @classmethod
    def _param_names(cls):
        sig = inspect.signature(cls.__init__)
        return [p for p in sig.parameters if p != "self"]

    def get_params(self, deep=True):
        """Constructor arguments as a dict (scikit-learn protocol)."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params):
        """Set constructor arguments; returns self (scikit-learn protocol)."""
        valid = set(self._param_names())
        for name, value in params.items():
            if name not in valid:
                raise ValueError(
                    f"invalid parameter {name!r} for VAE; valid parameters: "
                    f"{sorted(valid)}"
                )
            setattr(self, name, value)
        return self

    def __repr__(self):
        defaults = {
            p.name: p.default
            for p in inspect.signature(type(self).__init__).parameters.values()
        }
        changed = [
            f"{k}={v!r}"
            for k, v in self.get_params().items()
            if not _same(v, defaults.get(k))
        ]
        return f"VAE({', '.join(changed)})"

    # -- architecture ---------------------------------------------------------

    def _settings(self, overrides=None):
        """Validated settings: the constructor's values with fit's overrides."""
        values = self.get_params()
        values.update({k: v for k, v in (overrides or {}).items() if v is not None})
        check_params(values, _RULES)
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
        values["optimizer"] = make_optimizer(values["optimizer"], values["lr"])
        values["n_threads"] = resolve_num_threads(values["n_threads"])
        return values

    def _layout(self, s, n_features):
        k = s["latent_dim"]
        return Layout(
            (n_features, *s["hidden"], 2 * k), (k, *s["decoder_hidden"], n_features)
        )

    def _activation_codes(self, s, layout):
        act = _dense.ACTIVATIONS[s["activation"]]
        ident = _dense.ACTIVATIONS["identity"]
        n_enc = layout.n_encoder
        n = len(layout.shapes)
        return [ident if i in (n_enc - 1, n - 1) else act for i in range(n)]

    def _network(self, s, layout, max_batch):
        return _step.Network(
            layout.encoder_dims,
            layout.decoder_dims,
            self._activation_codes(s, layout),
            layout.w_offsets,
            layout.b_offsets,
            layout.size,
            s["likelihood"],
            float(s["sigma"]),
            int(max_batch),
            s["dtype"],
            partition_count(),
        )

    def _init_params(self, s, layout):
        """Glorot-uniform weights (He gain for ReLU layers), zero biases."""
        rng = np.random.Generator(np.random.Philox(key=[s["seed"], _INIT_STREAM]))
        params = layout.zeros(s["dtype"])
        codes = self._activation_codes(s, layout)
        for (W, _), code in zip(layout.views(params), codes, strict=True):
            gain = math.sqrt(2.0) if code == _dense.ACTIVATIONS["relu"] else 1.0
            limit = gain * math.sqrt(6.0 / (W.shape[0] + W.shape[1]))
            W[...] = rng.uniform(-limit, limit, size=W.shape)
        return params

    # -- training -------------------------------------------------------------

    def fit(
        self,
        X,
        y=None,
        *,
        epochs=None,
        batch_size=None,
        optimizer=None,
        lr=None,
        validation_data=None,
    ):
        """Train on X.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data; in [0, 1] for the Bernoulli likelihood.
        y : ignored
            Accepted for scikit-learn compatibility.
        epochs, batch_size, optimizer, lr : optional
            Override the constructor's values for this call.
        validation_data : array-like of shape (n_val, n_features), optional
            Its mean ELBO is recorded after every epoch in history_["val_elbo"].

        Returns
        -------
        self : VAE

        Raises
        ------
        ValueError, TypeError
            For invalid settings or data (the message names the problem).
        FloatingPointError
            If the loss becomes NaN or infinite; the parameters are those
            before the failing step.
        """
        s = self._settings(
            {"epochs": epochs, "batch_size": batch_size, "optimizer": optimizer,
             "lr": lr}
        )
        X = check_array(X, dtype=s["dtype"], n_features=s["input_dim"])
        n, d = X.shape
        if s["likelihood"] == "bernoulli":
            _check_unit_interval(X, "X")
        X_val = None
        if validation_data is not None:
            X_val = check_array(
                validation_data, name="validation_data", dtype=s["dtype"], n_features=d
            )
            if s["likelihood"] == "bernoulli":
                _check_unit_interval(X_val, "validation_data")
        batch = s["batch_size"]
        if batch > n:
            warnings.warn(
                f"batch_size={batch} is larger than the {n} samples; using {n}",
                UserWarning,
                stacklevel=2,
            )
            batch = n

        layout = self._layout(s, d)
        opt = s["optimizer"]
        continuing = (
            s["warm_start"]
            and getattr(self, "params_", None) is not None
            and self._fitted_layout == layout
            and self.params_.dtype == s["dtype"]
        )
        if not continuing:
            self.params_ = self._init_params(s, layout)
            self._opt_state = [layout.zeros(s["dtype"]) for _ in range(2)]
            self._optimizer_name = opt.name
            self.t_ = 0
            self.n_iter_ = 0
            self.history_ = _empty_history()
            self.loss_curve_ = []
        elif self._optimizer_name != opt.name:
            raise ValueError(
                f"warm_start cannot switch optimizer from {self._optimizer_name} "
                f"to {opt.name}"
            )
        self.n_features_in_ = d
        self._fitted_layout = layout
        self._fitted_settings = s
        self._lock = getattr(self, "_lock", None) or threading.RLock()
        self._infer_net = None

        net = self._network(s, layout, batch)
        net.set_optimizer(**kernel_settings(opt))
        grads = layout.zeros(s["dtype"])
        steps_per_epoch = -(-n // batch)
        log_every = max(1, steps_per_epoch // 20)
        bar = _progress(s["verbose"], s["epochs"] * steps_per_epoch)
        try:
            with self._lock, blas_single_threaded():
                for _ in range(s["epochs"]):
                    self._fit_epoch(s, net, X, grads, batch, log_every, bar, X_val)
        finally:
            if bar is not None:
                bar.close()
        return self

    def _fit_epoch(self, s, net, X, grads, batch, log_every, bar, X_val):
        n = X.shape[0]
        order = _epoch_order(s["seed"], self.n_iter_, n)
        p, (s1, s2) = self.params_, self._opt_state
        recon_total = kl_total = loss_total = 0.0
        win_loss, win_steps = 0.0, 0
        start = time.perf_counter()
        for i in range(0, n, batch):
            rows = order[i : i + batch]
            b = rows.shape[0]
            kl_weight = _kl_weight(s["beta"], s["kl_warmup"], self.t_)
            status, recon_sum, kl_sum = net.train_step(
                p, grads, s1, s2, X, rows, b, s["seed"], self.t_, kl_weight,
                s["n_threads"],
            )
            if status != 0:
                what = "loss" if status == 1 else "gradient"
                raise FloatingPointError(
                    f"the {what} became NaN or infinite at step {self.t_} "
                    f"(epoch {self.n_iter_ + 1}, reconstruction sum {recon_sum:.4g}, "
                    f"KL sum {kl_sum:.4g}); parameters are those before this step. "
                    f"Try a lower learning rate (lr={s['optimizer'].lr:g} now), "
                    "a smaller batch, or check X for extreme values"
                )
            self.t_ += 1
            loss = (recon_sum + kl_weight * kl_sum) / b
            recon_total += recon_sum
            kl_total += kl_sum
            loss_total += loss * b
            win_loss += loss
            win_steps += 1
            if win_steps == log_every:
                self.history_["step"].append(self.t_)
                self.history_["step_loss"].append(win_loss / win_steps)
                if bar is not None:
                    bar.set_postfix(
                        loss=f"{loss:.2f}", recon=f"{recon_sum / b:.2f}",
                        kl=f"{kl_sum / b:.2f}", refresh=False,
                    )
                win_loss, win_steps = 0.0, 0
            if bar is not None:
                bar.update(1)
        seconds = time.perf_counter() - start
        self.n_iter_ += 1
        h = self.history_
        h["epoch"].append(self.n_iter_)
        h["loss"].append(loss_total / n)
        h["reconstruction"].append(recon_total / n)
        h["kl"].append(kl_total / n)
        h["elbo"].append(-(recon_total + kl_total) / n)
        h["seconds"].append(seconds)
        h["samples_per_second"].append(n / seconds if seconds > 0 else float("inf"))
        val = None
        if X_val is not None:
            val = float(np.mean(self._elbo_rows(X_val, s["n_threads"])))
        h["val_elbo"].append(val)
        self.loss_curve_.append(loss_total / n)
        if s["verbose"] >= 2:
            msg = (
                f"epoch {self.n_iter_}: loss {loss_total / n:.4f}, "
                f"recon {recon_total / n:.4f}, kl {kl_total / n:.4f}"
            )
            if val is not None:
                msg += f", val ELBO {val:.4f}"
            (bar.write if bar is not None else print)(msg)

    # -- inference ------------------------------------------------------------

    def _check_fitted(self):
        if getattr(self, "params_", None) is None:
            raise NotFittedError(
                "this VAE is not fitted yet; call fit(X) first or use fastvae.load"
            )

    def _inference_network(self):
        if getattr(self, "_infer_net", None) is None:
            s = self._fitted_settings
            self._infer_net = self._network(s, self._fitted_layout, INFERENCE_CHUNK)
        return self._infer_net

    def _threads(self):
        return resolve_num_threads(self.n_threads)

    def _input(self, X, name="X"):
        self._check_fitted()
        return check_array(
            X, name=name, dtype=self.params_.dtype, n_features=self.n_features_in_
        )

    def _call(self, method, *args):
        net = self._inference_network()
        with self._lock, blas_single_threaded():
            return getattr(net, method)(self.params_, *args, n_threads=self._threads())

    def encode(self, X):
        """Parameters of q(z|x).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        mu : ndarray of shape (n_samples, latent_dim)
        logvar : ndarray of shape (n_samples, latent_dim)
            Log-variance, clamped to the range the model uses ([-30, 20]).
        """
        H = self._call("encode", self._input(X))
        k = H.shape[1] // 2
        return H[:, :k].copy(), np.clip(H[:, k:], -30.0, 20.0)

    def transform(self, X):
        """Posterior means mu(x): array of shape (n_samples, latent_dim)."""
        H = self._call("encode", self._input(X))
        return H[:, : H.shape[1] // 2].copy()

    def decode(self, Z):
        """Mean of p(x|z): sigmoid(logits) for Bernoulli, the mean for Gaussian.

        Parameters
        ----------
        Z : array-like of shape (n_samples, latent_dim)

        Returns
        -------
        ndarray of shape (n_samples, n_features)
        """
        self._check_fitted()
        Z = check_array(
            Z, name="Z", dtype=self.params_.dtype,
            n_features=self._fitted_settings["latent_dim"], feature_name="latent dims",
        )
        return self._call("decode", Z)

    def reconstruct(self, X):
        """decode(transform(X)): reconstructions through the posterior means."""
        return self.decode(self.transform(X))

    def sample(self, n_samples=1, *, seed=None):
        """Draw x-space means by decoding z ~ N(0, I).

        Parameters
        ----------
        n_samples : int >= 1
        seed : int, optional
            Seed of the latent draws; the model's seed when None, so repeated
            calls return the same samples.

        Returns
        -------
        ndarray of shape (n_samples, n_features)
        """
        self._check_fitted()
        Param(numbers.Integral, low=1).check("n_samples", n_samples)
        seed = self.seed if seed is None else seed
        Param(numbers.Integral, low=0, high=2**64 - 1).check("seed", seed)
        Z = _rng.normal_matrix(
            seed, _rng.STREAM_SAMPLE, 0, int(n_samples),
            self._fitted_settings["latent_dim"], dtype=self.params_.dtype,
        )
        return self._call("decode", Z)

    def _elbo_rows(self, X, n_threads=None):
        net = self._inference_network()
        with self._lock, blas_single_threaded():
            recon, kl = net.elbo_terms(
                self.params_, X, self._fitted_settings["seed"], _rng.STREAM_EVAL,
                n_threads=n_threads or self._threads(),
            )
        return -(recon + kl)

    def elbo(self, X):
        """Per-sample evidence lower bound log p(x|z) - KL(q(z|x) || p(z)).

        One z per sample, drawn from a fixed evaluation stream (repeated calls
        give the same numbers).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,), float64
        """
        return self._elbo_rows(self._input(X))

    def score_samples(self, X):
        """Per-sample ELBO, a lower bound on log p(x); see `elbo`."""
        return self.elbo(X)

    def score(self, X, y=None):
        """Mean per-sample ELBO of X (higher is better)."""
        return float(np.mean(self.elbo(X)))

    # -- persistence ----------------------------------------------------------

    def save(self, path):
        """Write the fitted model to `path` (.npz + JSON, atomic, no pickle).

        The file holds the constructor arguments, the parameter buffer, the
        optimizer state and the training history; `fastvae.load` restores it.
        """
        self._check_fitted()
        s = self._fitted_settings
        params = {
            k: _jsonable(v) for k, v in self.get_params().items() if k != "optimizer"
        }
        params["dtype"] = np.dtype(s["dtype"]).name
        opt = s["optimizer"]
        meta = {
            "estimator": "VAE",
            "params": params,
            "optimizer": {"name": opt.name, **{k: getattr(opt, k) for k in _fields(opt)}},
            "fitted": {
                "n_features_in_": self.n_features_in_,
                "n_iter_": self.n_iter_,
                "t_": self.t_,
                "history_": self.history_,
                "loss_curve_": self.loss_curve_,
            },
        }
        from fastvae import __version__

        meta["fastvae_version"] = __version__
        arrays = {
            "params": self.params_,
            "opt_state1": self._opt_state[0],
            "opt_state2": self._opt_state[1],
        }
        _io.save(path, meta, arrays)


def load(path) -> VAE:
    """Load a model written by VAE.save.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    VAE
        A fitted model, ready for inference or (with warm_start=True) more
        training.

    Raises
    ------
    FileNotFoundError
        If there is no file at `path`.
    fastvae.io.ModelFileError
        If the file is truncated, corrupted, from a newer format, or not a
        fastvae model.
    """
    meta, arrays = _io.load(path)
    try:
        if meta.get("estimator") != "VAE":
            raise _io.ModelFileError(f"{path} does not hold a VAE")
        params = dict(meta["params"])
        opt_meta = dict(meta["optimizer"])
        fitted = meta["fitted"]
        model = VAE(**params)
        opt_cls = {"sgd": "SGD", "momentum": "Momentum", "adam": "Adam"}[
            opt_meta.pop("name")
        ]
        from fastvae import optim

        model.optimizer = getattr(optim, opt_cls)(**opt_meta)
        s = model._settings()
        layout = model._layout(s, int(fitted["n_features_in_"]))
        for name in ("params", "opt_state1", "opt_state2"):
            a = arrays[name]
            if a.dtype != s["dtype"] or a.shape != (layout.size,):
                raise _io.ModelFileError(
                    f"{path}: array {name!r} does not match the model's architecture"
                )
            if not np.isfinite(a).all():
                raise _io.ModelFileError(f"{path}: array {name!r} holds NaN or inf")
        model.params_ = _aligned_copy(arrays["params"], layout)
        model._opt_state = [
            _aligned_copy(arrays[n], layout) for n in ("opt_state1", "opt_state2")
        ]
        model._optimizer_name = s["optimizer"].name
        model.n_features_in_ = int(fitted["n_features_in_"])
        model.n_iter_ = int(fitted["n_iter_"])
        model.t_ = int(fitted["t_"])
        model.history_ = {k: list(v) for k, v in fitted["history_"].items()}
        model.loss_curve_ = [float(v) for v in fitted["loss_curve_"]]
        model._fitted_layout = layout
        model._fitted_settings = s
        model._lock = threading.RLock()
        model._infer_net = None
    except _io.ModelFileError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise _io.ModelFileError(
            f"{path} has invalid model settings: {exc}"
        ) from None
    return model


# -- helpers --------------------------------------------------------------------


def _empty_history():
    keys = ("epoch", "loss", "reconstruction", "kl", "elbo", "val_elbo", "seconds",
            "samples_per_second", "step", "step_loss")
    return {k: [] for k in keys}


def _epoch_order(seed, epoch, n):
    """The minibatch order of one epoch: a pure function of (seed, epoch)."""
    bitgen = np.random.Philox(key=[seed, _SHUFFLE_STREAM], counter=[0, epoch, 0, 0])
    return np.random.Generator(bitgen).permutation(n).astype(np.int64)


def _kl_weight(beta, warmup, t):
    if warmup <= 0:
        return float(beta)
    return float(beta) * min(1.0, (t + 1) / warmup)


def _check_unit_interval(X, name):
    lo, hi = float(X.min()), float(X.max())
    if lo < 0.0 or hi > 1.0:
        raise ValueError(
            f"{name} must lie in [0, 1] for the Bernoulli likelihood, got values "
            f"in [{lo:g}, {hi:g}]; scale the data (e.g. divide pixels by 255) or "
            "use likelihood='gaussian'"
        )


def _progress(verbose, total):
    if not verbose:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="step", dynamic_ncols=True, mininterval=0.2)


def _aligned_copy(a, layout):
    out = layout.zeros(a.dtype)
    out[...] = a
    return out


def _fields(opt):
    from dataclasses import fields

    return [f.name for f in fields(opt)]


def _jsonable(v):
    if isinstance(v, tuple):
        return list(v)
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return float(v)
    if isinstance(v, type) or isinstance(v, np.dtype):
        return np.dtype(v).name
    return v


def _same(a, b):
    try:
        return bool(a == b) and type(a) is type(b)
    except (TypeError, ValueError):
        return False
