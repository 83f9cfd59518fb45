"""TabularVAE training checkpoints: fit(checkpoint=...) keeps the table's
schema with the run, and fastvae.resume(checkpoint, table) continues it into
the TabularVAE an uninterrupted fit gives, bitwise."""

import numpy as np
import pytest

import fastvae
from fastvae.models.tabular import TABULAR_CHECKPOINT_KEY

pd = pytest.importorskip("pandas")

SETTINGS = dict(epochs=3, batch_size=64, random_state=0, verbose=0, hidden=(16,))


def _table(n=300, seed=0):
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "price": rng.lognormal(size=n),
            "cut": rng.choice(["fair", "good", "ideal"], n),
            "count": rng.poisson(3, n).astype(float),
        }
    )
    frame.loc[rng.choice(n, 25, replace=False), "price"] = np.nan
    frame.loc[rng.choice(n, 10, replace=False), "cut"] = None
    return frame


class _InterruptAt(fastvae.callbacks.Callback):
    def __init__(self, step):
        self.step = step

    def on_step_end(self, model, logs):
        if model.t_ == self.step:
            raise KeyboardInterrupt


def _interrupted(tmp_path, frame, step, **fit):
    with pytest.raises(KeyboardInterrupt):
        fastvae.TabularVAE(**SETTINGS).fit(
            frame,
            checkpoint=tmp_path,
            checkpoint_every_steps=1,
            callbacks=[_InterruptAt(step)],
            **fit,
        )
    return tmp_path / "checkpoint.npz"


def test_resume_equals_the_uninterrupted_fit(tmp_path):
    frame = _table()
    val = frame.iloc[:40]
    full = fastvae.TabularVAE(**SETTINGS).fit(frame, validation_data=val)
    checkpoint = _interrupted(tmp_path, frame, 7, validation_data=val)  # mid-epoch 2
    info = fastvae.checkpoint_info(checkpoint)
    assert info["estimator"] == "TabularVAE" and 0 < info["steps"] <= 7
    resumed = fastvae.resume(checkpoint, frame, validation_data=val)
    assert isinstance(resumed, fastvae.TabularVAE)
    np.testing.assert_array_equal(resumed.vae_.params_, full.vae_.params_)
    assert resumed.history_["val_elbo"] == full.history_["val_elbo"]
    assert resumed.schema_.to_dict() == full.schema_.to_dict()
    assert list(resumed.feature_names_in_) == list(full.feature_names_in_)
    pd.testing.assert_frame_equal(
        resumed.sample(20, random_state=1), full.sample(20, random_state=1)
    )
    # and it saves and loads like any fitted table model
    resumed.save(tmp_path / "model.npz")
    loaded = fastvae.load(tmp_path / "model.npz")
    np.testing.assert_array_equal(loaded.transform(frame), full.transform(frame))


def test_resume_refuses_another_table(tmp_path):
    frame = _table()
    checkpoint = _interrupted(tmp_path, frame, 3)
    changed = frame.assign(price=frame["price"] * 1.01)
    with pytest.raises(ValueError, match="differs from the data"):
        fastvae.resume(checkpoint, changed)
    with pytest.raises(ValueError, match="samples"):
        fastvae.resume(checkpoint, frame.iloc[:-1])


def test_checkpoint_meta_is_kept_and_the_schema_key_reserved(tmp_path):
    frame = _table()
    fastvae.TabularVAE(**SETTINGS).fit(
        frame, checkpoint=tmp_path, checkpoint_meta={"mine": 1}
    )
    meta = fastvae.checkpoint_info(tmp_path)["meta"]
    assert meta["mine"] == 1 and TABULAR_CHECKPOINT_KEY in meta
    with pytest.raises(ValueError, match="fastvae's own"):
        fastvae.TabularVAE(**SETTINGS).fit(
            frame, checkpoint=tmp_path, checkpoint_meta={TABULAR_CHECKPOINT_KEY: 1}
        )


def test_a_failed_fit_leaves_the_model_unfitted(tmp_path):
    model = fastvae.TabularVAE(**SETTINGS)
    with pytest.raises(KeyboardInterrupt):
        model.fit(_table(), checkpoint=tmp_path, callbacks=[_InterruptAt(2)])
    assert not hasattr(model, "vae_") and not hasattr(model, "schema_")
