"""Find, verify, download, parse and cache the raw image datasets.

torchvision's dataset classes are the single source of truth for download URLs, md5 checksums,
folder layout and file parsing; this module only decides *where* the files come from (the user's
root, a distro package's directory, or a download) and caches the parsed uint8 tensors so that
later runs skip checksums and parsing entirely.
"""

import contextlib
import hashlib
import json
import os
import pickle
import shutil
import sys
import tempfile
from dataclasses import dataclass

import torch

from dropbench.atomic import torch_save_atomic, write_json_atomic
from dropbench.errors import DataError

# torchvision classes whose files this module knows how to lay out (EMNIST/QMNIST use other formats).
SUPPORTED_SOURCES = ("MNIST", "FashionMNIST", "KMNIST", "CIFAR10", "CIFAR100")
#: (C, H, W) of each source's images: known before any file is read, so that a run can refuse
#: an OOD dataset its model cannot read before it loads anything (the loaded shape is checked too).
SOURCE_SHAPES = {
    "MNIST": (1, 28, 28),
    "FashionMNIST": (1, 28, 28),
    "KMNIST": (1, 28, 28),
    "CIFAR10": (3, 32, 32),
    "CIFAR100": (3, 32, 32),
}
# What a truncated or foreign file makes torchvision's readers raise (its IDX reader asserts).
PARSE_ERRORS = (
    OSError,
    RuntimeError,
    ValueError,
    TypeError,
    KeyError,
    EOFError,
    AssertionError,
    pickle.UnpicklingError,
)
VERIFY_HINT = (
    "if this is a trusted re-packaging (e.g. ../shared/data/cifar-10-batches-py) set dataset.verify=false"
)


@dataclass
class Located:
    """A directory holding every file a dataset needs."""

    directory: str  # the directory searched, used for messages and the cache key
    paths: dict[str, str]  # torchvision's file name -> path actually found (maybe without .gz)
    md5s: dict[str, str | None]  # torchvision's file name -> md5 to verify against
    checksum_owner: str  # whose md5s those are, for messages


def dataset_class(source: str) -> type:
    """Return ``torchvision.datasets.<source>``, or raise a DataError listing the supported names."""
    if source not in SUPPORTED_SOURCES:
        raise DataError(f"unknown dataset source {source!r}; valid: {', '.join(SUPPORTED_SOURCES)}")
    import torchvision.datasets  # here, not at the top: see remembered_cache

    return getattr(torchvision.datasets, source)


def is_cifar(cls: type) -> bool:
    from torchvision.datasets import CIFAR10

    return issubclass(cls, CIFAR10)


def expected_files(cls: type) -> dict[str, str]:
    """torchvision's {file name: md5} for every file the dataset needs."""
    if is_cifar(cls):
        pairs = [*cls.train_list, *cls.test_list, (cls.meta["filename"], cls.meta["md5"])]
        return {name: md5 for name, md5 in pairs}
    return {name: md5 for name, md5 in cls.resources}


def layout_dir(cls: type, root: str) -> str:
    """Where torchvision keeps the files under ``root``."""
    if is_cifar(cls):
        return os.path.join(root, cls.base_folder)
    return os.path.join(root, cls.__name__, "raw")


def _find_file(directory: str, name: str) -> str | None:
    # MNIST-family files may sit there already decompressed (as torchvision leaves them after download).
    for candidate in (name, name.removesuffix(".gz")):
        path = os.path.join(directory, candidate)
        if os.path.isfile(path):
            return path
    return None


def _locate(directory: str, md5s: dict[str, str | None], owner: str) -> Located | None:
    paths = {name: _find_file(directory, name) for name in md5s}
    if any(path is None for path in paths.values()):
        return None
    return Located(directory, paths, md5s, owner)


def search_places(cls: type, root: str, system_dirs: dict[str, dict[str, str]]) -> list[str]:
    """Every directory searched, in order: the root's torchvision layout, then the system dirs."""
    return [layout_dir(cls, root), *system_dirs]


def find_local(cls: type, root: str, system_dirs: dict[str, dict[str, str]]) -> Located | None:
    """The first place holding all the files: ``root`` in torchvision's layout, then ``system_dirs``."""
    expected = expected_files(cls)
    candidates = [(layout_dir(cls, root), expected, "torchvision")]
    for directory, listed in system_dirs.items():
        md5s = {name: listed.get(name) for name in expected}
        candidates.append((directory, md5s, f"the checksum list for {directory}"))
    for directory, md5s, owner in candidates:
        found = _locate(directory, md5s, owner)
        if found is not None:
            return found
    return None


