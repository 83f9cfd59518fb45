"""The fields of an estimator's ``history_``: one place for the fit loop,
the callbacks' logs, model files and the command line's metrics.jsonl."""

from __future__ import annotations

# One entry per epoch.
EPOCH_FIELDS = (
    "epoch",
    "loss",
    "reconstruction",
    "kl",
    "elbo",
    "val_elbo",
    "active_units",
    "lr",
    "seconds",
    "samples_per_second",
)
# One entry per twentieth of an epoch: the step count and the mean loss of
# the steps since the previous entry.
STEP_FIELDS = ("step", "step_loss")
HISTORY_FIELDS = EPOCH_FIELDS + STEP_FIELDS


def empty_history() -> dict[str, list]:
    """A ``history_`` with every field and no entries."""
    return {key: [] for key in HISTORY_FIELDS}
