"""Data loading on tiny real-format files: layouts, verification, download, cache, splits, batching."""

import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from fakedata import (
    closed_port_url,
    fake_images,
    make_tarball,
    serve_directory,
    split_seeds,
    write_cifar,
    write_mnist_like,
)
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from torchvision.datasets import CIFAR100, MNIST, FashionMNIST

from dropbench.data import DataSplits, augment_batch, iterate_batches, load_splits, sources
from dropbench.errors import DataError

N_TRAIN, N_TEST, VAL = 200, 50, 50


def load(tmp_path: Path, **overrides) -> DataSplits:
    """load_splits with test defaults: MNIST under tmp_path/root, offline, private cache."""
    kwargs = dict(
        name="mnist",
        source="MNIST",
        root=str(tmp_path / "root"),
        system_dirs={},
        verify=False,
        download=False,
        val_size=VAL,
        split_seed=0,
        augment=False,
        cache_dir=str(tmp_path / "cache"),
    )
    return load_splits(**{**kwargs, **overrides})


def denormalise(x: torch.Tensor, splits: DataSplits) -> np.ndarray:
    """Undo the normalisation to get the uint8 pixels back."""
    mean = torch.tensor(splits.mean).view(1, -1, 1, 1)
    std = torch.tensor(splits.std).view(1, -1, 1, 1)
    return (x * std + mean).mul(255).round().to(torch.uint8).numpy()


def error_text(excinfo: pytest.ExceptionInfo) -> str:
    text = str(excinfo.value)
    assert "\n" not in text
    return text


# --- MNIST family from the root layout -----------------------------------------------------------


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_root_layout_shapes_and_normalisation(tmp_path: Path, gz: bool) -> None:
    write_mnist_like(tmp_path / "root" / "MNIST" / "raw", N_TRAIN, N_TEST, gz=gz)
    splits = load(tmp_path)
    assert splits.train_x.shape == (N_TRAIN - VAL, 1, 28, 28)
    assert splits.val_x.shape == (VAL, 1, 28, 28) and splits.test_x.shape == (N_TEST, 1, 28, 28)
    assert splits.train_x.dtype == torch.float32 and splits.train_y.dtype == torch.int64
    assert splits.shape == (1, 28, 28) and splits.num_classes == 10 and splits.classes == MNIST.classes
    assert splits.origin == str(tmp_path / "root" / "MNIST" / "raw")
    mean, std = splits.train_x.mean(dim=(0, 2, 3)), splits.train_x.std(dim=(0, 2, 3), correction=0)
    torch.testing.assert_close(mean, torch.zeros(1), atol=1e-5, rtol=0)
    torch.testing.assert_close(std, torch.ones(1), atol=1e-5, rtol=0)
    images, labels = fake_images(N_TEST, 10, 1, 28, split_seeds(0)["test"])
    np.testing.assert_array_equal(denormalise(splits.test_x, splits), images)
    np.testing.assert_array_equal(splits.test_y.numpy(), labels)


def test_fake_data_is_learnable(tmp_path: Path) -> None:
    # Nearest class centroid must beat chance by far, or end-to-end training tests cannot pass.
    write_mnist_like(tmp_path / "root" / "MNIST" / "raw", N_TRAIN, N_TEST)
    s = load(tmp_path)
    centroids = torch.stack([s.train_x[s.train_y == k].mean(0).flatten() for k in range(10)])
    predicted = torch.cdist(s.test_x.flatten(1), centroids).argmin(1)
    assert (predicted == s.test_y).float().mean() > 0.8


def test_verify_rejects_files_with_other_md5s(tmp_path: Path) -> None:
    write_mnist_like(tmp_path / "root" / "MNIST" / "raw", N_TRAIN, N_TEST)
    with pytest.raises(DataError) as excinfo:
        load(tmp_path, verify=True)
    text = error_text(excinfo)
    assert "dataset mnist" in text and "train-images-idx3-ubyte.gz" in text and "dataset.verify=false" in text


def test_verify_refuses_decompressed_files(tmp_path: Path) -> None:
    write_mnist_like(tmp_path / "root" / "MNIST" / "raw", N_TRAIN, N_TEST, gz=False)
    with pytest.raises(DataError, match="cannot verify .*dataset.verify=false"):
        load(tmp_path, verify=True)


