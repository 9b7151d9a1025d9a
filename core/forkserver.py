"""The fork server that starts the ingest's parser processes, and starting it early.

Each parser process is forked from a server process that has already imported
the parser (Polars, Arrow, numpy: ~0.3 s of CPU). ``erp ingest`` starts that
server before it imports the same libraries itself, so on a machine with two
or more cores both imports run at once and the parsers start ~0.3 s sooner.
This module imports nothing heavy.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import stat
from typing import Any, Iterable

PRELOAD = ["erp.core.workerenv", "erp.core.parse"]


def context() -> Any:
    """The multiprocessing context of the parser processes."""
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    return ctx


def start_early(inputs: Iterable[str], min_bytes: int, workers: int) -> bool:
    """Start the fork server now (it imports the parser in the background) when
    more than one parser will run and the plain local files among ``inputs`` add
    up to ``min_bytes`` or more (smaller inputs are parsed in-process). Returns
    whether it was started. Folders, globs, URLs and stdin are not looked at."""
    if workers < 2:
        return False
    total = 0
    for p in inputs:
        try:
            st = os.stat(p)
        except (OSError, ValueError):
            continue
        if stat.S_ISREG(st.st_mode):
            total += st.st_size
    if total < min_bytes:
        return False
    from multiprocessing import forkserver

    context()
    forkserver.ensure_running()
    return True
