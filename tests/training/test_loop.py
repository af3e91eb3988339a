"""The training loop on a tiny CNN: it learns, logs, stops early, and resumes exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medvit.training import ClassificationTask, EarlyStopping, TrainConfig, fit

CONFIG = TrainConfig(
    epochs=4, batch_size=16, lr=3e-3, warmup_epochs=1, progress=False, weight_decay=0.0
)


def _weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_fit_learns_and_reports_every_epoch(data, make_cnn):
    train, val = data
    logged: list[tuple[int, dict]] = []
    result = fit(
        make_cnn(),
        ClassificationTask(),
        train,
        val,
        CONFIG,
        on_epoch_end=lambda metrics, epoch: logged.append((epoch, metrics)),
    )
    assert [epoch for epoch, _ in logged] == [0, 1, 2, 3]
    first, last = logged[0][1], logged[-1][1]
    assert {"train_loss", "lr", "train_images_per_s", "val_auroc", "val_loss"} <= last.keys()
    assert last["train_loss"] < first["train_loss"]
    assert last["val_auroc"] > 0.9
    assert result.history == [metrics for _, metrics in logged]
    # warmup then cosine: the learning rate peaks after the first epoch and then decays
    lrs = [metrics["lr"] for _, metrics in logged]
    assert lrs[0] == pytest.approx(CONFIG.lr) and lrs[1] < lrs[0] and lrs[3] < lrs[2]


def test_cnns_train_in_channels_last(data, make_cnn):
    train, _ = data
    result = fit(
        make_cnn(), ClassificationTask(), train, None, CONFIG.model_copy(update={"epochs": 1})
    )
    conv = result.model[0].weight
    assert conv.is_contiguous(memory_format=torch.channels_last)


class _Interrupted(RuntimeError):
    pass


def _interrupt_after(epoch_to_stop: int):
    def callback(metrics: dict, epoch: int) -> None:
        if epoch == epoch_to_stop:
            raise _Interrupted

    return callback


def test_rerun_after_interruption_resumes_at_next_epoch_with_identical_result(
    data, make_cnn, tmp_path
):
    train, val = data
    uninterrupted = fit(make_cnn(), ClassificationTask(), train, val, CONFIG)

    config = CONFIG.model_copy(update={"checkpoint_dir": str(tmp_path / "ckpt")})
    with pytest.raises(_Interrupted):
        fit(make_cnn(), ClassificationTask(), train, val, config, on_epoch_end=_interrupt_after(1))
    seen: list[int] = []
    resumed = fit(
        make_cnn(seed=99),  # the checkpoint, not the fresh init, decides the weights
        ClassificationTask(),
        train,
        val,
        config,
        on_epoch_end=lambda metrics, epoch: seen.append(epoch),
    )
    assert resumed.resumed_at == 2 and seen == [2, 3]
    expected, actual = _weights(uninterrupted.model), _weights(resumed.model)
    assert all(torch.equal(expected[name], actual[name]) for name in expected)
    assert resumed.history[-1]["train_loss"] == uninterrupted.history[-1]["train_loss"]


def test_checkpoint_of_another_run_is_not_resumed(data, make_cnn, tmp_path):
    train, val = data
    config = CONFIG.model_copy(update={"epochs": 1, "checkpoint_dir": str(tmp_path)})
    fit(make_cnn(), ClassificationTask(), train, val, config, run_key="cohort-a")
    again = fit(make_cnn(), ClassificationTask(), train, val, config, run_key="cohort-a")
    other = fit(make_cnn(), ClassificationTask(), train, val, config, run_key="cohort-b")
    assert again.resumed_at == 1 and again.history
    assert other.resumed_at is None


def test_early_stopping_restores_the_best_epoch(data, make_cnn):
    train, val = data
    config = CONFIG.model_copy(
        update={
            "epochs": 10,
            "lr": 1e-9,  # nothing improves after the first epoch
            "warmup_epochs": 0,
            "early_stopping": EarlyStopping(monitor="val_auroc", patience=2, min_delta=0.5),
        }
    )
    result = fit(make_cnn(), ClassificationTask(), train, val, config)
    assert result.stopped_early and len(result.history) == 3 and result.best_epoch == 0


def test_class_balanced_sampling_draws_both_classes_evenly(data, make_cnn):
    train, _ = data
    counts = np.bincount(train.labels)
    weights = 1.0 / counts[train.labels]
    drawn: list[int] = []

    class Recorder(ClassificationTask):
        def training_step(self, model, batch):
            drawn.extend(batch[1].tolist())
            return super().training_step(model, batch)

    fit(
        make_cnn(),
        Recorder(),
        train,
        None,
        CONFIG.model_copy(update={"epochs": 2}),
        sample_weights=weights,
    )
    share = np.mean(drawn)
    assert 0.4 < share < 0.6  # natural share is 1/3


def test_too_few_samples_for_a_batch_is_a_clear_error(data, make_cnn):
    train, val = data
    with pytest.raises(ValueError, match="make no full batch"):
        fit(
            make_cnn(),
            ClassificationTask(),
            train,
            val,
            CONFIG.model_copy(update={"batch_size": 500}),
        )