def verify_files(name: str, located: Located) -> None:
    """Raise a one-line DataError unless every file matches its md5."""
    for file, path in located.paths.items():
        expected = located.md5s[file]
        if os.path.basename(path) != file or expected is None:
            # An already-decompressed file (or an unlisted one) has no published checksum.
            raise DataError(
                f"dataset {name}: cannot verify {path}: {located.checksum_owner} has no md5 for it; "
                f"{VERIFY_HINT}"
            )
        from torchvision.datasets.utils import calculate_md5

        actual = calculate_md5(path)
        if actual != expected:
            raise DataError(
                f"dataset {name}: {path} does not match the md5 from {located.checksum_owner} "
                f"(expected {expected}, got {actual}); {VERIFY_HINT}"
            )


def files_under(folder: str) -> set[str]:
    """Every file and folder below ``folder``."""
    return {os.path.join(d, f) for d, dirs, names in os.walk(folder) for f in [*names, *dirs]}


def download(name: str, cls: type, root: str, places: list[str], hint: str | None = None) -> None:
    """Download into ``root`` with torchvision's own machinery; failures become one DataError line
    and leave nothing behind (a partial download can be tens of MB of unpacked files)."""
    before = files_under(root)
    try:
        # One construction fetches every file: MNIST downloads all resources, CIFAR the whole tarball.
        cls(root, train=True, download=True)
    except (OSError, RuntimeError) as err:
        for path in sorted(files_under(root) - before, reverse=True):  # files before their folders
            with contextlib.suppress(OSError):
                os.rmdir(path) if os.path.isdir(path) else os.unlink(path)
        reason = " ".join(str(err).split())[:300]  # torchvision's messages span several lines
        why = f"download failed: {reason}"
        raise DataError(not_found_message(name, cls, root, places, why, hint, tried=True)) from None


def not_found_message(
    name: str, cls: type, root: str, places: list[str], why: str, hint: str | None = None, tried: bool = False
) -> str:
    """One line: what is missing, where we looked, and how to provide the files."""
    example = os.path.join(layout_dir(cls, "<root>"), next(iter(expected_files(cls))))
    online = "or run again online" if tried else "or go online with dataset.download=true"
    return (
        f"dataset {name}: no local copy found (looked in {', '.join(places)}); {why}; "
        f"provide the files by setting DROPBENCH_DATA or dataset.root=... to a folder in torchvision's "
        f"layout (e.g. {example}){f', {hint}' if hint else ''}, {online}"
    )


def _permissive(cls: type) -> type:
    """``cls`` without torchvision's md5 checks; we verified (or chose not to) ourselves."""
    meta = {**cls.meta, "md5": None} if is_cifar(cls) else None  # md5 None: check existence only

    class Unverified(cls):
        def _check_integrity(self) -> bool:
            return True

    if meta is not None:
        Unverified.meta = meta
    Unverified.__name__ = cls.__name__  # MNIST derives its folder name from the class name
    return Unverified


def _stage(cls: type, located: Located, staging: str) -> None:
    """Lay the files out under ``staging`` as torchvision expects, decompressing .gz files."""
    from torchvision.datasets.utils import extract_archive

    target = layout_dir(cls, staging)
    os.makedirs(target)
    for path in located.paths.values():
        if path.endswith(".gz"):
            extract_archive(path, target)
        else:
            # Links, not copies: the source may be large and is only read.
            os.symlink(os.path.abspath(path), os.path.join(target, os.path.basename(path)))


def _to_uint8_nchw(data) -> torch.Tensor:
    tensor = torch.as_tensor(data)
    if tensor.dim() == 3:  # MNIST family: N x H x W
        return tensor.unsqueeze(1).contiguous()
    return tensor.permute(0, 3, 1, 2).contiguous()  # CIFAR: N x H x W x C numpy array


def parse(name: str, cls: type, located: Located, cache_dir: str) -> dict:
    """Parse with torchvision's own reader in a private staging dir; the source may be read-only."""
    staging = tempfile.mkdtemp(prefix=".staging-", dir=cache_dir)
    try:
        _stage(cls, located, staging)
        reader = _permissive(cls)
        train, test = reader(staging, train=True), reader(staging, train=False)
    except PARSE_ERRORS as err:
        reason = " ".join(str(err).split())[:300] or type(err).__name__
        raise DataError(f"dataset {name}: cannot parse the files in {located.directory}: {reason}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {
        "train_x": _to_uint8_nchw(train.data),
        "train_y": torch.as_tensor(train.targets, dtype=torch.int64),
        "test_x": _to_uint8_nchw(test.data),
        "test_y": torch.as_tensor(test.targets, dtype=torch.int64),
        "classes": [str(c) for c in train.classes],
    }


def cache_path(cache_dir: str, name: str, located: Located, verify: bool) -> str:
    """The cache file for this dataset read from this directory with this verify setting."""
    # The files' sizes and mtimes are part of the key: changed raw files are parsed again
    stamps = json.dumps(file_stamps(sorted(located.paths.values())))
    key = f"{os.path.realpath(located.directory)}|verify={verify}|{stamps}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    return os.path.join(cache_dir, f"{name}-{digest}.pt")


