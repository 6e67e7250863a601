"""One thread runs the process's model computations; short jobs run between a long job's steps.

Why one thread: torch's CPU kernels use OpenMP (libgomp), and a second thread entering
multi-threaded torch ops drops the whole process into a slow mode: measured on 2 cores, a decode
loop took 2.3x longer once any other thread had run a model op, even after that thread went idle
(libgomp stops spinning its workers once it manages more threads than there are CPUs, and every
small op then pays a futex wake-up). Gradio runs handlers on a pool of threads, so without this
the app would be in that mode after a few requests. Funnelling model work through one thread
keeps one OpenMP team; on a GPU it is also the "one model queue" a shared accelerator needs.

Why two kinds of job: a chat answer is one `generate()` call of many seconds, and a search queued
behind it would wait for all of it. So jobs are *short* (a CLIP forward, a similarity scan: the
default) or *long* (`long=True`: generation, chat preprocessing, model loads). The thread takes
short jobs first, and a long job calls `between_steps()` at its safe points (generation does,
after every token, from a StoppingCriteria), which runs the short jobs queued by then, right
there, on this same thread: a search issued mid-answer starts within one decode step, and the
OpenMP team stays one. A long job without such points of its own (a model load: transformers'
`from_pretrained`, open_clip's `create_model`) runs under `safe_points()`, which makes every torch
call of the job a candidate safe point: a search issued while the VLM loads does not wait for it.

Helper threads (image decoders) do their pixel work in numpy, or in torch ops that run on one
thread with no OpenMP team of their own (torchvision's JPEG decoder), for the same reason. On a
CPU they wait while short jobs run or wait (`wait_idle`), not for long ones: a one-image
classification must not wait for another visitor's whole answer.
"""

from __future__ import annotations

import collections
import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")
THREAD_NAME = "mmdemo-compute"
LINGER = 0.005  # seconds a long job waits at a safe point for the next short job of a chain
DRAIN_BUDGET = 0.05  # seconds of short jobs per safe point at most: a stream of them cannot starve a chat