def test_verify_passes_with_matching_md5s(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    md5s = write_mnist_like(tmp_path / "root" / "MNIST" / "raw", N_TRAIN, N_TEST)
    monkeypatch.setattr(MNIST, "resources", list(md5s.items()))
    assert load(tmp_path, verify=True).test_x.shape[0] == N_TEST


def test_system_dir_checked_against_its_own_md5s(tmp_path: Path) -> None:
    system = tmp_path / "usr-share-fashion"
    md5s = write_mnist_like(system, N_TRAIN, N_TEST)
    kwargs = dict(name="fashion_mnist", source="FashionMNIST", verify=True)
    splits = load(tmp_path, system_dirs={str(system): md5s}, **kwargs)
    assert splits.origin == str(system) and splits.classes == FashionMNIST.classes
    wrong = {**md5s, "t10k-labels-idx1-ubyte.gz": "0" * 32}
    with pytest.raises(DataError) as excinfo:
        load(tmp_path, system_dirs={str(system): wrong}, cache_dir=str(tmp_path / "cache2"), **kwargs)
    text = error_text(excinfo)
    assert "fashion_mnist" in text and str(system / "t10k-labels-idx1-ubyte.gz") in text


def test_root_is_searched_before_system_dirs(tmp_path: Path) -> None:
    write_mnist_like(tmp_path / "root" / "MNIST" / "raw", N_TRAIN, N_TEST)
    system = tmp_path / "system"
    write_mnist_like(system, N_TRAIN, N_TEST, seed=5)
    assert load(tmp_path, system_dirs={str(system): {}}).origin == str(tmp_path / "root" / "MNIST" / "raw")


def test_read_only_root_is_not_written(tmp_path: Path) -> None:
    raw = tmp_path / "root" / "MNIST" / "raw"
    write_mnist_like(raw, N_TRAIN, N_TEST)
    before = sorted(os.listdir(tmp_path / "root" / "MNIST"))
    load(tmp_path)
    assert sorted(os.listdir(tmp_path / "root" / "MNIST")) == before and len(os.listdir(raw)) == 4


# --- CIFAR ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("cifar100", [False, True])
def test_cifar_pickle_batches(tmp_path: Path, cifar100: bool) -> None:
    base = "cifar-100-python" if cifar100 else "cifar-10-batches-py"
    write_cifar(tmp_path / "root" / base, N_TRAIN, N_TEST, cifar100=cifar100)
    source, num_classes = ("CIFAR100", 100) if cifar100 else ("CIFAR10", 10)
    splits = load(tmp_path, name=source.lower(), source=source, augment=True)
    assert splits.shape == (3, 32, 32) and splits.num_classes == num_classes and splits.augment
    assert splits.train_x.shape[0] == N_TRAIN - VAL and splits.test_x.shape == (N_TEST, 3, 32, 32)
    assert len(splits.mean) == 3 and splits.train_y.max() < num_classes
    images, labels = fake_images(N_TEST, num_classes, 3, 32, split_seeds(0)["test"])
    np.testing.assert_array_equal(denormalise(splits.test_x, splits), images)
    np.testing.assert_array_equal(splits.test_y.numpy(), labels)  # fine labels for CIFAR-100


# --- the Hydra configs ----------------------------------------------------------------------------

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


@pytest.mark.parametrize("dataset", ["mnist", "fashion_mnist", "cifar10", "cifar100"])
def test_dataset_config_instantiates(tmp_path: Path, dataset: str) -> None:
    root = tmp_path / "root"
    layouts = {"mnist": "MNIST/raw", "fashion_mnist": "FashionMNIST/raw", "cifar10": "cifar-10-batches-py"}
    if dataset in layouts:
        write = write_mnist_like if "mnist" in dataset else write_cifar
        write(root / layouts[dataset], N_TRAIN, N_TEST)
    else:
        write_cifar(root / "cifar-100-python", N_TRAIN, N_TEST, cifar100=True)
    overrides = [f"dataset={dataset}", f"dataset.root={root}", f"dataset.cache_dir={tmp_path / 'cache'}"]
    overrides += ["dataset.verify=false", "dataset.download=false", f"dataset.val_size={VAL}"]
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    splits = instantiate(cfg.dataset, device="cpu", _convert_="all")
    assert isinstance(splits, DataSplits) and splits.train_x.shape[0] == N_TRAIN - VAL
    assert splits.augment == dataset.startswith("cifar")
    assert splits.num_classes == (100 if dataset == "cifar100" else 10)


# --- download ------------------------------------------------------------------------------------


def test_download_mnist_from_mirror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    md5s = write_mnist_like(tmp_path / "server", N_TRAIN, N_TEST)
    monkeypatch.setattr(MNIST, "resources", list(md5s.items()))
    with serve_directory(tmp_path / "server") as url:
        monkeypatch.setattr(MNIST, "mirrors", [closed_port_url(), url])  # first mirror down
        splits = load(tmp_path, verify=True, download=True)
    assert splits.origin == f"download:{tmp_path / 'root'}"
    assert set(md5s) <= set(os.listdir(tmp_path / "root" / "MNIST" / "raw"))
    assert splits.test_x.shape == (N_TEST, 1, 28, 28)


def test_download_cifar100_tarball(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    md5s = write_cifar(tmp_path / "build" / "cifar-100-python", N_TRAIN, N_TEST, cifar100=True)
    (tmp_path / "server").mkdir()
    tgz_md5 = make_tarball(tmp_path / "build" / "cifar-100-python", tmp_path / "server" / CIFAR100.filename)
    monkeypatch.setattr(CIFAR100, "tgz_md5", tgz_md5)
    monkeypatch.setattr(CIFAR100, "train_list", [["train", md5s["train"]]])
    monkeypatch.setattr(CIFAR100, "test_list", [["test", md5s["test"]]])
    monkeypatch.setattr(CIFAR100, "meta", {**CIFAR100.meta, "md5": md5s["meta"]})
    with serve_directory(tmp_path / "server") as url:
        monkeypatch.setattr(CIFAR100, "url", url + CIFAR100.filename)
        splits = load(tmp_path, name="cifar100", source="CIFAR100", verify=True, download=True)
    assert splits.num_classes == 100 and splits.test_x.shape == (N_TEST, 3, 32, 32)
    assert (tmp_path / "root" / "cifar-100-python" / "train").is_file()


def test_offline_download_is_one_line_naming_every_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(MNIST, "mirrors", [closed_port_url()])
    system = str(tmp_path / "nowhere")
    with pytest.raises(DataError) as excinfo:
        load(tmp_path, download=True, system_dirs={system: {}})
    text = error_text(excinfo)
    for part in ("dataset mnist", str(tmp_path / "root" / "MNIST" / "raw"), system, "DROPBENCH_DATA"):
        assert part in text
    assert "download failed" in text


def test_a_failed_download_leaves_no_files_and_suggests_no_download_flag(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    md5s = write_mnist_like(tmp_path / "server", N_TRAIN, N_TEST)
    monkeypatch.setattr(MNIST, "resources", list(md5s.items()))
    for name in list(md5s)[1:]:
        (tmp_path / "server" / name).unlink()  # the mirror has the first file only
    (tmp_path / "root").mkdir()
    with serve_directory(tmp_path / "server") as url:
        monkeypatch.setattr(MNIST, "mirrors", [url])
        with pytest.raises(DataError) as excinfo:
            load(tmp_path, download=True, install_hint="or apt-get install the-package")
    text = error_text(excinfo)
    assert "download failed" in text and "or apt-get install the-package, or run again online" in text
    assert "dataset.download=true" not in text  # it was on
    assert list((tmp_path / "root").rglob("*")) == []  # the first file came and went


def test_missing_without_download_says_how_to_provide(tmp_path: Path) -> None:
    with pytest.raises(DataError) as excinfo:
        load(tmp_path, name="cifar10", source="CIFAR10")
    text = error_text(excinfo)
    assert str(tmp_path / "root" / "cifar-10-batches-py") in text and "dataset.download=true" in text


def test_unknown_source_lists_valid_ones(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="valid: MNIST, FashionMNIST"):
        load(tmp_path, source="ImageNet")


# --- cache and splits ----------------------------------------------------------------------------


def test_second_load_uses_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    md5s = write_mnist_like(tmp_path / "root" / "MNIST" / "raw", N_TRAIN, N_TEST)
    monkeypatch.setattr(MNIST, "resources", list(md5s.items()))
    first = load(tmp_path, verify=True)

    def refuse(*args, **kwargs):
        raise AssertionError("the cached load must not look files up, parse or hash again")

    # not even torchvision's dataset classes: importing torchvision costs ~1.5 s of start-up
    monkeypatch.setattr(sources, "dataset_class", refuse)
    second = load(tmp_path, verify=True)
    assert second.origin.startswith(f"cache:{tmp_path / 'cache'}")
    for field in ("train_x", "train_y", "val_x", "val_y", "test_x", "test_y"):
        assert torch.equal(getattr(first, field), getattr(second, field))
    # the tensors and the remembered lookup; no staging or temp files left
    assert sorted(p.suffix for p in (tmp_path / "cache").iterdir()) == [".json", ".pt"]


def test_changed_raw_files_are_parsed_again_not_read_from_a_stale_cache(tmp_path: Path) -> None:
    raw = tmp_path / "root" / "MNIST" / "raw"
    write_mnist_like(raw, N_TRAIN, N_TEST, seed=0)
    first = load(tmp_path)
    time.sleep(0.01)  # a new mtime even on coarse clocks
    write_mnist_like(raw, N_TRAIN, N_TEST, seed=1)
    second = load(tmp_path)
    assert not second.origin.startswith("cache:")
    assert not torch.equal(first.train_x, second.train_x)


@pytest.mark.parametrize("damage", ["empty", "truncated"])
def test_a_damaged_cache_file_is_rebuilt_with_one_line(tmp_path: Path, capsys, damage: str) -> None:
    write_mnist_like(tmp_path / "root" / "MNIST" / "raw", N_TRAIN, N_TEST)
    first = load(tmp_path)
    [cache] = (tmp_path / "cache").glob("*.pt")
    content = cache.read_bytes()
    cache.write_bytes(b"" if damage == "empty" else content[: len(content) // 2])
    second = load(tmp_path)
    [line] = [x for x in capsys.readouterr().err.splitlines() if "cache" in x]
    assert line.startswith(f"dropbench: the cache file {cache} is unreadable (") and "rebuilding it" in line
    assert torch.equal(first.train_x, second.train_x)
    assert load(tmp_path).origin.startswith("cache:")  # rebuilt: read from the cache again


@pytest.mark.parametrize("val_size", [0, -1, N_TRAIN])
def test_val_size_out_of_range(tmp_path: Path, val_size: int) -> None:
    write_mnist_like(tmp_path / "root" / "MNIST" / "raw", N_TRAIN, N_TEST)
    with pytest.raises(DataError, match=f"val_size={val_size} .*between 1 and {N_TRAIN - 1}"):
        load(tmp_path, val_size=val_size)


def test_split_depends_only_on_split_seed(tmp_path: Path) -> None:
    write_mnist_like(tmp_path / "root" / "MNIST" / "raw", N_TRAIN, N_TEST)
    a, b, c = load(tmp_path), load(tmp_path), load(tmp_path, split_seed=1)
    assert torch.equal(a.val_x, b.val_x) and not torch.equal(a.val_x, c.val_x)
    assert a.val_y.shape[0] + a.train_y.shape[0] == N_TRAIN


# --- batching and augmentation -------------------------------------------------------------------


def test_iterate_batches_covers_each_example_once() -> None:
    x, y = torch.arange(103).float().view(-1, 1, 1, 1), torch.arange(103)
    batches = list(iterate_batches(x, y, 10, torch.Generator().manual_seed(0)))
    assert [len(b[1]) for b in batches] == [10] * 10 + [3]
    seen = torch.cat([b[1] for b in batches])
    assert sorted(seen.tolist()) == list(range(103)) and seen.tolist() != list(range(103))
    assert all(torch.equal(bx.view(-1).long(), by) for bx, by in batches)  # images stay with labels


def test_iterate_batches_order_follows_the_seed() -> None:
    x, y = torch.zeros(50, 1, 2, 2), torch.arange(50)

    def order(seed: int) -> list[int]:
        return torch.cat(
            [b for _, b in iterate_batches(x, y, 8, torch.Generator().manual_seed(seed))]
        ).tolist()

    assert order(1) == order(1) and order(1) != order(2)
    assert torch.cat([b for _, b in iterate_batches(x, y, 8)]).tolist() == list(range(50))  # eval: in order


def test_augmented_batches_keep_labels_aligned() -> None:
    # Constant images with value index+1: any crop keeps that value as its maximum.
    x, y = (torch.arange(40).float() + 1).view(-1, 1, 1, 1).expand(40, 3, 8, 8).contiguous(), torch.arange(40)
    for bx, by in iterate_batches(x, y, 16, torch.Generator().manual_seed(0), augment=True):
        assert bx.shape[1:] == (3, 8, 8) and torch.equal(bx.amax(dim=(1, 2, 3)), by.float() + 1)


def test_augment_batch_crops_and_flips() -> None:
    n, row, col = 512, 16, 5
    x = torch.zeros(n, 3, 32, 32)
    x[:, :, row, col] = 1.0
    out = augment_batch(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    assert torch.equal(out, augment_batch(x, torch.Generator().manual_seed(0)))
    flat = out[:, 0].flatten(1).argmax(1)
    rows, cols = flat // 32, flat % 32
    assert torch.equal(out.sum(dim=(1, 2, 3)), torch.full((n,), 3.0))  # the pixel is never cropped away
    flipped = (cols - (31 - col)).abs() <= 4
    assert 0.4 < flipped.float().mean() < 0.6
    dy, dx = rows - row, torch.where(flipped, (31 - col) - cols, cols - col)
    assert dy.abs().max() <= 4 and dx.abs().max() <= 4
    assert (dy != 0).float().mean() > 0.7 and (dx != 0).float().mean() > 0.7
    assert set(dy.tolist()) == set(range(-4, 5))


def test_augment_pads_with_zeros() -> None:
    out = augment_batch(torch.ones(256, 1, 8, 8), torch.Generator().manual_seed(0))
    assert set(out.unique().tolist()) == {0.0, 1.0}
    assert (out == 0).any(dim=(1, 2, 3)).float().mean() > 0.5  # most windows include padding
