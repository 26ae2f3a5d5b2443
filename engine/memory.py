"""Give back the memory of weights the CPU plugin has already copied.

On its first inference the CPU plugin repacks every weight into its kernels' layout, in a new
heap copy; the memory-mapped original (openvino_model.bin, the CACHE_DIR blob or the .gguf)
stays resident although nothing reads it again, so the process holds the weights twice
(measured on a Phi-3-mini-shaped model: 2.7 GB mapped + 2.7 GB repacked). After the warm-up
we tell the kernel those read-only file pages can go (madvise MADV_DONTNEED): they cost
nothing to drop and come back from the file if anything touches them again.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

MADV_DONTNEED = 4
WEIGHT_SUFFIXES = (".bin", ".blob", ".gguf")


def release_mapped_weights(folders: list[Path]) -> int:
    """Drop the resident pages of read-only weight files mapped from `folders`; bytes released
    (an estimate: the mapped size). A no-op returning 0 where Linux's madvise is not available."""
    if not sys.platform.startswith("linux"):
        return 0
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        maps = Path("/proc/self/maps").read_text().splitlines()
    except OSError:
        return 0
    roots = [str(Path(f).expanduser().resolve()) for f in folders if f]
    released = 0
    for line in maps:
        fields = line.split(maxsplit=5)
        if len(fields) < 6 or not fields[1].startswith("r-"):  # read-only: no page holds data of ours
            continue
        path = fields[5]
        if not path.endswith(WEIGHT_SUFFIXES) or "tokenizer" in path or not any(path.startswith(r) for r in roots):
            continue
        start, end = (int(x, 16) for x in fields[0].split("-"))
        if libc.madvise(ctypes.c_void_p(start), ctypes.c_size_t(end - start), MADV_DONTNEED) == 0:
            released += end - start
    return released


@contextmanager
def releasing_mapped_weights(folders: list, every_s: float = 0.1):
    """Release mapped weights every `every_s` while the block runs (the repack reads them once,
    so the process never holds both copies in full) and once at the end. Yields a callable
    that returns the bytes released by the final pass."""
    done = threading.Event()
    final = []

    def keep_releasing():
        while not done.wait(every_s):
            release_mapped_weights(folders)

    worker = threading.Thread(target=keep_releasing, name="ovchat-release", daemon=True)
    worker.start()
    try:
        yield lambda: final[0] if final else 0
    finally:
        done.set()
        worker.join()
        final.append(release_mapped_weights(folders))
