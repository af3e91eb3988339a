"""The training loop on a tiny CNN: it learns, logs, stops early, and resumes exactly."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from medvit.training import ClassificationTask, EarlyStopping, FitResult, TrainConfig, fit

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


def _fit_seeing(data, model, config, **kwargs) -> tuple[FitResult, list[int]]:
    """`fit` on `data`, and the epochs it reported to `on_epoch_end`."""
    seen: list[int] = []
    result = fit(
        model,
        ClassificationTask(),
        *data,
        config,
        on_epoch_end=lambda metrics, epoch: seen.append(epoch),
        **kwargs,
    )
    return result, seen


def _interrupted_run(data, model, config, identity=None, after_epoch: int = 0) -> None:
    with pytest.raises(_Interrupted):
        fit(
            model,
            ClassificationTask(),
            *data,
            config,
            on_epoch_end=_interrupt_after(after_epoch),
            identity=identity,
        )


def test_rerun_after_interruption_resumes_at_next_epoch_with_identical_result(
    data, make_cnn, tmp_path
):
    uninterrupted = fit(make_cnn(), ClassificationTask(), *data, CONFIG)
    config = CONFIG.model_copy(update={"checkpoint_dir": str(tmp_path / "ckpt")})
    _interrupted_run(data, make_cnn(), config, after_epoch=1)
    resumed, seen = _fit_seeing(data, make_cnn(), config)
    assert resumed.resumed_at == 2 and seen == [2, 3]
    expected, actual = _weights(uninterrupted.model), _weights(resumed.model)
    assert all(torch.equal(expected[name], actual[name]) for name in expected)
    assert resumed.history[-1]["train_loss"] == uninterrupted.history[-1]["train_loss"]


@pytest.mark.parametrize(
    ("change", "part"),
    [
        ({"identity": {"data": "cohort-b", "task": "soft"}}, "data"),
        ({"identity": {"data": "cohort-a", "task": "hard"}}, "task"),
        ({"seed": 0}, "initial_weights"),  # another starting point (e.g. pretrained weights)
        ({"config": {"weight_decay": 0.01}}, "training"),
    ],
    ids=["data", "task", "initial-weights", "config"],
)
def test_interrupted_run_of_another_identity_trains_from_scratch_and_says_why(
    data, make_cnn, tmp_path, caplog, change, part
):
    config = CONFIG.model_copy(update={"epochs": 2, "checkpoint_dir": str(tmp_path)})
    _interrupted_run(data, make_cnn(seed=1), config, {"data": "cohort-a", "task": "soft"})
    caplog.set_level(logging.INFO, logger="medvit.training.loop")
    rerun, seen = _fit_seeing(
        data,
        make_cnn(seed=change.get("seed", 1)),
        config.model_copy(update=change.get("config", {})),
        identity=change.get("identity", {"data": "cohort-a", "task": "soft"}),
    )
    assert rerun.resumed_at is None and seen == [0, 1]
    assert f"from scratch: identity changed: {part}" in caplog.text


def test_finished_run_is_retrained_unless_reuse_is_asked_for(data, make_cnn, tmp_path, caplog):
    config = CONFIG.model_copy(update={"epochs": 2, "checkpoint_dir": str(tmp_path)})
    first = fit(make_cnn(), ClassificationTask(), *data, config, tracking_run_id="run-a")
    caplog.set_level(logging.INFO, logger="medvit.training.loop")
    again, seen = _fit_seeing(data, make_cnn(), config, tracking_run_id="run-b")
    assert not again.reused and again.resumed_at is None and seen == [0, 1]
    assert "a finished run of the same identity exists and reuse_finished is false" in caplog.text

    reuse = config.model_copy(update={"reuse_finished": True})
    reused, seen = _fit_seeing(data, make_cnn(), reuse, tracking_run_id="run-c")
    assert reused.reused and reused.reused_from == "run-b" and seen == []
    assert reused.unreported == reused.history == again.history
    expected, actual = _weights(first.model), _weights(reused.model)
    assert all(torch.equal(expected[name], actual[name]) for name in expected)  # deterministic

    changed = fit(make_cnn(), ClassificationTask(), *data, reuse, identity={"data": "b"})
    assert not changed.reused and len(changed.history) == 2  # reuse never crosses identities


def test_resumed_run_reports_the_epochs_it_did_not_train(data, make_cnn, tmp_path):
    config = CONFIG.model_copy(update={"epochs": 2, "checkpoint_dir": str(tmp_path)})
    _interrupted_run(data, make_cnn(), config, {"data": "a"})
    resumed = fit(make_cnn(), ClassificationTask(), *data, config, identity={"data": "a"})
    assert resumed.resumed_at == 1 and resumed.unreported == resumed.history[:1]


def test_caller_cannot_shadow_the_loops_own_identity_parts(data, make_cnn):
    train, val = data
    with pytest.raises(ValueError, match=r"\['training'\] are computed by the training loop"):
        fit(make_cnn(), ClassificationTask(), train, val, CONFIG, identity={"training": "x"})


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


class _RecordingTask(ClassificationTask):
    """Records every step's loss as a Python float and logs it back as a tensor extra."""

    def __init__(self) -> None:
        super().__init__()
        self.steps: list[tuple[float, int]] = []

    def training_step(self, model, batch):
        loss, extra = super().training_step(model, batch)
        self.steps.append((loss.item(), len(batch[0])))
        return loss, {**extra, "double": 2 * loss.detach()}


def test_epoch_means_are_the_python_float_means_of_the_steps(data, make_cnn):
    """Summed on the device without a sync per step, the epoch's mean stays exactly what
    summing each step's float would give."""
    train, _ = data
    task = _RecordingTask()
    result = fit(make_cnn(), task, train, None, CONFIG.model_copy(update={"epochs": 1}))
    total = 0.0
    for loss, size in task.steps:
        total += loss * size
    count = sum(size for _, size in task.steps)
    assert result.history[0]["train_loss"] == total / count
    assert result.history[0]["train_double"] == pytest.approx(2 * total / count)
