"""Tables for the tabular VAE: each column's kind, inferred or given, and
its encoding into the numbers the compiled step reads.

A table is a pandas DataFrame or a NumPy structured array. Each kept
column becomes one column of a float matrix:

- ``gaussian`` (floats): a quantile transform to standard normal scores
  (default; the synthetic marginals then follow the data's) or
  standardisation;
- ``bernoulli`` (bool or any two-valued column): 0 and 1;
- ``categorical`` (category, object, string, low-cardinality integer):
  the level's code 0, 1, ...; the ``max_levels - 1`` most frequent levels
  keep their own code and the rest share one, sampled back in proportion
  to their counts, so a column of 50,000 distinct values stays small;
- ``negbin`` / ``poisson`` (non-negative integer counts, 99% of them at
  most MAX_COUNT): the count.

Missing values (NaN, None, NaT, pandas.NA) become NaN. Identifiers and free
text (nearly every value distinct) are dropped with a warning. A schema
is plain data (``to_dict`` / ``from_dict``, JSON-safe), so model files
keep it without pickle.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["COLUMN_KINDS", "ColumnSpec", "TableSchema", "infer_schema"]

COLUMN_KINDS = ("gaussian", "bernoulli", "categorical", "negbin", "poisson", "drop")
CONTINUOUS_ENCODINGS = ("quantile", "standard")
# An integer column with at most this many distinct values is categorical.
LOW_CARDINALITY = 10
# A text or integer column whose distinct values are at least this share
# of its rows (and more than MIN_DISTINCT_ID of them) identifies rows.
ID_SHARE = 0.95
MIN_DISTINCT_ID = 50
# Non-negative integers up to this (99th percentile) are counts; larger
# ones (prices, incomes) model better as continuous values, rounded back.
MAX_COUNT = 1000
# Points of the quantile transform of a continuous column.
N_QUANTILES = 1000


@dataclass
class ColumnSpec:
    """One column: its name, kind, original dtype and encoding state."""

    name: str
    kind: str
    dtype: str
    levels: list = field(default_factory=list)  # categorical, bernoulli
    tail_levels: list = field(default_factory=list)  # shared "other" code
    tail_counts: list = field(default_factory=list)
    quantiles: list = field(default_factory=list)  # gaussian, quantile
    mean: float = 0.0
    scale: float = 1.0
    missing_rate: float = 0.0
    integer: bool = False  # continuous values that were all integers

    @property
    def n_levels(self) -> int:
        return len(self.levels) + (1 if self.tail_levels else 0)

    def likelihood(self):
        """The VAE's likelihood entry of the column."""
        if self.kind == "categorical":
            return ("categorical", max(2, self.n_levels))
        return self.kind


