"""Worker-thread helpers: OS-visible thread names, so ``top -H`` shows who burns the CPU."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys

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
