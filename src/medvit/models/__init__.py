"""Model factories and losses: a CNN teacher, a distilled DeiT student, their losses, and the
masked autoencoder whose encoder initialises any ViT here (`mae`).

Why here and not in the pipelines: a researcher should build, load and compare these models in a
notebook without Kedro. Architectures come from timm (registered by name, no re-implementation);
what medvit adds is the spec that travels with the weights, the checks that stop a bad
configuration before training, the DeiT / DeiT-LT distillation losses and the MAE task.
"""

from medvit.models.distillation import DistillationLoss, DistillationTask, LossKind
from medvit.models.factory import (
    ModelConfigError,
    ModelSpec,
    StudentSize,
    build_model,
    create_student,
    create_teacher,
    load_weights,
    model_from_payload,
    model_payload,
    spec_of,
    student_architecture,
)
from medvit.models.mae import (
    EncoderLoad,
    MAEOutput,
    MAETask,
    MaskedAutoencoderViT,
    load_mae_encoder,
    random_masking,
)
from medvit.models.profile import count_parameters, latency_ms

__all__ = [
    "DistillationLoss",
    "DistillationTask",
    "EncoderLoad",
    "LossKind",
    "MAEOutput",
    "MAETask",
    "MaskedAutoencoderViT",
    "ModelConfigError",
    "ModelSpec",
    "StudentSize",
    "build_model",
    "count_parameters",
    "create_student",
    "create_teacher",
    "latency_ms",
    "load_mae_encoder",
    "load_weights",
    "model_from_payload",
    "model_payload",
    "random_masking",
    "spec_of",
    "student_architecture",
]
