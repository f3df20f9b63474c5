"""Compile state of the fused kernels: one ``torch.compile`` per kernel, and the fallback.

Kernels are compiled per shape (specialised code measured about 30% faster than
shape-generic code). Should compiling fail (no C++ compiler, an unsupported platform) or a
kernel run out of recompiles (dynamo would then run it eagerly, storing rows x out x in
tensors), :func:`run` returns None and warns once, and callers take the eager path from
then on: :func:`available` is False.

The first compile of a process costs seconds even when inductor's cache holds every kernel:
importing inductor, hashing torch's sources for the cache key, probing the CPU's vector ISA.
:func:`prepare` does that in a background thread, started when a per-example layer is
built (``dropbench run`` builds one while it checks the config, before the data loads).
"""

from __future__ import annotations

import importlib
import threading
import warnings
from collections.abc import Callable

import torch

from dropbench.regularizers.dropconnect.kernels import KERNELS

#: Shapes per kernel before the eager path takes over (each compile: a few s). A serial sweep
#: over model sizes, or a benchmark building many models in one process, needs more than
#: dynamo's default of 8.
RECOMPILE_LIMIT = 64

_compiled: dict[str, Callable] = {}
_failed: list[str] = []  # the error, once compiling has failed
_preparing: list[threading.Thread] = []  # the one warm-up thread, once started

#: What a process's first compile imports beyond ``torch._dynamo`` (torch 2.14; a module a
#: later torch lacks is skipped). About 2 s of the first compile on a 2-core EPYC.
FIRST_COMPILE_IMPORTS = (
    "torch._inductor.compile_fx",
    "torch._inductor.codegen.cpp",
    "torch._dynamo.backends.inductor",
    "torch._dynamo.repro.after_dynamo",
    "torch.export._trace",
    "torch.fx.experimental.validator",
)


def _warm_up() -> None:
    """Take the first compile's one-time costs that touch no tensor state (no RNG: dynamo
    restores torch's global generator after a compile, so a background compile would undo the
    main thread's draws). Anything failing here is left for :func:`run` to report."""
    for name in FIRST_COMPILE_IMPORTS:
        try:
            importlib.import_module(name)
        except Exception:  # a module a later torch moved: the compile imports what it needs
            continue
    try:
        from torch._inductor import codecache, cpu_vec_isa

        codecache.torch_key()  # a hash of torch's sources, part of every cache key
        codecache.CacheBase.get_system()
        cpu_vec_isa.pick_vec_isa()  # builds and loads a probe per ISA
    except Exception:
        pass


def prepare() -> None:
    """Start the warm-up (:func:`_warm_up`) in a daemon thread, once per process.

    ``torch._dynamo`` is imported here first, in the caller's thread: the training loop's
    optimizer imports it anyway, and two threads importing the same modules could see each
    other's half-initialised ones. :func:`run` waits for the thread before compiling."""
    if _preparing or _failed:
        return
    import torch._dynamo  # noqa: F401

    thread = threading.Thread(target=_warm_up, name="dropconnect-warm-up", daemon=True)
    _preparing.append(thread)
    thread.start()


def available() -> bool:
    """False once compiling has failed in this process."""
    return not _failed


def run(name: str, *args, dynamic: bool = False) -> torch.Tensor | None:
    """Kernel ``name`` of :data:`.kernels.KERNELS`, compiled, on ``args``; None if that failed.

    ``dynamic=True`` (element-wise kernels, where specialising gains nothing): one compile
    for all shapes, for instance for an evaluation's last, smaller batch."""
    import torch._dynamo  # slow to import, and only needed here

    if _failed:
        return None
    if _preparing and _preparing[0].is_alive():
        _preparing[0].join()  # never import inductor from two threads at once
    if name not in _compiled:
        _compiled[name] = torch.compile(KERNELS[name], fullgraph=True, dynamic=dynamic)
    try:
        with torch._dynamo.config.patch(fail_on_recompile_limit_hit=True, recompile_limit=RECOMPILE_LIMIT):
            return _compiled[name](*args)
    except Exception as error:  # no C++ compiler, an unsupported platform, too many shapes, ...
        _failed.append(repr(error))
        warnings.warn(
            f"DropConnect: torch.compile failed, using the slower eager path: {error!r:.300}", stacklevel=3
        )
        return None