class _Scheduler:
    """The compute thread and its two queues (short jobs first)."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.short: collections.deque[Callable[[], None]] = collections.deque()
        self.long: collections.deque[Callable[[], None]] = collections.deque()
        self.pending_short = 0  # short jobs queued or running (light ones aside)
        self.pending_long = 0
        self.idle = threading.Event()  # set while no short job runs or waits
        self.idle.set()
        self.thread: threading.Thread | None = None
        self.long_waits_since: float | None = None  # when the first waiting long job began to wait
        self.last_short = 0.0  # when the last short job (light ones aside) ended

    def put(self, job: Callable[[], None], long: bool, counted: bool) -> None:
        with self.cond:
            if long:
                self.pending_long += 1
                self.long.append(job)
            else:
                if counted:
                    self.pending_short += 1
                    self.idle.clear()
                self.short.append(job)
            if self.thread is None:  # started on first use: importing this module starts nothing
                self.thread = threading.Thread(target=self.loop, name=THREAD_NAME, daemon=True)
                self.thread.start()
            self.cond.notify()

    def done(self, long: bool, counted: bool) -> None:
        with self.cond:
            if long:
                self.pending_long -= 1
            elif counted:
                self.pending_short -= 1
                self.last_short = time.monotonic()
                if self.pending_short == 0:
                    self.idle.set()

    def take(self, block: bool) -> Callable[[], None] | None:
        """The next job: short ones first, but (for the thread's own loop, `block`) a long job that
        has waited behind DRAIN_BUDGET of short ones goes next. Non-blocking: short jobs only."""
        with self.cond:
            while block and not self.short and not self.long:
                self.cond.wait()
            if not block:
                return self.short.popleft() if self.short else None
            if not self.long:
                self.long_waits_since = None
            elif self.long_waits_since is None:
                self.long_waits_since = time.monotonic()
            overdue = self.long_waits_since is not None and time.monotonic() - self.long_waits_since > DRAIN_BUDGET
            if self.short and not overdue:
                return self.short.popleft()
            self.long_waits_since = None
            return self.long.popleft()

    def loop(self) -> None:
        while True:
            job = self.take(block=True)
            assert job is not None
            job()

    def drain_short(self) -> int:
        """Run the short jobs waiting; then, while any ran, wait LINGER for follow-ups. How many ran.

        A request's model work is often a chain (encode, then scan; resize, encode, score), each
        job queued once the last returns: waiting a moment for the next one costs the long job
        little and saves the request a whole step per link. After DRAIN_BUDGET the long job goes
        on, and what is still queued runs at its next safe point.
        """
        ran, deadline = 0, time.monotonic() + DRAIN_BUDGET
        while (left := deadline - time.monotonic()) > 0:
            job = self.take(block=False)
            if job is not None:
                job()
                ran += 1
                continue
            with self.cond:  # waiting releases the GIL: the request's own thread runs at once
                if not ran or not self.cond.wait_for(lambda: bool(self.short), timeout=min(LINGER, left)):
                    break
        return ran


_scheduler = _Scheduler()


def _after_fork_in_child() -> None:
    # A forked child (ZeroGPU runs GPU calls in one) has no compute thread, but inherits a
    # scheduler that believes it has one: give the child a fresh one, or its first job waits forever.
    global _scheduler
    _scheduler = _Scheduler()


os.register_at_fork(after_in_child=_after_fork_in_child)


def on_compute_thread() -> bool:
    """True when called from the compute thread itself."""
    return threading.current_thread().name.startswith(THREAD_NAME)


def _queue(fn: Callable[..., T], args: Any, kwargs: Any, *, long: bool, counted: bool) -> Future[T]:
    future: Future[T] = Future()
    scheduler = _scheduler

    def job() -> None:
        try:
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn(*args, **kwargs))
                except BaseException as exc:  # noqa: BLE001 - raised where the caller reads the future
                    future.set_exception(exc)
        finally:
            scheduler.done(long, counted)

    scheduler.put(job, long, counted)
    return future


def submit(fn: Callable[..., T], *args: Any, long: bool = False, **kwargs: Any) -> Future[T]:
    """Queue `fn` on the compute thread: short by default, `long=True` for generation and loads.

    Not from the compute thread (it would wait on itself).
    """
    if on_compute_thread():
        raise RuntimeError("submit() from the compute thread would deadlock; call the function directly")
    return _queue(fn, args, kwargs, long=long, counted=True)


def run(fn: Callable[..., T], *args: Any, long: bool = False, **kwargs: Any) -> T:
    """Run `fn` on the compute thread and return its result (directly when already there)."""
    if on_compute_thread():
        return fn(*args, **kwargs)
    return submit(fn, *args, long=long, **kwargs).result()


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
    return _queue(fn, args, kwargs, long=False, counted=False)


def between_steps() -> int:
    """From a long job's safe point: run the short jobs waiting now; how many ran (0 elsewhere)."""
    if not on_compute_thread():
        return 0
    return _scheduler.drain_short()


def result(future: Future[T], every: float | None = None) -> T:
    """`future.result()`, from a long job waiting on a helper thread: short jobs run meanwhile."""
    every = SAFE_POINT_EVERY if every is None else every
    while on_compute_thread():
        try:
            return future.result(timeout=every)
        except TimeoutError:  # concurrent.futures.TimeoutError is the builtin since Python 3.11
            between_steps()
    return future.result()


SAFE_POINT_EVERY = 0.02  # seconds between the safe points safe_points() makes


@contextlib.contextmanager
def safe_points(every: float = SAFE_POINT_EVERY) -> Iterator[None]:
    """Within a long job: run the short jobs waiting, at most every `every` s, between its torch calls.

    For jobs that have no safe points of their own, such as a model load: a torch function mode
    sees each torch call of this thread, and after one returns, once `every` has passed, runs
    between_steps(). It runs them with no mode active (a mode's handler runs with the modes
    stack popped, so a load's `torch.device("meta")` does not reach a search's tensors) and with
    float32 as default dtype (transformers sets the process's default dtype while it builds a
    model; a search's tensors must not follow it). Elsewhere than on the compute thread, a no-op.
    """
    if not on_compute_thread():
        yield
        return
    import torch
    from torch.overrides import TorchFunctionMode

    class _Yielding(TorchFunctionMode):
        next_at = time.monotonic() + every

        def __torch_function__(self, func, types, args=(), kwargs=None):
            result = func(*args, **(kwargs or {}))
            if time.monotonic() >= self.next_at:
                dtype = torch.get_default_dtype()
                torch.set_default_dtype(torch.float32)
                try:
                    between_steps()
                finally:
                    torch.set_default_dtype(dtype)
                self.next_at = time.monotonic() + every
            return result

    with _Yielding():
        yield


def busy() -> bool:
    """True while a job (other than a light one), short or long, runs or waits on the compute thread."""
    with _scheduler.cond:
        return _scheduler.pending_short + _scheduler.pending_long > 0


def wait_idle(timeout: float | None = None) -> bool:
    """Block until no short job (light ones aside) runs or waits; False on timeout.

    CPU work that would compete with a model for the cores (decoding images for the model on a
    CPU) calls this first, so it runs between model jobs rather than beside them. Long jobs do
    not count: a decoder waiting for another visitor's whole chat answer is the head-of-line
    blocking this module exists to avoid.
    """
    return _scheduler.idle.wait(timeout)


def wait_quiet(gap: float, timeout: float) -> bool:
    """Block until no short job has run or waited for `gap` seconds, or `timeout` passed; True if quiet.

    For background work that should stay out of visitors' way (reading the text of a library): between
    two of its jobs, it waits for a pause in their requests. Under a steady stream of them it still
    goes on every `timeout` seconds, so it is slowed down, never starved.
    """
    deadline = time.monotonic() + timeout
    while True:
        _scheduler.idle.wait(max(deadline - time.monotonic(), 0))
        quiet_at = _scheduler.last_short + gap
        now = time.monotonic()
        if _scheduler.idle.is_set() and now >= quiet_at:
            return True
        if now >= deadline:
            return False
        time.sleep(min(quiet_at - now, deadline - now) if _scheduler.idle.is_set() else 0.001)
