"""One thread runs the process's model computations.

Why: torch's CPU kernels use OpenMP (libgomp), and a second thread entering multi-threaded
torch ops drops the whole process into a slow mode: measured on 2 cores, a decode loop took
2.3x longer once any other thread had run a model op, even after that thread went idle
(libgomp stops spinning its workers once it manages more threads than there are CPUs, and every
small op then pays a futex wake-up). Gradio runs handlers on a pool of threads, so without this
the app would be in that mode after a few requests. Funnelling model work through one thread
keeps one OpenMP team; on a GPU it is also the "one model queue" a shared accelerator needs.

Helper threads (image decoders) do their pixel work in numpy, or in torch ops that run on one
thread with no OpenMP team of their own (torchvision's JPEG decoder), for the same reason.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")
THREAD_NAME = "mmdemo-compute"

_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=THREAD_NAME)
_pending = 0
_lock = threading.Lock()
_idle = threading.Event()  # set while no job runs or waits
_idle.set()


def _after_fork_in_child() -> None:
    # A forked child (ZeroGPU runs GPU calls in one) has no compute thread, but inherits an
    # executor that believes it has: give the child a fresh one, or its first job waits forever.
    global _executor, _pending, _lock, _idle
    _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=THREAD_NAME)
    _pending, _lock, _idle = 0, threading.Lock(), threading.Event()
    _idle.set()


os.register_at_fork(after_in_child=_after_fork_in_child)


def on_compute_thread() -> bool:
    """True when called from the compute thread itself."""
    return threading.current_thread().name.startswith(THREAD_NAME)


def submit(fn: Callable[..., T], *args: Any, **kwargs: Any) -> Future[T]:
    """Queue `fn` on the compute thread. Not from the compute thread (it would wait on itself)."""
    global _pending
    if on_compute_thread():
        raise RuntimeError("submit() from the compute thread would deadlock; call the function directly")

    def job() -> T:
        global _pending
        try:
            return fn(*args, **kwargs)
        finally:
            with _lock:
                _pending -= 1
                if _pending == 0:
                    _idle.set()

    with _lock:
        _pending += 1
        _idle.clear()
    return _executor.submit(job)


def run(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run `fn` on the compute thread and return its result (directly when already there)."""
    if on_compute_thread():
        return fn(*args, **kwargs)
    return submit(fn, *args, **kwargs).result()


def submit_light(fn: Callable[..., T], *args: Any, **kwargs: Any) -> Future[T]:
    """Queue a short single-threaded job (resizing a batch of images) that helpers may run beside.

    Unlike submit(), it leaves wait_idle() open: it uses one core, so decoders can use the
    others meanwhile. From the compute thread itself, runs `fn` now and returns its Future done.
    """
    if on_compute_thread():
        future: Future[T] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as exc:  # noqa: BLE001 - raised where the caller reads it, as from the thread
            future.set_exception(exc)
        return future
    return _executor.submit(fn, *args, **kwargs)


def busy() -> bool:
    """True while a job (other than a light one) runs or waits on the compute thread."""
    with _lock:
        return _pending > 0


def wait_idle(timeout: float | None = None) -> bool:
    """Block until no job (light ones aside) runs or waits on the compute thread; False on timeout.

    CPU work that would compete with a model for the cores (decoding images for the model on a
    CPU) calls this first, so it runs between model jobs rather than beside them.
    """
    return _idle.wait(timeout)
