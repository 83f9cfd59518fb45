"""AnnData for the estimators: `fit(adata, layer=..., condition_key=...)`
converts it with fastvae.data.annotated and records how, in fitted
attributes, so that every inference method converts a held-out AnnData the
same way with no further arguments.

One conversion point each: `training_input` for fit, partial_fit and
fastvae.resume (called inside the MPI collective part, so a rank that
fails to convert fails the fit on every rank), and the `accepts_anndata`
decorator for the inference methods.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any, ParamSpec, TypeVar

import numpy as np

from fastvae.data.annotated import anndata_input, is_anndata

__all__ = ["FITTED", "accepts_anndata", "training_input"]

# The fitted attributes saying how an AnnData becomes (X, condition).
FITTED = ("anndata_layer_", "condition_key_", "condition_levels_")

P = ParamSpec("P")
R = TypeVar("R")


def _model_dtype(model) -> np.dtype:
    """The dtype training will use (the copy of a backed matrix is written
    in it, so that the checks do not convert it in memory)."""
    try:
        dtype = np.dtype(model.dtype)
    except TypeError:
        return np.dtype(np.float32)
    return dtype if dtype in (np.float32, np.float64) else np.dtype(np.float32)


@contextmanager
def training_input(
    model,
    X,
    condition,
    validation_data,
    layer: str | None,
    condition_key: str | None,
    *,
    continuing: bool,
) -> Iterator[tuple[Any, Any, Any, dict[str, Any] | None]]:
    """(X, condition, validation_data, conversion) for one fit, partial_fit or
    resume, valid for the ``with`` block (a backed matrix's temporary copy
    is deleted at its end).

    `continuing`: partial_fit, or fastvae.resume of a checkpoint.
    `conversion` holds the values of FITTED to set as training starts, or
    None to leave them (continuing a fitted model on arrays).

    Continuing a model fitted on an AnnData, an AnnData with no layer,
    condition_key or condition given is read as the fit read its. A
    continued fit (continuing, or warm_start) with the fitted condition_key
    keeps the fitted levels, so its columns keep their meaning.
    """
    fitted = getattr(model, "params_", None) is not None
    if not is_anndata(X):
        if layer is not None or condition_key is not None:
            raise ValueError(
                "layer and condition_key read an AnnData; X is a "
                f"{type(X).__name__} (pass condition= for arrays)"
            )
        with ExitStack() as stack:
            validation_data = _validation(
                stack, validation_data, None, None, None, _model_dtype(model)
            )
            record = None if continuing and fitted else dict.fromkeys(FITTED)
            yield X, condition, validation_data, record
        return
    if condition is not None and condition_key is not None:
        raise ValueError(
            f"pass condition or condition_key, not both: condition_key="
            f"{condition_key!r} takes the condition from adata.obs"
        )
    if (
        continuing
        and fitted
        and layer is None
        and condition_key is None
        and condition is None
    ):
        layer = getattr(model, "anndata_layer_", None)
        condition_key = getattr(model, "condition_key_", None)
    levels = None
    if (
        condition_key is not None
        and fitted
        and (continuing or getattr(model, "warm_start", False))
        and condition_key == getattr(model, "condition_key_", None)
    ):
        levels = model.condition_levels_
    dtype = _model_dtype(model)
    with ExitStack() as stack:
        X, from_obs, levels = stack.enter_context(
            anndata_input(
                X, layer=layer, condition_key=condition_key, levels=levels, dtype=dtype
            )
        )
        validation_data = _validation(
            stack, validation_data, layer, condition_key, levels, dtype
        )
        record = {
            "anndata_layer_": layer,
            "condition_key_": condition_key,
            "condition_levels_": levels,
        }
        yield X, condition if from_obs is None else from_obs, validation_data, record


def _validation(stack, data, layer, condition_key, levels, dtype):
    """validation_data with an AnnData in it converted as the training data
    (a backed copy lives as long as `stack`)."""
    cond = None
    if isinstance(data, tuple) and len(data) == 2 and is_anndata(data[0]):
        if condition_key is not None:
            raise ValueError(
                "validation_data: pass the AnnData alone; its condition comes "
                f"from adata.obs[{condition_key!r}]"
            )
        data, cond = data
    if not is_anndata(data):
        return data
    X_val, from_obs, _ = stack.enter_context(
        anndata_input(
            data, layer=layer, condition_key=condition_key, levels=levels, dtype=dtype
        )
    )
    cond = cond if from_obs is None else from_obs
    return X_val if cond is None else (X_val, cond)


def accepts_anndata(method: Callable[P, R]) -> Callable[P, R]:
    """Let an inference method ``method(self, X, ..., condition=None, ...)``
    take an AnnData X, read with the fitted layer, condition key and levels.
    A condition argument is then an error when the fit took the condition
    from adata.obs."""
    import inspect

    signature = inspect.signature(method)

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        X = args[1] if len(args) > 1 else kwargs.get("X")
        if not is_anndata(X):
            return method(*args, **kwargs)
        bound = signature.bind(*args, **kwargs)
        model: Any = bound.arguments["self"]
        model._check_fitted()
        key = getattr(model, "condition_key_", None)
        if key is not None and bound.arguments.get("condition") is not None:
            raise ValueError(
                f"condition given, but this {type(model).__name__} takes it from "
                f"adata.obs[{key!r}] (its condition_key_); pass the AnnData alone"
            )
        with anndata_input(
            X,
            layer=getattr(model, "anndata_layer_", None),
            condition_key=key,
            levels=getattr(model, "condition_levels_", None),
            dtype=model.params_.dtype,
        ) as (X, condition, _):
            bound.arguments["X"] = X
            if key is not None:
                bound.arguments["condition"] = condition
            return method(*bound.args, **bound.kwargs)

    return wrapper
