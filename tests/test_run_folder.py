"""fastvae.cli.run_folder: metrics.jsonl lines and reading a run folder back."""

import json
import math
from types import SimpleNamespace

import pytest

from fastvae.cli import run_folder


def _model(epochs):
    history = {
        key: []
        for key in (
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
    }
    model = SimpleNamespace(history_=history, t_=0)
    for e in range(1, epochs + 1):
        for key, value in (
            ("epoch", e),
            ("loss", 100.0 / e),
            ("reconstruction", 90.0 / e),
            ("kl", 10.0 / e),
            ("elbo", -100.0 / e),
            ("val_elbo", None),
            ("active_units", None),
            ("lr", 1e-3),
            ("seconds", 0.5),
            ("samples_per_second", math.inf),
        ):
            history[key].append(value)
        model.t_ += 7
    return model


def test_metrics_log_writes_one_flushed_line_per_epoch(tmp_path):
    path = tmp_path / run_folder.METRICS_FILE
    with run_folder.MetricsLog(path) as log:
        for epochs in (1, 2):
            log.write(run_folder.epoch_record(_model(epochs), elapsed=epochs * 0.6))
            # readable at once, while the file is still open
            lines = path.read_text().splitlines()
            assert len(lines) == epochs
    first, second = (json.loads(line) for line in lines)
    assert tuple(first) == run_folder.METRIC_FIELDS
    assert second == {
        "epoch": 2,
        "step": 14,
        "loss": 50.0,
        "reconstruction": 45.0,
        "kl": 5.0,
        "elbo": -50.0,
        "val_elbo": None,
        "active_units": None,
        "lr": 1e-3,
        "seconds": 0.5,
        "samples_per_second": None,
        "elapsed": 1.2,
    }  # inf is not JSON
    with run_folder.MetricsLog(path, append=True) as log:
        log.write(run_folder.epoch_record(_model(3), elapsed=1.8))
    assert len(path.read_text().splitlines()) == 3
    with run_folder.MetricsLog(path) as log:  # a new run starts an empty file
        pass
    assert path.read_text() == ""


def test_read_history_prefers_history_json(tmp_path):
    with run_folder.MetricsLog(tmp_path / run_folder.METRICS_FILE) as log:
        log.write(run_folder.epoch_record(_model(1), elapsed=0.5))
        log.write(run_folder.epoch_record(_model(2), elapsed=1.0))
    history, source = run_folder.read_history(tmp_path)
    assert source == "metrics.jsonl"
    assert history["epoch"] == [1, 2] and history["loss"] == [100.0, 50.0]
    run_folder.write_json(
        tmp_path / run_folder.HISTORY_FILE, {"history": {"epoch": [1], "loss": [3.0]}}
    )
    history, source = run_folder.read_history(tmp_path)
    assert source == "history.json" and history == {"epoch": [1], "loss": [3.0]}


def test_read_history_skips_a_line_being_written(tmp_path):
    path = tmp_path / run_folder.METRICS_FILE
    path.write_text('{"epoch": 1, "loss": 5.0}\n{"epoch": 2, "lo')
    history, _ = run_folder.read_history(tmp_path)
    assert history["epoch"] == [1] and history["loss"] == [5.0]
    path.write_text('{"epoch": 1, "loss": 5.0}\nnot json\n')
    with pytest.raises(ValueError, match="line 2: not a JSON object"):
        run_folder.read_history(tmp_path)
    path.write_text("")
    with pytest.raises(ValueError, match="no finished epoch yet"):
        run_folder.read_history(tmp_path)


def test_read_history_of_a_missing_or_foreign_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        run_folder.read_history(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="no history.json or metrics.jsonl"):
        run_folder.read_history(tmp_path)
    (tmp_path / run_folder.HISTORY_FILE).write_text("[1, 2]")
    with pytest.raises(ValueError, match="does not hold a JSON object"):
        run_folder.read_history(tmp_path)
    assert run_folder.read_run(tmp_path) is None
