"""The speed baseline: the same model trained the way the PyTorch examples train it.

pytorch/examples ``mnist/main.py``: a torchvision dataset object whose ``__getitem__`` makes a
PIL image per sample and runs ``transforms.Compose([ToTensor(), Normalize(...)])`` on it, batched
by a ``DataLoader``; for CIFAR-10 the usual ``RandomCrop(32, padding=4)`` and
``RandomHorizontalFlip()`` come first, the augmentation dropbench applies to whole batches.
Loader settings are the example's: on the CPU only ``batch_size`` (so ``num_workers=0``), plus
``shuffle=True`` (the example shuffles only on an accelerator, which no training should copy);
on CUDA ``num_workers=1, persistent_workers=True, pin_memory=True, shuffle=True``.

The model, optimizer, schedule and training examples are dropbench's own (same config, same
train split, same normalisation statistics), so only the data handling differs.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Subset
from torchvision import datasets, transforms
from torchvision.datasets.utils import extract_archive

from dropbench.data import DataSplits
from dropbench.data.tensors import CROP_PADDING, split_indices

LOG_INTERVAL = 10  # the example reads the loss (loss.item()) every 10 batches to print it


class UncheckedCIFAR10(datasets.CIFAR10):
    """torchvision's CIFAR10 without its md5 checks, loading and ``__getitem__`` unchanged.

    The shared copy (../shared/data) is re-packaged without the batches' ``filenames`` key, so
    its md5s differ from torchvision's list although pixels and labels are the official ones;
    the check would refuse it.
    """

    meta = {**datasets.CIFAR10.meta, "md5": None}  # md5 None: torchvision checks existence only

    def _check_integrity(self) -> bool:
        return True


def stage(source: str, root: str, staging: Path) -> None:
    """Lay the raw files out under ``staging`` as torchvision reads them, leaving ``root`` untouched
    (the shared MNIST folder is read-only and holds only the .gz files, which torchvision would
    want to extract next to themselves)."""
    if source == "CIFAR10":
        os.symlink(Path(root, "cifar-10-batches-py").resolve(), staging / "cifar-10-batches-py")
        return
    raw = staging / source / "raw"
    raw.mkdir(parents=True)
    for name, _ in getattr(datasets, source).resources:
        plain = Path(root, source, "raw", name.removesuffix(".gz"))
        if plain.is_file():
            os.symlink(plain.resolve(), raw / plain.name)
        else:
            extract_archive(str(Path(root, source, "raw", name)), str(raw))


def example_transform(data: DataSplits) -> transforms.Compose:
    """The per-sample transform, normalising with dropbench's train-split statistics."""
    steps = [transforms.ToTensor(), transforms.Normalize(data.mean, data.std)]
    if data.augment:
        size = data.shape[1]
        steps = [transforms.RandomCrop(size, padding=CROP_PADDING), transforms.RandomHorizontalFlip(), *steps]
    return transforms.Compose(steps)


def loader_settings(device: torch.device, batch_size: int) -> dict:
    """The example's DataLoader arguments (see the module docstring)."""
    if device.type == "cuda":
        return {"batch_size": batch_size, "num_workers": 1, "persistent_workers": True, "pin_memory": True}
    return {"batch_size": batch_size}


def example_loader(cfg_dataset, data: DataSplits, batch_size: int, device: torch.device) -> DataLoader:
    """A DataLoader over torchvision's dataset, restricted to dropbench's training examples."""
    cls = UncheckedCIFAR10 if cfg_dataset.source == "CIFAR10" else getattr(datasets, cfg_dataset.source)
    with tempfile.TemporaryDirectory(prefix="dropbench-baseline-") as staging:
        stage(cfg_dataset.source, os.path.expanduser(cfg_dataset.root), Path(staging))
        full = cls(staging, train=True, transform=example_transform(data))  # reads every file now
    train_idx, _ = split_indices(len(full), cfg_dataset.val_size, cfg_dataset.split_seed)
    if cfg_dataset.train_size is not None:
        train_idx = train_idx[: cfg_dataset.train_size]  # the same subset make_splits keeps
    return DataLoader(Subset(full, train_idx.tolist()), shuffle=True, **loader_settings(device, batch_size))


def example_epoch(model, optimizer, scheduler, loader: DataLoader, device, max_steps: int | None = None):
    """One epoch as the example's ``train()`` runs it (``max_steps`` cuts it short: a warm-up)."""
    model.train()
    for step, (inputs, targets) in enumerate(loader):
        if max_steps is not None and step >= max_steps:
            break
        inputs, targets = inputs.to(device), targets.to(device)
        optimizer.zero_grad()
        loss = F.cross_entropy(model(inputs), targets)  # the example: log_softmax + nll_loss, the same
        loss.backward()
        optimizer.step()
        scheduler.step()  # dropbench's per-step schedule, so the optimizer work matches
        if step % LOG_INTERVAL == 0:
            loss.item()
