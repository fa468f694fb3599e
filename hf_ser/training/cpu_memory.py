"""Give freed CPU memory back to the operating system during training (Linux with glibc).

glibc's malloc serves large blocks with `mmap` and returns them on `free`, but only above a threshold that, by default,
rises to the size of the largest mapped block freed so far. After the first training steps almost every activation
buffer is below it, is carved out of the heap, and stays resident after it is freed; batches of varying shapes (dynamic
padding) then fragment the heap and the process's RSS grows far beyond what is alive at any moment. Fixing the
threshold (`mallopt(M_MMAP_THRESHOLD, ...)`, which also switches the rise off) maps and unmaps every large buffer, so
RSS follows the live memory. The cost is a page fault per page of every new buffer: CPU time. docs/benchmarks.md has
the measured trade-off. GPU memory is unaffected; on other C libraries this does nothing and says so.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

logger = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3  # glibc's malloc.h
DEFAULT_THRESHOLD_BYTES = 128 * 1024  # glibc's own starting value


def release_freed_memory(threshold_bytes: int = DEFAULT_THRESHOLD_BYTES) -> bool:
    """Make glibc map every block of at least `threshold_bytes` on allocation and unmap it on free, for the rest of
    the process. Returns whether the setting took effect (False off glibc, with a warning)."""
    if not 0 < threshold_bytes <= 32 * 2**20:
        raise ValueError(f"threshold_bytes={threshold_bytes}: glibc accepts 1 byte to 32 MiB")
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        libc = None
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is None or not getattr(libc, "gnu_get_libc_version", None):
        logger.warning("cpu_release_freed_memory: not glibc (%s), so freed memory stays with the allocator", name)
        return False
    if mallopt(M_MMAP_THRESHOLD, ctypes.c_int(threshold_bytes)) != 1:
        logger.warning("cpu_release_freed_memory: glibc refused mallopt(M_MMAP_THRESHOLD, %d)", threshold_bytes)
        return False
    logger.info(
        "Freed blocks of %d bytes or more go back to the OS at once (glibc mmap threshold fixed)", threshold_bytes
    )
    return True