def save_cache(path: str, raw: dict) -> None:
    """Atomically, so a crash or a parallel run never leaves a half-written cache file."""
    torch_save_atomic(raw, path)


CACHE_KEYS = ("train_x", "train_y", "test_x", "test_y", "classes", "origin")


def read_cache(path: str) -> dict | None:
    """The cached tensors in ``path``, or None (said in one line) when the file is damaged: the
    cache is derived data, so a truncated or empty file is parsed again, never an error."""
    try:
        raw = torch.load(path, weights_only=True)
        if not isinstance(raw, dict) or not set(CACHE_KEYS) <= raw.keys():
            raise ValueError("not a dropbench cache")
        return raw
    except Exception as error:  # unpickling and zip errors share no base class
        reason = " ".join(str(error).split())[:80] or type(error).__name__
        print(f"dropbench: the cache file {path} is unreadable ({reason}); rebuilding it", file=sys.stderr)
        with contextlib.suppress(OSError):
            os.unlink(path)  # so that no later look-up reads it again
        return None


def lookup_path(cache_dir: str, name: str, root: str, system_dirs: dict, verify: bool) -> str:
    """Where a past lookup of these arguments is remembered (see :func:`remembered_cache`)."""
    key = json.dumps([name, os.path.realpath(root), system_dirs, verify], sort_keys=True)
    return os.path.join(cache_dir, f"{name}-lookup-{hashlib.sha256(key.encode()).hexdigest()[:12]}.json")


def file_stamps(paths: list[str]) -> dict[str, list[int]]:
    return {p: [os.stat(p).st_size, os.stat(p).st_mtime_ns] for p in paths}


def remembered_cache(lookup: str) -> dict | None:
    """The cached tensors a past lookup found, if its raw files are unchanged (size and mtime).

    This path never imports torchvision, whose import (it pulls in torch._dynamo) costs
    about 1.5 s: most of the time from ``dropbench run`` to the first training step.
    """
    try:
        with open(lookup) as f:
            entry = json.load(f)
        if file_stamps(list(entry["files"])) != entry["files"]:
            return None
        raw = read_cache(entry["cache"]) if os.path.isfile(entry["cache"]) else None
        if raw is None:
            return None
    except (OSError, ValueError, KeyError, RuntimeError):
        return None  # nothing remembered, files moved or changed: look them up again
    raw["origin"] = f"cache:{entry['cache']} ({raw['origin']})"
    return raw


def remember_cache(lookup: str, cache: str, located: Located) -> None:
    payload = {"cache": cache, "files": file_stamps(sorted(located.paths.values()))}
    write_json_atomic(lookup, payload)


def load_raw(
    name: str,
    source: str,
    root: str,
    system_dirs: dict[str, dict[str, str]],
    verify: bool,
    download_missing: bool,
    cache_dir: str,
    install_hint: str | None = None,
) -> dict:
    """Return ``{train_x, train_y, test_x, test_y, classes, origin}`` as CPU uint8/int64 tensors.

    Looks locally first, downloads if allowed, and caches the parsed result in ``cache_dir``.
    """
    root = os.path.abspath(os.path.expanduser(root))
    system_dirs = {os.path.expanduser(d): dict(files or {}) for d, files in (system_dirs or {}).items()}
    cache_dir = os.path.expanduser(cache_dir)
    lookup = lookup_path(cache_dir, name, root, system_dirs, verify)
    raw = remembered_cache(lookup)
    if raw is not None:
        return raw
    cls = dataset_class(source)
    places = search_places(cls, root, system_dirs)
    located, origin = find_local(cls, root, system_dirs), None
    if located is None:
        if not download_missing:
            raise DataError(not_found_message(name, cls, root, places, "download is off", install_hint))
        download(name, cls, root, places, install_hint)
        located, origin = find_local(cls, root, {}), f"download:{root}"
        if located is None:
            why = "download left no usable files"
            raise DataError(not_found_message(name, cls, root, places, why, install_hint, tried=True))
    origin = origin or located.directory

    try:
        os.makedirs(cache_dir, exist_ok=True)
    except OSError as err:
        raise DataError(
            f"cannot create the cache dir {cache_dir} ({err.strerror}); "
            "set DROPBENCH_CACHE or dataset.cache_dir=... to a writable folder"
        ) from None
    path = cache_path(cache_dir, name, located, verify)
    raw = read_cache(path) if os.path.isfile(path) else None
    if raw is not None:
        raw["origin"] = f"cache:{path} ({raw['origin']})"
    else:
        if verify:
            verify_files(name, located)
        raw = {**parse(name, cls, located, cache_dir), "origin": origin}
        save_cache(path, raw)
    remember_cache(lookup, path, located)
    return raw
