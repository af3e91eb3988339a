"""DeiT distillation losses and the student's task."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from medvit.models import DistillationLoss, DistillationTask, create_student, create_teacher

TARGET = torch.tensor([0, 1, 1, 0])
CLS = torch.tensor([[2.0, -1.0], [0.5, 0.2], [-1.0, 1.5], [0.3, 0.1]])
DIST = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.2, 0.1], [1.0, 2.0]])
TEACHER = torch.tensor([[3.0, 0.0], [0.0, 2.0], [1.0, 0.0], [0.0, 1.0]])  # argmax 0, 1, 0, 1


def test_hard_distillation_is_deits_half_and_half():
    expected = 0.5 * F.cross_entropy(CLS, TARGET) + 0.5 * F.cross_entropy(
        DIST, torch.tensor([0, 1, 0, 1])
    )
    assert DistillationLoss("hard")(CLS, DIST, TARGET, TEACHER) == pytest.approx(expected.item())


def test_soft_distillation_matches_the_tempered_teacher():
    only_labels = DistillationLoss("soft", alpha=0.0)(CLS, DIST, TARGET, TEACHER)
    assert only_labels == pytest.approx(F.cross_entropy(CLS, TARGET).item())
    agreeing = DistillationLoss("soft", alpha=1.0, tau=3.0)(CLS, TEACHER, TARGET, TEACHER)
    assert agreeing.item() == pytest.approx(0.0, abs=1e-6)
    tau = 2.0
    kl = F.kl_div(F.log_softmax(DIST / tau, 1), F.softmax(TEACHER / tau, 1), reduction="batchmean")
    half = DistillationLoss("soft", alpha=0.5, tau=tau)(CLS, DIST, TARGET, TEACHER)
    expected = 0.5 * F.cross_entropy(CLS, TARGET) + 0.5 * tau**2 * kl
    assert half.item() == pytest.approx(expected.item(), rel=1e-5)


def test_deit_lt_reweights_the_distillation_term_from_its_epoch():
    weights = torch.tensor([1.0, 3.0])
    loss = DistillationLoss("deit_lt", distill_weights=weights, reweight_from_epoch=2)
    plain = DistillationLoss("hard")(CLS, DIST, TARGET, TEACHER)
    assert loss(CLS, DIST, TARGET, TEACHER) == pytest.approx(plain.item())  # deferred
    loss.epoch = 2
    teacher_labels = torch.tensor([0, 1, 0, 1])
    expected = 0.5 * F.cross_entropy(CLS, TARGET) + 0.5 * F.cross_entropy(
        DIST, teacher_labels, weight=weights
    )
    assert loss(CLS, DIST, TARGET, TEACHER) == pytest.approx(expected.item())
    with pytest.raises(ValueError, match="distill_weights"):
        DistillationLoss("deit_lt")


def test_student_step_learns_from_a_frozen_teacher_in_eval_mode():
    torch.manual_seed(0)
    teacher = create_teacher("resnet18", 2, 32).train()
    running_mean = teacher.bn1.running_mean.clone()
    student = create_student("tiny", 2, 32).train()
    task = DistillationTask(teacher, DistillationLoss("hard"))
    images, target = torch.randn(4, 1, 32, 32), torch.tensor([0, 1, 0, 1])
    loss, logs = task.training_step(student, (images, target))
    loss.backward()
    assert not teacher.training and torch.equal(teacher.bn1.running_mean, running_mean)
    assert all(p.grad is None for p in teacher.parameters())
    assert student.head_dist.weight.grad is not None and student.head.weight.grad is not None
    assert 0.0 <= logs["teacher_agreement"] <= 1.0
