"""Give freed CPU memory back to the operating system during training (Linux with glibc).

glibc's malloc serves large blocks with `mmap` and returns them on `free`, but only above a threshold that, by default,
rises to the size of the largest mapped block freed so far. After the first training steps almost every activation
buffer is below it, is carved out of the heap, and stays resident after it is freed; batches of varying shapes (dynamic
padding) then fragment the heap and the process's RSS grows far beyond what is alive at any moment. Fixing the
threshold (`mallopt(M_MMAP_THRESHOLD, ...)`, which also switches the rise off) maps and unmaps every large buffer, so
RSS follows the live memory. The cost is a page fault per page of every new buffer: CPU time. docs/benchmarks.md has
the measured trade-off. GPU memory is unaffected; on other C libraries this does nothing and says so.

The default, `cpu_mmap_threshold_mib` (16 MiB), fixes the threshold high: only a batch's large activation buffers are
mapped, so their page faults are few, and the heap no longer keeps them. `cpu_trim_freed_memory` (opt-in,
hf_ser.training.callbacks.TrimFreedMemoryCallback): after each optimizer step, `malloc_trim(0)` hands the free pages
of every heap back to the OS, so what one step freed cannot pile up across steps of other batch shapes; pages are
faulted in again once per step, not at every allocation.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
from typing import Optional

logger = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3  # glibc's malloc.h
DEFAULT_THRESHOLD_BYTES = 128 * 1024  # glibc's own starting value


class _MallInfo2(ctypes.Structure):  # glibc >= 2.33, malloc.h
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks")
    ] + [("keepcost", ctypes.c_size_t)]


@functools.lru_cache(maxsize=1)
def _glibc() -> Optional[ctypes.CDLL]:
    """The process's C library if it is glibc, else None."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    if libc is None or not getattr(libc, "gnu_get_libc_version", None) or not hasattr(libc, "mallopt"):
        return None
    return libc


def glibc_malloc() -> bool:
    """Whether this process allocates with glibc's malloc (the levers of this module work only there)."""
    return _glibc() is not None


def freed_bytes_held() -> Optional[int]:
    """Bytes the allocator holds in free chunks, all arenas together (None where glibc's `mallinfo2` is missing)."""
    libc = _glibc()
    mallinfo2 = getattr(libc, "mallinfo2", None)
    if mallinfo2 is None:
        return None
    mallinfo2.restype = _MallInfo2
    return int(mallinfo2().fordblks)


def trim_freed_memory() -> bool:
    """Give the free pages of every heap back to the OS (`malloc_trim(0)`); whether any were released."""
    libc = _glibc()
    return bool(libc.malloc_trim(ctypes.c_size_t(0))) if libc is not None else False


def release_freed_memory(
    threshold_bytes: int = DEFAULT_THRESHOLD_BYTES, setting: str = "cpu_release_freed_memory"
) -> bool:
    """Make glibc map every block of at least `threshold_bytes` on allocation and unmap it on free, for the rest of
    the process. Returns whether the setting took effect (False off glibc, with a warning naming `setting`, the
    recipe key that asked for it)."""
    if not 0 < threshold_bytes <= 32 * 2**20:
        raise ValueError(f"threshold_bytes={threshold_bytes}: glibc accepts 1 byte to 32 MiB")
    libc = _glibc()
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is None:
        logger.warning(
            "%s: not glibc (%s), so freed memory stays with the allocator",
            setting,
            ctypes.util.find_library("c"),
        )
        return False
    if mallopt(M_MMAP_THRESHOLD, ctypes.c_int(threshold_bytes)) != 1:
        logger.warning("%s: glibc refused mallopt(M_MMAP_THRESHOLD, %d)", setting, threshold_bytes)
        return False
    logger.info(
        "Freed blocks of %d bytes or more go back to the OS at once (glibc mmap threshold fixed)", threshold_bytes
    )
    return True
