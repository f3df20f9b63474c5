"""First-layer weight maps: each hidden unit's incoming weights drawn as a small image.

Dropout papers show these tiles (Srivastava et al. 2014, Fig. 7): without dropout an MLP's
first-layer units look like noise; with it they become local stroke and blob detectors.
The same grid goes into ``dropbench report``'s figure and can be logged to TensorBoard
with ``SummaryWriter.add_image(tag, weight_grid(...))``; :func:`roughness` puts a number on
the difference (the figure's panel titles show its median over all units).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch


def first_layer_weight(
    state_dict: Mapping[str, torch.Tensor], in_shape: tuple[int, ...]
) -> torch.Tensor | None:
    """The model's first weight matrix if it reads the flattened input, shape (units, C*H*W).

    The first tensor of two or more dimensions in ``state_dict`` is the first layer's weight. None
    when it is not a matrix over all ``prod(in_shape)`` input values (a CNN's convolution, an
    LSTM's input weights), even if a later layer happens to have that many inputs.
    """
    for tensor in state_dict.values():
        if isinstance(tensor, torch.Tensor) and tensor.dim() >= 2:
            return tensor if tensor.dim() == 2 and tensor.shape[1] == math.prod(in_shape) else None
    return None


def weight_grid(weight: torch.Tensor, in_shape: tuple[int, int, int], units: int = 100) -> torch.Tensor:
    """A (3, H, W) float image in [0, 1]: the first ``units`` rows of ``weight`` as (C, H, W) tiles.

    Each tile is min-max scaled on its own, so a unit with small weights is as visible as one
    with large weights (what matters is the pattern, not the scale). Tiles fill a near-square grid.
    """
    from torchvision.utils import make_grid  # importing torchvision takes ~1.5 s: only when drawing

    channels, height, width = in_shape
    if weight.dim() != 2 or weight.shape[1] != channels * height * width:
        raise ValueError(
            f"weight of shape {tuple(weight.shape)} does not read inputs of shape {tuple(in_shape)}"
        )
    tiles = weight[:units].detach().float().cpu().reshape(-1, channels, height, width)
    columns = math.ceil(math.sqrt(len(tiles)))
    # scale_each: min-max per tile; make_grid repeats a single channel to RGB
    grid = make_grid(tiles, nrow=columns, padding=1, normalize=True, scale_each=True, pad_value=1.0)
    return grid.clamp(0.0, 1.0)


def roughness(weight: torch.Tensor, in_shape: tuple[int, int, int]) -> torch.Tensor:
    """Per unit (row of ``weight``): how much neighbouring input pixels' weights differ, (units,).

    The mean squared difference between horizontally and vertically adjacent weights, over
    twice the variance of the unit's weights: about 1 for white noise (neighbours independent),
    near 0 for smooth strokes and blobs, up to 2 for a checkerboard. Scale-free, so units with
    small and large weights compare. It puts a number on what the weight maps show.
    """
    channels, height, width = in_shape
    tiles = weight.detach().float().reshape(-1, channels, height, width)
    across = tiles.diff(dim=3).square().mean(dim=(1, 2, 3))
    down = tiles.diff(dim=2).square().mean(dim=(1, 2, 3))
    spread = tiles.flatten(1).var(dim=1).clamp_min(torch.finfo(torch.float32).tiny)
    return (across + down) / 2 / (2 * spread)


def reconstruction_grid(originals: torch.Tensor, reconstructions: torch.Tensor) -> torch.Tensor:
    """A (3, H, W) image in [0, 1]: the originals in the top row, their reconstructions below.

    Both are (N, C, H, W) in pixel units [0, 1] and are shown as they are (no rescaling), so a
    blurry or faint reconstruction looks blurry or faint.
    """
    from torchvision.utils import make_grid

    pairs = torch.cat([originals, reconstructions]).detach().float().cpu().clamp(0.0, 1.0)
    return make_grid(pairs, nrow=len(originals), padding=1, pad_value=1.0)


def spread(weight: torch.Tensor, in_shape: tuple[int, int, int]) -> torch.Tensor:
    """Per unit (row of ``weight``): how far its weights reach from their centre, in pixels, (units,).

    The RMS distance of the unit's squared weights (its weight energy, summed over channels)
    from their centroid: a localized feature (a stroke, a blob) concentrates its energy and
    scores low; white noise over an H x W image scores sqrt((H^2 + W^2 - 2) / 12), 11.4 on 28 x 28.
    """
    channels, height, width = in_shape
    energy = weight.detach().float().reshape(-1, channels, height, width).square().sum(dim=1)
    energy = energy / energy.sum(dim=(1, 2), keepdim=True).clamp_min(torch.finfo(torch.float32).tiny)
    rows = torch.arange(height, dtype=torch.float32).view(1, -1, 1)
    columns = torch.arange(width, dtype=torch.float32).view(1, 1, -1)
    centre_r = (energy * rows).sum(dim=(1, 2), keepdim=True)
    centre_c = (energy * columns).sum(dim=(1, 2), keepdim=True)
    squared = (rows - centre_r).square() + (columns - centre_c).square()
    return (energy * squared).sum(dim=(1, 2)).sqrt()
