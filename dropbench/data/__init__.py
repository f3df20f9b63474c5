"""Image datasets as whole tensors on the training device.

``load_splits`` is the Hydra ``_target_`` of every ``configs/dataset/*.yaml``: it finds (or
downloads) the raw files through torchvision, caches the parsed tensors, carves a seeded
validation split and returns normalised float tensors on the device.
"""

import torch

from dropbench.data.sources import SOURCE_SHAPES, SUPPORTED_SOURCES, load_raw
from dropbench.data.tensors import (
    DataSplits,
    OodImages,
    augment_batch,
    iterate_batches,
    make_splits,
    normalise,
)

__all__ = [
    "SOURCE_SHAPES",
    "SUPPORTED_SOURCES",
    "DataSplits",
    "OodImages",
    "augment_batch",
    "iterate_batches",
    "load_ood_images",
    "load_splits",
]


def load_splits(
    name: str,
    source: str,
    root: str,
    system_dirs: dict[str, dict[str, str]],
    verify: bool,
    download: bool,
    val_size: int,
    split_seed: int,
    augment: bool,
    cache_dir: str,
    device: torch.device | str = "cpu",
    train_size: int | None = None,
    install_hint: str | None = None,
) -> DataSplits:
    """Load dataset ``name`` as train/val/test tensors on ``device``.

    Args:
        name: our dataset name (``mnist``, ``cifar10``, ...), used in messages and cache file names.
        source: the torchvision.datasets class (``MNIST``, ``FashionMNIST``, ``CIFAR10``, ``CIFAR100``)
            that supplies URLs, md5s, folder layout and parsing.
        root: data root in torchvision's layout (``root/MNIST/raw/``, ``root/cifar-10-batches-py/``).
        system_dirs: further directories searched after ``root``, as ``{dir: {file name: md5}}``;
            files found there are verified against these md5s instead of torchvision's.
        verify: check md5s of local files (a mismatch is a DataError).
        download: download into ``root`` with torchvision when no local copy is found.
        val_size: training examples held out as the validation split (0 < val_size < n_train).
        split_seed: seed of the validation split, independent of the run seed.
        augment: whether training batches get random crop + horizontal flip.
        cache_dir: where parsed tensors are cached (``~`` is expanded).
        device: where the returned tensors live.
        train_size: keep only this many training examples (a seeded subset); None keeps all.
        install_hint: how else to get the files (a system package), for the not-found message.

    Raises:
        DataError: unknown source, files missing or failing verification, download failure,
            unparsable files, or ``val_size`` / ``train_size`` out of range; always a one-line message.
    """
    raw = load_raw(name, source, root, system_dirs, verify, download, cache_dir, install_hint)
    return make_splits(raw, val_size, split_seed, augment, device, train_size)


def load_ood_images(
    name: str,
    source: str,
    root: str,
    system_dirs: dict[str, dict[str, str]],
    verify: bool,
    download: bool,
    cache_dir: str,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    device: torch.device | str = "cpu",
    install_hint: str | None = None,
) -> OodImages:
    """The test images of dataset ``name`` for OOD detection, normalised with another dataset's
    training statistics ``mean`` and ``std`` (the run's: what its model was trained on). The
    files are found, verified and cached as by :func:`load_splits` (same errors)."""
    raw = load_raw(name, source, root, system_dirs, verify, download, cache_dir, install_hint)
    x = normalise(raw["test_x"], torch.tensor(mean), torch.tensor(std), device)
    return OodImages(name, x, raw["origin"])
