"""Compile state of the fused kernels: one ``torch.compile`` per kernel, and the fallback.

Kernels are compiled per shape (specialised code measured about 30% faster than
shape-generic code). Should compiling fail (no C++ compiler, an unsupported platform) or a
kernel run out of recompiles (dynamo would then run it eagerly, storing rows x out x in
tensors), :func:`run` returns None and warns once, and callers take the eager path from
then on: :func:`available` is False.

A per-example layer starts :mod:`dropbench.warmup` when it is built (``dropbench run`` builds
one while it checks the config, before the data loads): the first compile's one-time costs
are then taken in a background thread while the data loads.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch

from dropbench import warmup
from dropbench.regularizers.dropconnect.kernels import KERNELS

#: Shapes per kernel before the eager path takes over (each compile: a few s). A serial sweep
#: over model sizes, or a benchmark building many models in one process, needs more than
#: dynamo's default of 8.
RECOMPILE_LIMIT = 64

_compiled: dict[str, Callable] = {}
_failed: list[str] = []  # the error, once compiling has failed


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
    warmup.wait()  # never import inductor from two threads at once
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
