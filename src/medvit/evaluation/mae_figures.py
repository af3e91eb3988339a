"""The picture an MAE user looks at first: original, what the encoder saw, and the reconstruction.

Drawn for a few fixed validation slices with the validation mask seed, so figures from different
epochs show the same slices under the same masks and differ only by what the model learned. The
reconstruction pastes the visible patches back, as MAE's own demo does; under `norm_pix_loss`
the predicted patches are mapped back with each original patch's mean and variance (which the
model never saw: this only makes the figure readable).
"""

from __future__ import annotations

import numpy as np
import torch
from matplotlib.figure import Figure

from medvit.models.mae import MAETask, MaskedAutoencoderViT


@torch.inference_mode()
def reconstruction_figure(
    model: MaskedAutoencoderViT,
    images: np.ndarray | torch.Tensor,
    subject: str = "",
    mask_seed: int = 0,
) -> Figure:
    """One row per slice (uint8, N x H x W or N x 1 x H x W, as stored), three columns."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    pixels = torch.as_tensor(np.asarray(images)).to(device)
    if pixels.ndim == 3:
        pixels = pixels[:, None]
    task = MAETask(val_mask_seed=mask_seed)
    inputs = task.inputs(model, pixels)
    generator = torch.Generator(device).manual_seed(mask_seed)
    output = model(inputs, generator=generator)
    model.train(was_training)

    patches = model.patchify(inputs.float())
    pred = output.pred.float()
    if model.norm_pix_loss:
        mean, var = patches.mean(dim=-1, keepdim=True), patches.var(dim=-1, keepdim=True)
        pred = pred * (var + 1e-6) ** 0.5 + mean
    visible = (1 - output.mask)[..., None]
    masked = model.unpatchify(torch.where(visible.bool(), patches, torch.nan))
    pasted = model.unpatchify(patches * visible + pred * (1 - visible))
    columns = {"original": inputs, "masked": masked, "reconstruction": pasted}

    rows = len(inputs)
    figure = Figure(figsize=(6.6, 2.2 * rows + 0.4), layout="constrained")
    axes = figure.subplots(rows, 3, squeeze=False)
    ratio = f"{model.mask_ratio:.0%} of patches masked"
    figure.suptitle(f"{subject}\n{ratio}" if subject else ratio)
    for row in range(rows):
        low, high = inputs[row, 0].min().item(), inputs[row, 0].max().item()
        for column, (name, batch) in enumerate(columns.items()):
            ax = axes[row, column]
            ax.imshow(batch[row, 0].cpu().numpy(), cmap="gray", vmin=low, vmax=high)
            ax.set_axis_off()
            if row == 0:
                ax.set_title(name)
    return figure
