"""Teacher and student factories: every bad configuration fails before training, clearly."""

from __future__ import annotations

import logging

import pytest
import timm
import torch

from medvit.models import (
    ModelConfigError,
    create_student,
    create_teacher,
    model_from_payload,
    model_payload,
    spec_of,
)

TEACHER = "resnet18"


def test_unknown_model_name_names_close_matches():
    with pytest.raises(ModelConfigError, match=r"unknown timm model 'resnet153'.*resnet15"):
        create_teacher("resnet153", 2, 64)


def test_image_size_must_be_a_multiple_of_the_patch_size():
    with pytest.raises(ModelConfigError, match=r"not divisible by the patch size 16.*e\.g\. 64"):
        create_student("tiny", 2, 70)


def test_student_is_a_distilled_deit_at_the_requested_size():
    student = create_student("tiny", 3, 32)
    assert spec_of(student).architecture == "deit_tiny_distilled_patch16_224"
    images = torch.randn(2, 1, 32, 32)
    class_logits, distill_logits = student.train()(images)
    assert class_logits.shape == distill_logits.shape == (2, 3)
    student.eval()
    with torch.no_grad():
        averaged = student(images)
        student.train()
        a, b = student(images)
    assert torch.allclose(averaged, (a + b) / 2, atol=1e-5)  # eval averages the two heads


def _saved_teacher(tmp_path, architecture=TEACHER, classes=2):
    model = create_teacher(architecture, classes, 64)
    path = tmp_path / f"{architecture}-{classes}.pt"
    torch.save(model_payload(model), path)
    return model, path


def test_checkpoint_of_a_fine_tuned_teacher_loads_the_same_weights(tmp_path):
    model, path = _saved_teacher(tmp_path)
    loaded = create_teacher(TEACHER, 2, 64, checkpoint=path)
    assert all(
        torch.equal(a, b)
        for a, b in zip(model.state_dict().values(), loaded.state_dict().values(), strict=True)
    )
    bare = tmp_path / "bare.pt"
    torch.save(model.state_dict(), bare)
    create_teacher(TEACHER, 2, 64, checkpoint=bare)


def test_teacher_checkpoint_of_another_architecture_is_refused(tmp_path):
    _, path = _saved_teacher(tmp_path, architecture="resnet10t")
    with pytest.raises(ModelConfigError, match="is a resnet10t, not a resnet18"):
        create_teacher(TEACHER, 2, 64, checkpoint=path)
    bare = tmp_path / "bare.pt"
    torch.save(timm.create_model("resnet10t", num_classes=2, in_chans=1).state_dict(), bare)
    with pytest.raises(ModelConfigError, match="does not fit resnet18"):
        create_teacher(TEACHER, 2, 64, checkpoint=bare)


def test_teacher_checkpoint_with_another_class_count_is_refused(tmp_path):
    model, path = _saved_teacher(tmp_path, classes=4)
    with pytest.raises(ModelConfigError, match="has 4 classes; the model needs 2"):
        create_teacher(TEACHER, 2, 64, checkpoint=path)
    bare = tmp_path / "bare.pt"
    torch.save(model.state_dict(), bare)
    with pytest.raises(ModelConfigError, match="has 4 classes; the model needs 2"):
        create_teacher(TEACHER, 2, 64, checkpoint=bare)


def test_missing_checkpoint_is_refused(tmp_path):
    with pytest.raises(ModelConfigError, match="does not exist"):
        create_teacher(TEACHER, 2, 64, checkpoint=tmp_path / "nope.pt")


def test_random_init_warns_and_pretrained_asks_timm_for_weights(monkeypatch, caplog):
    with caplog.at_level(logging.WARNING):
        create_teacher(TEACHER, 2, 64)
    assert "random weights" in caplog.text
    calls = []

    def offline(name, pretrained=False, **kwargs):
        calls.append(pretrained)
        raise OSError("no connection to huggingface.co")

    monkeypatch.setattr(timm, "create_model", offline)
    with pytest.raises(ModelConfigError, match="could not download pretrained weights"):
        create_teacher(TEACHER, 2, 64, pretrained=True)
    assert calls == [True]


def test_payload_round_trip_rebuilds_the_model():
    student = create_student("tiny", 2, 32)
    rebuilt = model_from_payload(model_payload(student))
    assert spec_of(rebuilt) == spec_of(student)
    assert all(
        torch.equal(a, b)
        for a, b in zip(student.state_dict().values(), rebuilt.state_dict().values(), strict=True)
    )
