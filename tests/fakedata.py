"""Tiny datasets written in the real file formats, and a local HTTP server to "download" them.

The images are learnable: class k has a bright square whose grid position depends on k, on top of
uniform noise, so a small model trained end to end on them beats chance within a few steps.
"""

import contextlib
import functools
import gzip
import hashlib
import http.server
import math
import pickle
import socket
import struct
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np

MNIST_FILES = {  # torchvision's file name -> (split, kind)
    "train-images-idx3-ubyte.gz": ("train", "images"),
    "train-labels-idx1-ubyte.gz": ("train", "labels"),
    "t10k-images-idx3-ubyte.gz": ("test", "images"),
    "t10k-labels-idx1-ubyte.gz": ("test", "labels"),
}


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def fake_images(
    n: int, num_classes: int, channels: int, size: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images (n x channels x size x size) and int64 labels; class k lights grid cell k."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_classes, n)
    images = rng.integers(0, 100, (n, channels, size, size), dtype=np.uint8)
    grid = math.ceil(math.sqrt(num_classes))
    cell = size // grid
    for k in range(num_classes):
        r, c = (k // grid) * cell, (k % grid) * cell
        images[labels == k, :, r : r + max(cell - 1, 1), c : c + max(cell - 1, 1)] = 255
    return images, labels


def split_seeds(seed: int) -> dict[str, int]:
    """The seeds of the train and test parts, so a test can regenerate the expected arrays."""
    return {"train": seed, "test": seed + 1}


def _idx_bytes(array: np.ndarray) -> bytes:
    # IDX header: two zero bytes, type code 0x08 (uint8), number of dims, then big-endian dims.
    header = struct.pack(">HBB", 0, 8, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_mnist_like(
    raw_dir: Path, n_train: int, n_test: int, num_classes: int = 10, seed: int = 0, gz: bool = True
) -> dict[str, str]:
    """Write the four MNIST IDX files (``.gz`` unless ``gz`` is False); return {file name: md5}."""
    raw_dir = Path(raw_dir)
    raw_dir.mkdir(parents=True, exist_ok=True)
    sizes, seeds = {"train": n_train, "test": n_test}, split_seeds(seed)
    parts = {s: fake_images(sizes[s], num_classes, 1, 28, seeds[s]) for s in sizes}
    written = {}
    for name, (split, kind) in MNIST_FILES.items():
        images, labels = parts[split]
        data = _idx_bytes(images[:, 0] if kind == "images" else labels)
        path = raw_dir / (name if gz else name.removesuffix(".gz"))
        path.write_bytes(gzip.compress(data, mtime=0) if gz else data)
        written[path.name] = md5(path)
    return written


def _cifar_batch(images: np.ndarray, labels: np.ndarray, label: str, cifar100: bool) -> dict:
    batch = {
        "batch_label": label,
        "data": images.reshape(len(images), -1),  # N x 3072, channel-major like the originals
        "filenames": [f"img_{i:05d}.png" for i in range(len(images))],
    }
    if cifar100:
        batch["fine_labels"] = labels.tolist()
        batch["coarse_labels"] = (labels // 5).tolist()
    else:
        batch["labels"] = labels.tolist()
    return batch


def _dump(path: Path, obj: dict) -> str:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)  # the originals are Python 2 cPickle files
    return md5(path)


def write_cifar(
    base_dir: Path, n_train: int, n_test: int, cifar100: bool = False, seed: int = 0
) -> dict[str, str]:
    """Write CIFAR-10 (or CIFAR-100) python pickle batches into ``base_dir``; return {file name: md5}."""
    base_dir = Path(base_dir)
    base_dir.mkdir(parents=True, exist_ok=True)
    num_classes, seeds = (100 if cifar100 else 10), split_seeds(seed)
    train = fake_images(n_train, num_classes, 3, 32, seeds["train"])
    test = fake_images(n_test, num_classes, 3, 32, seeds["test"])
    names = [f"class_{k}" for k in range(num_classes)]
    if cifar100:
        files = {"train": _cifar_batch(*train, "training batch 1 of 1", True)}
        files["test"] = _cifar_batch(*test, "testing batch 1 of 1", True)
        files["meta"] = {"fine_label_names": names, "coarse_label_names": [f"super_{k}" for k in range(20)]}
    else:
        chunks = np.array_split(np.arange(n_train), 5)
        files = {
            f"data_batch_{i + 1}": _cifar_batch(
                train[0][idx], train[1][idx], f"training batch {i + 1} of 5", False
            )
            for i, idx in enumerate(chunks)
        }
        files["test_batch"] = _cifar_batch(*test, "testing batch 1 of 1", False)
        files["batches.meta"] = {"label_names": names, "num_cases_per_batch": len(chunks[0]), "num_vis": 3072}
    return {name: _dump(base_dir / name, obj) for name, obj in files.items()}


def make_tarball(src_dir: Path, tar_path: Path) -> str:
    """Pack ``src_dir`` as a top-level folder of a .tar.gz (like cifar-*-python.tar.gz); return its md5."""
    with tarfile.open(tar_path, "w:gz") as tar:
        tar.add(src_dir, arcname=Path(src_dir).name)
    return md5(Path(tar_path))


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep test output clean
        pass


@contextlib.contextmanager
def serve_directory(directory: Path) -> Iterator[str]:
    """Serve ``directory`` on 127.0.0.1 in a thread; yields the base URL ending in ``/``."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def closed_port_url() -> str:
    """A URL on 127.0.0.1 whose port nothing listens on, so connecting fails at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def fake_splits(n_train: int, n_test: int, val_size: int, augment: bool = False):
    """DataSplits of learnable fake 1x28x28 images in 10 classes, on the CPU, for loop tests."""
    import torch

    from dropbench.data.tensors import make_splits

    images, labels = fake_images(n_train, 10, 1, 28, seed=0)
    test_images, test_labels = fake_images(n_test, 10, 1, 28, seed=1)
    raw = {
        "train_x": torch.as_tensor(images),
        "train_y": torch.as_tensor(labels, dtype=torch.int64),
        "test_x": torch.as_tensor(test_images),
        "test_y": torch.as_tensor(test_labels, dtype=torch.int64),
        "classes": [str(k) for k in range(10)],
        "origin": "test",
    }
    return make_splits(raw, val_size=val_size, split_seed=0, augment=augment, device="cpu")
