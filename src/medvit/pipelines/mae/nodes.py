"""Thin nodes of the MAE pretraining template: any slice table in, an MAE checkpoint out.

Self-supervision needs no labels, so the template runs on any cohort (chest radiographs, brain
slices). It learns from the patients of `pretrain_splits` (train, and the `unused` excess of a
subsampled train split) and is validated on the val patients; test patients are never seen, not
even unlabelled, so that a model fine-tuned from this encoder is still judged on unseen images.
"""

from __future__ import annotations

import io
import logging
from typing import Annotated, Any, Literal

import mlflow
import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, PositiveInt

from medvit.evaluation.mae_figures import reconstruction_figure
from medvit.evaluation.ptp import SLICE_KEY
from medvit.evaluation.report import png_data_uri, render_html
from medvit.identity import rows_digest, table_digest
from medvit.ingestion.store import SliceStore
from medvit.models.mae import MAETask, MaskedAutoencoderViT
from medvit.pipelines.fitting import fit_tracked
from medvit.splits import slices_in
from medvit.training import TrainConfig
from medvit.training.data import unlabelled_slices

logger = logging.getLogger(__name__)

Fraction = Annotated[float, Field(gt=0, le=1)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MAEModelParams(_Strict):
    """The masked autoencoder: a timm ViT encoder by name and a light decoder."""

    encoder: str = "vit_tiny_patch16_224"
    image_size: PositiveInt = 64
    mask_ratio: Annotated[float, Field(gt=0, lt=1)] = 0.9
    decoder_dim: PositiveInt = 128
    decoder_depth: PositiveInt = 2
    decoder_heads: PositiveInt = 4
    norm_pix_loss: bool = True


class MAEParams(_Strict):
    """`mae` (brain slices) or `chest_mae` (radiographs): one template, one block per cohort."""

    model: MAEModelParams = MAEModelParams()
    crop_scale: tuple[Fraction, Fraction] = (0.5, 1.0)
    flip: bool = True
    pretrain_splits: list[Literal["train", "unused"]] = ["train", "unused"]
    figure_every: NonNegativeInt = 5  # epochs between reconstruction figures in MLflow; 0: none
    # The figures show patients' slices: logged to MLflow only when this says so (the demos do).
    log_patient_images: bool = False
    n_figure_images: PositiveInt = 4
    training: TrainConfig = TrainConfig()


def build_mae(model: MAEModelParams) -> MaskedAutoencoderViT:
    return MaskedAutoencoderViT(
        model.encoder,
        img_size=model.image_size,
        mask_ratio=model.mask_ratio,
        decoder_dim=model.decoder_dim,
        decoder_depth=model.decoder_depth,
        decoder_heads=model.decoder_heads,
        norm_pix_loss=model.norm_pix_loss,
    )


def mae_payload(mae: MaskedAutoencoderViT, model: MAEModelParams) -> dict[str, Any]:
    """What the checkpoint holds: `architecture` and `model` (the whole MAE, which
    `load_mae_encoder` reads the encoder of) and the settings to rebuild it (`mae_from_payload`)."""
    state = {name: tensor.detach().cpu() for name, tensor in mae.state_dict().items()}
    return {"architecture": model.encoder, "settings": model.model_dump(), "model": state}


def mae_from_payload(payload: dict[str, Any]) -> MaskedAutoencoderViT:
    mae = build_mae(MAEModelParams.model_validate(payload["settings"]))
    mae.load_state_dict(payload["model"])
    return mae.eval()


def _cohort(slices: pd.DataFrame, splits: pd.DataFrame, params: MAEParams) -> pd.DataFrame:
    table = slices_in(slices, splits, keep=(*params.pretrain_splits, "val"))
    if not (table["split"] != "val").any():
        raise ValueError(
            f"no slices of patients in {params.pretrain_splits} to pretrain on; the split has"
            f" {table['split'].value_counts().to_dict()}"
        )
    return table


def _figure_pixels(table: pd.DataFrame, store: SliceStore, count: int) -> np.ndarray:
    """`count` fixed slices of validation patients (training ones when there are none), spread
    over the split in slice-key order, so every figure of a run shows the same images."""
    rows = table[table["split"] == "val"]
    rows = (rows if len(rows) else table).sort_values(list(SLICE_KEY))
    picked = np.linspace(0, len(rows) - 1, min(count, len(rows))).round().astype(int)
    return np.asarray(store.images[rows["image_ref"].to_numpy()[picked]])


def pretrain_mae(
    slices: pd.DataFrame,
    slice_store: SliceStore,
    splits: pd.DataFrame,
    params: MAEParams,
    *,
    name: str,
) -> dict[str, Any]:
    """Train the MAE through the one training loop; history as `fit/<name>_mae/*`, and every
    `figure_every` epochs a reconstruction figure as `<name>_mae/reconstruction_epoch_<n>.png`
    (single-process runs: with `training.devices` the weights arrive only when training ends)."""
    table = _cohort(slices, splits, params)
    train_rows = table[table["split"] != "val"]
    val_rows = table[table["split"] == "val"]
    train = unlabelled_slices(slice_store.images, train_rows["image_ref"].to_numpy())
    val = unlabelled_slices(slice_store.images, val_rows["image_ref"].to_numpy())
    torch.manual_seed(params.training.seed)  # the MAE's initial weights
    mae = build_mae(params.model)
    pixels = _figure_pixels(table, slice_store, params.n_figure_images)
    model_name = f"{name}_mae"

    # Several processes train copies of `mae` and hand the weights back only at the end.
    every = params.figure_every if params.training.devices is None else 0
    every = every if params.log_patient_images else 0

    def log_figure(_metrics: dict[str, float], epoch: int) -> None:
        if every and (epoch + 1) % every == 0 and mlflow.active_run() is not None:
            figure = reconstruction_figure(mae, pixels, f"{model_name}, epoch {epoch + 1}")
            mlflow.log_figure(figure, f"{model_name}/reconstruction_epoch_{epoch + 1:04d}.png")

    rows = table[[*SLICE_KEY, "image_ref", "split"]]
    result = fit_tracked(
        model_name,
        mae,
        MAETask(crop_scale=params.crop_scale, flip=params.flip),
        train,
        val if len(val) else None,
        params.training,
        identity={
            "data": table_digest(rows),
            "pixels": rows_digest(slice_store.images, rows["image_ref"].to_numpy()),
            "augmentation": {"crop_scale": params.crop_scale, "flip": params.flip},
            "mae": params.model,
        },
        on_epoch_end=log_figure,
    )
    return mae_payload(result.model.cpu().eval(), params.model)


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def mae_report(
    mae_model: dict[str, Any],
    slices: pd.DataFrame,
    slice_store: SliceStore,
    splits: pd.DataFrame,
    params: MAEParams,
    *,
    name: str,
) -> tuple[str, str, Figure]:
    """The pretraining page: settings and the reconstructions of the fixed validation images
    (the picture an MAE user looks at first), Markdown and HTML, and the figure itself."""
    pixels = _figure_pixels(_cohort(slices, splits, params), slice_store, params.n_figure_images)
    figure = reconstruction_figure(mae_from_payload(mae_model), pixels, f"{name}_mae, final")
    model = params.model
    lines = [
        f"# MAE pretraining: {name}",
        "",
        f"Encoder {model.encoder} at {model.image_size} px, {model.mask_ratio:.0%} of the patches"
        f" masked, decoder {model.decoder_depth} blocks of width {model.decoder_dim};"
        f" {params.training.epochs} epochs on the {' and '.join(params.pretrain_splits)} patients."
        " Training history: MLflow metrics `fit/" + name + "_mae/*`.",
        "",
        "Validation images: original, masked input, reconstruction (visible patches pasted back).",
        "",
    ]
    markdown = "\n".join([*lines, f"![reconstruction]({name}/mae_reconstruction.png)", ""])
    inline = "\n".join([*lines, f"![reconstruction]({png_data_uri(_png(figure))})", ""])
    return markdown, render_html(inline, f"MAE pretraining: {name}"), figure
