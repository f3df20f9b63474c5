"""Whole-dataset tensors on the training device: splits, normalisation, batching, augmentation.

Following airbench, every split is one float tensor on the device; an epoch is one ``randperm``
gather followed by slicing, and augmentation runs on whole batches. There is no per-sample
Dataset/DataLoader in the training loop.
"""

from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from dropbench.errors import DataError

CROP_PADDING = 4  # pixels of zero padding before the random crop (the standard CIFAR recipe)


@dataclass
class OodImages:
    """Test images of another dataset for out-of-distribution detection (``eval.ood``),
    normalised with the run's training statistics, as the model reads its own inputs."""

    name: str  # the dataset's name (``fashion_mnist``)
    x: Tensor  # N x C x H x W float32 on the run's device
    origin: str  # where the raw data came from, as DataSplits.origin


@dataclass
class DataSplits:
    """Normalised float32 images (N x C x H x W) and int64 labels for train, val and test."""

    train_x: Tensor
    train_y: Tensor
    val_x: Tensor
    val_y: Tensor
    test_x: Tensor
    test_y: Tensor
    classes: list[str]
    augment: bool  # whether training batches get random crop + flip
    origin: str  # where the raw data came from: a directory, "download:<root>" or "cache:<file> (...)"
    mean: tuple[float, ...]  # per-channel mean of the train split, pixels scaled to [0, 1]
    std: tuple[float, ...]  # per-channel std of the train split, same scale
    ood: OodImages | None = None  # another dataset's test images, when eval.ood names one

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        c, h, w = self.train_x.shape[1:]
        return int(c), int(h), int(w)

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def split_indices(n: int, val_size: int, split_seed: int) -> tuple[Tensor, Tensor]:
    """(train, val) indices of a seeded permutation of ``range(n)``.

    The generator is private and on the CPU so the split depends only on ``split_seed``: every run
    of a seed sweep sees the same validation set, on any device.
    """
    if not 0 < val_size < n:
        raise DataError(f"dataset.val_size={val_size} is out of range; it must be between 1 and {n - 1}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(split_seed))
    return perm[val_size:], perm[:val_size]


def channel_stats(x: Tensor) -> tuple[Tensor, Tensor]:
    """Per-channel mean and (population) std of uint8 images, in [0, 1] units, shaped (C,)."""
    # A 256-bin histogram per channel gives exact moments without a float copy of the whole split.
    values = torch.arange(256, dtype=torch.float64) / 255
    means, stds = [], []
    for ch in range(x.shape[1]):
        counts = torch.bincount(x[:, ch].reshape(-1), minlength=256).double()
        mean = (counts * values).sum() / counts.sum()
        var = (counts * (values - mean) ** 2).sum() / counts.sum()
        means.append(mean)
        stds.append(var.sqrt())
    return torch.stack(means).float(), torch.stack(stds).float()


def normalise(x: Tensor, mean: Tensor, std: Tensor, device: torch.device | str) -> Tensor:
    """uint8 N x C x H x W -> float32 on ``device``, standardised per channel: (x / 255 - mean) / std."""
    # Folded into one scale and one shift, applied in place: two passes instead of a temporary per step.
    out = x.to(device).to(torch.float32)  # move the uint8 bytes, then convert on the device (4x less copied)
    scale, shift = (1 / (255 * std)).to(out.device), (-mean / std).to(out.device)
    return out.mul_(scale.view(1, -1, 1, 1)).add_(shift.view(1, -1, 1, 1))


def make_splits(
    raw: dict,
    val_size: int,
    split_seed: int,
    augment: bool,
    device: torch.device | str,
    train_size: int | None = None,
) -> DataSplits:
    """Carve the validation split out of train, normalise with train statistics, move to ``device``.

    ``train_size`` keeps only that many training examples (a seeded random subset, the same in
    every run): small training sets overfit within few epochs, which makes regularization visible.
    """
    train_idx, val_idx = split_indices(raw["train_x"].shape[0], val_size, split_seed)
    if train_size is not None:
        if not 0 < train_size <= len(train_idx):
            raise DataError(
                f"dataset.train_size={train_size} is out of range; it must be between 1 and "
                f"{len(train_idx)} (the training examples left after val_size), or null for all"
            )
        train_idx = train_idx[:train_size]  # split_indices' permutation is seeded: a fixed random subset
    train_x = raw["train_x"][train_idx]
    mean, std = channel_stats(train_x)
    return DataSplits(
        train_x=normalise(train_x, mean, std, device),
        train_y=raw["train_y"][train_idx].to(device),
        val_x=normalise(raw["train_x"][val_idx], mean, std, device),
        val_y=raw["train_y"][val_idx].to(device),
        test_x=normalise(raw["test_x"], mean, std, device),
        test_y=raw["test_y"].to(device),
        classes=list(raw["classes"]),
        augment=augment,
        origin=raw["origin"],
        mean=tuple(mean.tolist()),
        std=tuple(std.tolist()),
    )


def iterate_batches(
    x: Tensor,
    y: Tensor,
    batch_size: int,
    generator: torch.Generator | None = None,
    augment: bool = False,
) -> Iterator[tuple[Tensor, Tensor]]:
    """Yield ``(x, y)`` batches covering every example once; the last partial batch is kept.

    ``generator`` None: in order, no shuffle and no augmentation (evaluation). Otherwise the
    examples are shuffled with ``torch.randperm`` drawn from ``generator`` (which must live on
    ``x.device``) and, if ``augment``, each batch goes through :func:`augment_batch`.
    """
    n = x.shape[0]
    if generator is None:
        for start in range(0, n, batch_size):
            yield x[start : start + batch_size], y[start : start + batch_size]
        return
    # One gather per epoch; the batches below are then cheap views.
    perm = torch.randperm(n, generator=generator, device=x.device)
    x, y = x[perm], y[perm]
    for start in range(0, n, batch_size):
        xb = x[start : start + batch_size]
        yield (augment_batch(xb, generator) if augment else xb), y[start : start + batch_size]


def augment_batch(x: Tensor, generator: torch.Generator) -> Tensor:
    """Random crop with zero padding ``CROP_PADDING`` and horizontal flip (p=0.5), per sample.

    Pads the batch once and gathers every sample's window with one advanced-indexing call, so
    there is no Python loop over samples. All randomness comes from ``generator``.
    """
    n, c, h, w = x.shape
    p, dev = CROP_PADDING, x.device
    padded = F.pad(x, (p, p, p, p))
    dy = torch.randint(0, 2 * p + 1, (n, 1), generator=generator, device=dev)
    dx = torch.randint(0, 2 * p + 1, (n, 1), generator=generator, device=dev)
    flip = torch.rand(n, 1, generator=generator, device=dev) < 0.5
    rows = dy + torch.arange(h, device=dev)  # n x h
    cols = dx + torch.arange(w, device=dev)  # n x w
    cols = torch.where(flip, cols.flip(1), cols)  # reading the window right-to-left is the flip
    samples = torch.arange(n, device=dev).view(n, 1, 1, 1)
    channels = torch.arange(c, device=dev).view(1, c, 1, 1)
    return padded[samples, channels, rows.view(n, 1, h, 1), cols.view(n, 1, 1, w)]
