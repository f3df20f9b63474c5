"""torch.compile's one-time costs of a process, taken in a background thread.

The first compile of a process costs seconds even when inductor's cache holds every kernel:
importing inductor, hashing torch's sources for the cache key, probing the CPU's vector ISA,
precompiling inductor's C++ header (about 2 of a first compile's 2.5 s on a 2-core EPYC).
:func:`start` takes them in a daemon thread as soon as a run knows it will compile (a
per-example DropConnect layer is built, or ``compile`` is on), which is while the config is
checked and before the data loads; :func:`wait` is called before compiling anything. Most of
this is Python and holds the interpreter lock: the thread takes it out of the first epoch,
but saves less wall time (the subprocesses, file reads and hashing run in parallel).

The thread runs no ``torch.compile``: dynamo saves torch's global generator before a compile
and restores it after, so a compile in the background would undo the draws the main thread
made meanwhile (weight init, masks). Nor may two threads import the same modules at once
(each could see the other's half-initialised ones): ``torch._dynamo`` is imported by the
caller of :func:`start`, and everything that compiles waits for the thread first.
"""

from __future__ import annotations

import importlib
import threading

#: What a process's first compile imports beyond ``torch._dynamo`` (torch 2.14; a module a
#: later torch lacks is skipped: the compile then imports what it needs itself).
FIRST_COMPILE_IMPORTS = (
    "torch._inductor.compile_fx",
    "torch._inductor.codegen.cpp",
    "torch._dynamo.backends.inductor",
    "torch._dynamo.repro.after_dynamo",
    "torch.export._trace",
    "torch.fx.experimental.validator",
    "torch.distributed.tensor.experimental",
)

#: A C++ kernel as inductor writes them (built once, then loaded from inductor's cache)
PROBE_KERNEL = """
#include <torch/csrc/inductor/cpp_prefix.h>
extern "C" void kernel(int32_t* out_ptr0) { out_ptr0[0] = 1; }
"""

_thread: list[threading.Thread] = []  # the one warm-up thread, once started


def _warm_up() -> None:
    """Imports, cache-key hashes and the ISA probe; anything failing is left to the compile."""
    for name in FIRST_COMPILE_IMPORTS:
        try:
            importlib.import_module(name)
        except Exception:
            continue
    try:
        import torch
        import torch._dynamo
        from torch._inductor import codecache, cpu_vec_isa
        from torch._inductor.codegen.common import init_backend_registration

        torch._dynamo.list_backends()  # imports every registered backend
        init_backend_registration()  # and inductor's code generators for every device
        codecache.torch_key()  # a hash of torch's sources, part of every cache key
        codecache.CacheBase.get_system()
        cpu_vec_isa.pick_vec_isa()  # builds and loads a probe per ISA
        if not torch.cuda.is_available():  # the CPU's kernels are C++ (a GPU's: Triton)
            # a vectorised kernel's build step: its header precompilation (a g++ and an openssl
            # subprocess, about 0.4 s, which hold no lock) is then done for the whole process
            bindings = codecache.CppPythonBindingsCodeCache
            bindings.load_pybinding(["int32_t*"], PROBE_KERNEL, needs_vec_isa=True)
    except Exception:
        pass


def start() -> None:
    """Start the warm-up thread, once per process."""
    if _thread:
        return
    import torch._dynamo  # noqa: F401  (here, in the caller's thread; see the module's docstring)

    _thread.append(threading.Thread(target=_warm_up, name="compile-warm-up", daemon=True))
    _thread[0].start()


def wait() -> None:
    """Return once the warm-up thread (if any) has finished: call before compiling."""
    if _thread and _thread[0].is_alive():
        _thread[0].join()
