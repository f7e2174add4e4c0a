"""Worker-thread helpers: OS-visible names (``top -H`` shows who burns the CPU), priorities."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import os
import sys
import threading

log = logging.getLogger(__name__)

_PR_SET_NAME = 15


@functools.cache
def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None


def name_native_thread(name: str) -> None:
    """Give the calling thread an OS name (Linux, 15 bytes at most); a no-op elsewhere.

    Threads the thread starts later (CTranslate2's and onnxruntime's compute threads) inherit
    the name, so a whole model's CPU use shows under one name.
    """
    libc = _libc()
    if libc is not None:
        libc.prctl(_PR_SET_NAME, name.encode()[:15], 0, 0, 0)


def lower_thread_priority(nice: int) -> None:
    """Make the calling thread ``nice`` steps nicer than the process (Linux: per thread).

    Threads it starts later inherit the niceness. Best effort, and idempotent: a thread that
    already inherited the niceness stays as it is.
    """
    if nice <= 0 or not hasattr(os, "setpriority"):
        return
    try:
        tid = threading.get_native_id()
        target = min(os.getpriority(os.PRIO_PROCESS, os.getpid()) + nice, 19)
        if os.getpriority(os.PRIO_PROCESS, tid) < target:
            os.setpriority(os.PRIO_PROCESS, tid, target)
    except OSError as exc:  # e.g. a platform without per-thread priorities
        log.warning("thread %s keeps its priority: cannot renice (%s)", tid, exc)


def set_thread_niceness(niceness: int) -> None:
    """Make the calling thread at least ``niceness`` nice (absolute; Linux: per thread)."""
    if not hasattr(os, "setpriority"):
        return
    try:
        tid = threading.get_native_id()
        if os.getpriority(os.PRIO_PROCESS, tid) < niceness:
            os.setpriority(os.PRIO_PROCESS, tid, min(niceness, 19))
    except OSError as exc:
        log.warning("thread keeps its priority: cannot renice to %d (%s)", niceness, exc)
