"""Teacher and student factories on top of timm, with every bad configuration caught up front.

A model is described by a `ModelSpec` (timm architecture, classes, image size, input channels)
that travels with its weights: a saved model is rebuilt from its spec, and a teacher checkpoint is
checked against the requested spec before any training starts, so a wrong architecture or class
count fails in seconds with a message rather than after an epoch with a shape error.
"""

from __future__ import annotations

import difflib
import logging
from pathlib import Path
from typing import Literal

import timm
import torch
from pydantic import BaseModel, ConfigDict, PositiveInt
from torch import nn

logger = logging.getLogger(__name__)

StudentSize = Literal["tiny", "small", "base"]
SPEC_ATTRIBUTE = "medvit_spec"


class ModelConfigError(ValueError):
    """A model that cannot be built or loaded as configured."""


class ModelSpec(BaseModel):
    """Everything needed to rebuild a model's architecture; weights are stored beside it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    architecture: str
    num_classes: PositiveInt
    image_size: PositiveInt
    in_chans: PositiveInt = 1  # MRI slices are single-channel
    # Constructor options that change the architecture or its training (a ViT's average pooling
    # with fc_norm, drop path): a model rebuilt from its spec must have the same modules.
    timm_kwargs: dict[str, bool | int | float | str] = {}


def student_architecture(size: StudentSize) -> str:
    return f"deit_{size}_distilled_patch16_224"


def _require_known(architecture: str) -> None:
    if not timm.is_model(architecture):
        close = difflib.get_close_matches(architecture, timm.list_models(), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ModelConfigError(f"unknown timm model {architecture!r}{hint}")


def _is_vit(architecture: str) -> bool:
    return architecture.startswith(("deit", "vit"))


def _patch_size(architecture: str) -> int:
    return int(architecture.split("patch")[1].split("_")[0])


def _require_image_size(spec: ModelSpec) -> None:
    if _is_vit(spec.architecture) and spec.image_size % _patch_size(spec.architecture):
        patch = _patch_size(spec.architecture)
        nearest = max(patch, round(spec.image_size / patch) * patch)
        raise ModelConfigError(
            f"image_size {spec.image_size} is not divisible by the patch size {patch} of"
            f" {spec.architecture}; use a multiple of {patch}, e.g. {nearest}"
        )


def build_model(spec: ModelSpec, pretrained: bool = False) -> nn.Module:
    """The timm model for `spec`; `pretrained` downloads ImageNet weights (needs internet).

    The spec is attached to the module so that saving and MLflow logging can record it.
    """
    _require_known(spec.architecture)
    _require_image_size(spec)
    kwargs = {"img_size": spec.image_size} if _is_vit(spec.architecture) else {}
    kwargs |= spec.timm_kwargs
    try:
        model = timm.create_model(
            spec.architecture,
            pretrained=pretrained,
            num_classes=spec.num_classes,
            in_chans=spec.in_chans,
            **kwargs,
        )
    except OSError as error:  # huggingface_hub raises OSError subclasses when offline
        raise ModelConfigError(
            f"could not download pretrained weights for {spec.architecture} ({error}); set"
            " pretrained: false, or give a local checkpoint"
        ) from error
    setattr(model, SPEC_ATTRIBUTE, spec)
    return model


def spec_of(model: nn.Module) -> ModelSpec:
    spec = getattr(model, SPEC_ATTRIBUTE, None)
    if spec is None:
        raise ModelConfigError("model was not built by medvit.models.build_model: no spec")
    return spec


def _classifier_rows(state: dict[str, torch.Tensor], model: nn.Module) -> int | None:
    classifier = model.pretrained_cfg.get("classifier")
    name = classifier[0] if isinstance(classifier, tuple | list) else classifier
    weight = state.get(f"{name}.weight")
    return None if weight is None else int(weight.shape[0])


def load_weights(model: nn.Module, checkpoint: str | Path) -> None:
    """Load a saved medvit model (`{"spec", "state_dict"}`) or a bare state dict into `model`.

    The spec of a medvit checkpoint must match the model's architecture and class count; a bare
    state dict must fit exactly. Either mismatch is a `ModelConfigError` naming both sides.
    """
    path = Path(checkpoint)
    if not path.is_file():
        raise ModelConfigError(f"checkpoint {path} does not exist")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    expected = spec_of(model)
    if "spec" in payload:
        saved = ModelSpec.model_validate(payload["spec"])
        if saved.architecture != expected.architecture:
            raise ModelConfigError(
                f"checkpoint {path} is a {saved.architecture}, not a {expected.architecture}"
            )
        if saved.num_classes != expected.num_classes:
            raise ModelConfigError(
                f"checkpoint {path} has {saved.num_classes} classes; the model needs"
                f" {expected.num_classes}"
            )
        payload = payload["state_dict"]
    rows = _classifier_rows(payload, model)
    if rows is not None and rows != expected.num_classes:
        raise ModelConfigError(
            f"checkpoint {path} has {rows} classes; the model needs {expected.num_classes}"
        )
    try:
        model.load_state_dict(payload)
    except RuntimeError as error:
        raise ModelConfigError(
            f"checkpoint {path} does not fit {expected.architecture}: {str(error)[:300]}"
        ) from error


def create_teacher(
    architecture: str,
    num_classes: int,
    image_size: int,
    *,
    pretrained: bool = False,
    checkpoint: str | Path | None = None,
) -> nn.Module:
    """A timm CNN teacher: ImageNet weights, a local checkpoint, or (warned) random init."""
    spec = ModelSpec(architecture=architecture, num_classes=num_classes, image_size=image_size)
    model = build_model(spec, pretrained=pretrained and checkpoint is None)
    if checkpoint is not None:
        load_weights(model, checkpoint)
    elif not pretrained:
        logger.warning(
            "Teacher %s starts from random weights (pretrained: false, no checkpoint): expect a"
            " weaker teacher than the ImageNet-initialised one of the study",
            architecture,
        )
    return model


def create_student(size: StudentSize, num_classes: int, image_size: int) -> nn.Module:
    """A DeiT with a distillation token, returning (class, distillation) logits while training."""
    spec = ModelSpec(
        architecture=student_architecture(size), num_classes=num_classes, image_size=image_size
    )
    model = build_model(spec)
    model.set_distilled_training(True)
    return model


def model_payload(model: nn.Module) -> dict:
    """What a saved model is: its spec and CPU weights (read back by `model_from_payload`)."""
    state = {name: tensor.detach().cpu() for name, tensor in model.state_dict().items()}
    return {"spec": spec_of(model).model_dump(), "state_dict": state}


def model_from_payload(payload: dict) -> nn.Module:
    model = build_model(ModelSpec.model_validate(payload["spec"]))
    model.load_state_dict(payload["state_dict"])
    if hasattr(model, "set_distilled_training"):
        model.set_distilled_training(True)
    return model.eval()