@dataclass
class TableSchema:
    """The kept columns of a table, in order, and how each is encoded."""

    columns: list[ColumnSpec]
    dropped: list[str]
    encoding: str = "quantile"
    kind: str = "dataframe"  # or "structured"

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def likelihoods(self) -> list:
        return [c.likelihood() for c in self.columns]

    # -- encode ------------------------------------------------------------------

    def encode(self, table) -> np.ndarray:
        """The table's kept columns as a float64 matrix (NaN for missing).

        Raises
        ------
        ValueError
            A column is absent, or a value no level or count can hold.
        """
        source = _columns_of(table)
        out = np.empty((_n_rows(source), len(self.columns)), dtype=np.float64)
        for j, spec in enumerate(self.columns):
            if spec.name not in source:
                raise ValueError(f"the table has no column {spec.name!r}")
            out[:, j] = _encode(spec, source[spec.name], self.encoding)
        return out

    # -- decode ------------------------------------------------------------------

    def decode(self, X: np.ndarray, rng: np.random.Generator):
        """A table (DataFrame or structured array, like the one fitted) from
        encoded rows; NaN becomes the column's missing value. The shared
        code of rare levels is drawn back among them by their counts."""
        values = {
            spec.name: _decode(spec, X[:, j], self.encoding, rng)
            for j, spec in enumerate(self.columns)
        }
        if self.kind == "structured":
            return _structured(self.columns, values)
        import pandas as pd

        frame = pd.DataFrame(values)
        for spec in self.columns:
            frame[spec.name] = _as_dtype(frame[spec.name], spec)
        return frame

    # -- plain data ----------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "columns": [_spec_dict(c) for c in self.columns],
            "dropped": list(self.dropped),
            "encoding": self.encoding,
            "kind": self.kind,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TableSchema:
        try:
            columns = [ColumnSpec(**c) for c in data["columns"]]
            schema = cls(
                columns, list(data["dropped"]), str(data["encoding"]), str(data["kind"])
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a table schema: {exc}") from None
        for c in schema.columns:
            if c.kind not in COLUMN_KINDS or c.kind == "drop":
                raise ValueError(f"column {c.name!r} has an unknown kind {c.kind!r}")
        if schema.encoding not in CONTINUOUS_ENCODINGS:
            raise ValueError(f"unknown continuous encoding {schema.encoding!r}")
        return schema


def infer_schema(
    table,
    kinds: dict[str, str] | None = None,
    *,
    encoding: str = "quantile",
    max_levels: int = 1000,
) -> TableSchema:
    """Infer each column's kind (``kinds`` overrides any of them by name,
    "drop" leaves a column out) and fit its encoding.

    Raises
    ------
    ValueError
        An override names no column or no kind, or no column is left.
    """
    if encoding not in CONTINUOUS_ENCODINGS:
        raise ValueError(
            f"encoding must be one of {list(CONTINUOUS_ENCODINGS)}, got {encoding!r}"
        )
    if not (isinstance(max_levels, int) and max_levels >= 2):
        raise ValueError(f"max_levels must be an int >= 2, got {max_levels!r}")
    source = _columns_of(table)
    kinds = dict(kinds or {})
    unknown = sorted(set(kinds) - set(source))
    if unknown:
        raise ValueError(f"kinds names columns the table does not have: {unknown}")
    for name, kind in kinds.items():
        if kind not in COLUMN_KINDS:
            raise ValueError(
                f"kinds[{name!r}] must be one of {list(COLUMN_KINDS)}, got {kind!r}"
            )
    columns, dropped = [], []
    for name, values in source.items():
        kind, reason = kinds.get(name), ""
        if kind is None:
            kind, reason = _infer_kind(values)
        if kind == "drop":
            dropped.append(name)
            if reason:
                warnings.warn(
                    f"column {name!r} dropped: {reason}", UserWarning, stacklevel=3
                )
            continue
        columns.append(_fit(name, kind, values, encoding, max_levels))
    if not columns:
        raise ValueError("no column is left to model")
    kind = "structured" if isinstance(table, np.ndarray) else "dataframe"
    return TableSchema(columns, dropped, encoding, kind)


# -- reading columns ------------------------------------------------------------


def _columns_of(table) -> dict[str, np.ndarray]:
    """name -> 1-D array of a DataFrame's or structured array's columns."""
    if isinstance(table, np.ndarray):
        if table.dtype.names is None or table.ndim != 1:
            raise TypeError(
                "a table must be a pandas DataFrame or a 1-D NumPy structured array"
            )
        return {name: table[name] for name in table.dtype.names}
    columns = getattr(table, "columns", None)
    if columns is None or not hasattr(table, "iloc"):
        raise TypeError(
            f"a table must be a pandas DataFrame or a NumPy structured array, got "
            f"{type(table).__name__}"
        )
    if len(set(map(str, columns))) != len(columns):
        raise ValueError("the table's column names must be distinct")
    return {str(name): table[name] for name in columns}


def _n_rows(source) -> int:
    return len(next(iter(source.values()))) if source else 0


def _missing(values) -> np.ndarray:
    """True where a value is missing (NaN, None, NaT, pandas.NA)."""
    try:
        import pandas as pd

        return np.asarray(pd.isna(values), dtype=bool)
    except ImportError:
        arr = np.asarray(values)
        if arr.dtype.kind == "f":
            return np.isnan(arr)
        if arr.dtype.kind == "O":
            return np.array([v is None or v != v for v in arr], dtype=bool)
        return np.zeros(arr.shape, dtype=bool)


def _dtype_name(values) -> str:
    return str(getattr(values, "dtype", np.asarray(values).dtype))


def _infer_kind(values) -> tuple[str, str]:
    """(kind, why it is dropped) from a column's dtype and values."""
    dtype = _dtype_name(values)
    gone = _missing(values)
    seen = np.asarray(values, dtype=object)[~gone]
    n_distinct = len(set(seen.tolist())) if seen.size else 0
    if n_distinct == 0:
        return "drop", "no observed values"
    if dtype in ("bool", "boolean"):
        return "bernoulli", ""
    if dtype.startswith("datetime") or dtype.startswith("timedelta"):
        return "drop", f"dtype {dtype} is not supported"
    if n_distinct == 2:
        return "bernoulli", ""
    if n_distinct == 1:
        return "categorical", ""
    if dtype == "category":
        return "categorical", ""
    numeric = np.asarray(values).dtype.kind in "iuf" or dtype in (
        "Int8",
        "Int16",
        "Int32",
        "Int64",
        "UInt8",
        "UInt16",
        "UInt32",
        "UInt64",
        "Float32",
        "Float64",
    )
    many = n_distinct >= ID_SHARE * seen.size and n_distinct > MIN_DISTINCT_ID
    if not numeric:
        if many:
            return "drop", (
                f"{n_distinct} distinct values in {seen.size} rows: an identifier "
                "or free text (pass kinds={name: 'categorical'} to keep it)"
            )
        return "categorical", ""
    x = seen.astype(np.float64)
    integral = bool(np.all(x == np.round(x)))
    if integral and many and np.all(np.diff(np.sort(x)) == 1):
        return "drop", (
            f"{n_distinct} consecutive distinct integers in {seen.size} rows: an "
            "identifier (pass kinds={name: 'negbin'} to keep it)"
        )
    if integral and n_distinct <= LOW_CARDINALITY:
        return "categorical", ""
    if integral and x.min() >= 0 and np.quantile(x, 0.99) <= MAX_COUNT:
        return "negbin", ""
    return "gaussian", ""


# -- fitting and encoding one column ------------------------------------------------


def _fit(name, kind, values, encoding, max_levels) -> ColumnSpec:
    gone = _missing(values)
    n = len(gone)
    spec = ColumnSpec(
        name=name,
        kind=kind,
        dtype=_dtype_name(values),
        missing_rate=float(gone.mean()) if n else 0.0,
    )
    seen = np.asarray(values, dtype=object)[~gone]
    if kind in ("bernoulli", "categorical"):
        levels, counts = _levels(values, seen)
        if kind == "bernoulli" and len(levels) > 2:
            raise ValueError(
                f"column {name!r} has {len(levels)} distinct values; a bernoulli "
                "column has at most 2"
            )
        if kind == "categorical" and len(levels) > max_levels:
            order = np.argsort(-np.asarray(counts), kind="stable")
            keep = sorted(order[: max_levels - 1].tolist())
            rest = order[max_levels - 1 :].tolist()
            spec.tail_levels = [_plain(levels[i]) for i in rest]
            spec.tail_counts = [int(counts[i]) for i in rest]
            levels = [levels[i] for i in keep]
        spec.levels = [_plain(v) for v in levels]
        return spec
    x = _numbers(name, seen)
    if kind in ("negbin", "poisson"):
        if x.size and (x.min() < 0 or not np.all(x == np.round(x))):
            raise ValueError(f"column {name!r} ({kind}) must hold counts >= 0")
        return spec
    spec.integer = bool(x.size) and bool(np.all(x == np.round(x)))
    if x.size:
        spec.mean = float(x.mean())
        spec.scale = float(x.std()) or 1.0
        probs = np.linspace(0.0, 1.0, min(N_QUANTILES, max(2, x.size)))
        spec.quantiles = [float(q) for q in np.quantile(x, probs)]
    return spec


def _levels(values, seen):
    """Distinct observed values in a stable order (a category dtype's own
    order, else sorted when comparable) and their counts."""
    cats = getattr(getattr(values, "cat", None), "categories", None)
    uniq, counts = _unique(seen)
    if cats is not None:
        by_value = dict(zip(uniq, counts, strict=True))
        ordered = [v for v in cats.tolist() if v in by_value]
        return ordered, [by_value[v] for v in ordered]
    try:
        order = sorted(range(len(uniq)), key=lambda i: uniq[i])
    except TypeError:
        order = sorted(range(len(uniq)), key=lambda i: str(uniq[i]))
    return [uniq[i] for i in order], [counts[i] for i in order]


def _unique(seen):
    counts: dict = {}
    for v in seen.tolist():
        counts[v] = counts.get(v, 0) + 1
    return list(counts), list(counts.values())


def _plain(v):
    """A JSON-safe level (NumPy scalars become Python ones)."""
    return v.item() if isinstance(v, np.generic) else v


def _numbers(name, seen) -> np.ndarray:
    try:
        return np.asarray(seen, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"column {name!r} holds values that are not numbers") from None


def _encode(spec: ColumnSpec, values, encoding) -> np.ndarray:
    gone = _missing(values)
    out = np.full(len(gone), np.nan)
    seen = np.asarray(values, dtype=object)[~gone]
    if spec.kind in ("bernoulli", "categorical"):
        code = {v: i for i, v in enumerate(spec.levels)}
        other = len(spec.levels) if spec.tail_levels else None
        tail = set(spec.tail_levels)
        codes = np.empty(seen.size)
        for i, v in enumerate(seen.tolist()):
            c = code.get(v)
            if c is None:
                if other is not None and v in tail:
                    c = other
                else:
                    raise ValueError(
                        f"column {spec.name!r} has the value {v!r}, which was not "
                        "seen in fit"
                    )
            codes[i] = c
        out[~gone] = codes
        return out
    x = _numbers(spec.name, seen)
    if spec.kind in ("negbin", "poisson"):
        if x.size and x.min() < 0:
            raise ValueError(
                f"column {spec.name!r} ({spec.kind}) must hold counts >= 0"
            )
        out[~gone] = x
        return out
    out[~gone] = _forward(spec, x, encoding)
    return out


def _forward(spec, x, encoding):
    if encoding == "standard" or len(spec.quantiles) < 2:
        return (x - spec.mean) / spec.scale
    q = np.asarray(spec.quantiles)
    probs = np.linspace(0.0, 1.0, q.size)
    # ties in the quantiles (repeated values): the middle of their range
    lo = np.interp(x, q, probs, left=0.0, right=1.0)
    hi = -np.interp(-x, -q[::-1], -probs[::-1], left=-1.0, right=0.0)
    u = np.clip(0.5 * (lo + hi), 1e-4, 1 - 1e-4)
    from scipy.special import ndtri

    return ndtri(u)


def _backward(spec, z, encoding):
    if encoding == "standard" or len(spec.quantiles) < 2:
        x = z * spec.scale + spec.mean
    else:
        from scipy.special import ndtr

        q = np.asarray(spec.quantiles)
        x = np.interp(ndtr(z), np.linspace(0.0, 1.0, q.size), q)
    return np.round(x) if spec.integer else x


def _decode(spec: ColumnSpec, x, encoding, rng) -> np.ndarray:
    gone = np.isnan(x)
    out = np.empty(len(x), dtype=object)
    out[gone] = None
    if spec.kind in ("bernoulli", "categorical"):
        codes = np.clip(np.nan_to_num(x[~gone]).astype(np.int64), 0, spec.n_levels - 1)
        levels = np.empty(spec.n_levels, dtype=object)
        levels[: len(spec.levels)] = spec.levels
        vals = levels[codes] if len(spec.levels) else np.empty(0, dtype=object)
        if spec.tail_levels:
            rare = codes == len(spec.levels)
            p = np.asarray(spec.tail_counts, dtype=np.float64)
            tail = np.empty(len(spec.tail_levels), dtype=object)
            tail[:] = spec.tail_levels
            vals[rare] = tail[
                rng.choice(len(tail), size=int(rare.sum()), p=p / p.sum())
            ]
        out[~gone] = vals
        return out
    if spec.kind in ("negbin", "poisson"):
        out[~gone] = np.round(x[~gone])
        return out
    out[~gone] = _backward(spec, x[~gone], encoding)
    return out


def _as_dtype(series, spec: ColumnSpec):
    """A decoded column in its original dtype where that can hold it."""
    import pandas as pd

    has_na = series.isna().any()
    dtype = spec.dtype
    if dtype == "category":
        return pd.Categorical(series, categories=spec.levels + spec.tail_levels)
    if dtype in ("bool", "boolean"):
        return series.astype("boolean" if has_na else bool)
    try:
        if dtype.startswith(("int", "uint")) and has_na:
            return series.astype(dtype.capitalize().replace("Uint", "UInt"))
        if dtype.startswith(("int", "uint", "float", "Int", "UInt", "Float")):
            return series.astype(dtype)
        if dtype in ("string", "str"):  # pandas' string dtypes, by their name
            return series.astype(dtype)
    except (TypeError, ValueError):
        pass
    return series


def _structured(columns, values) -> np.ndarray:
    """A structured array of the decoded columns, in their fitted dtypes
    (floats get NaN for missing values; other dtypes cannot hold them and
    become object columns)."""
    n = len(next(iter(values.values())))
    fields = []
    for spec in columns:
        col = values[spec.name]
        missing = np.array([v is None for v in col], dtype=bool)
        dtype = np.dtype(spec.dtype) if spec.dtype != "object" else np.dtype(object)
        if missing.any() and dtype.kind != "f":
            dtype = np.dtype(object)
        fields.append((spec.name, dtype))
    out = np.empty(n, dtype=fields)
    for spec in columns:
        col = values[spec.name]
        target = out.dtype[spec.name]
        if target.kind == "f":
            out[spec.name] = np.array(
                [np.nan if v is None else v for v in col], dtype=target
            )
        else:
            out[spec.name] = col
    return out


def _spec_dict(c: ColumnSpec) -> dict[str, Any]:
    return {
        "name": c.name,
        "kind": c.kind,
        "dtype": c.dtype,
        "levels": list(c.levels),
        "tail_levels": list(c.tail_levels),
        "tail_counts": list(c.tail_counts),
        "quantiles": list(c.quantiles),
        "mean": c.mean,
        "scale": c.scale,
        "missing_rate": c.missing_rate,
        "integer": c.integer,
    }
