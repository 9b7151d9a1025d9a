"""Imported first in each parser process, before Polars.

The ingest pool already runs one parser process per core; letting each one
start a Polars thread pool of its own as well only oversubscribes the cores.
Nor do they need OpenBLAS's threads (numpy starts them at import; they spin
for ~0.1 s of CPU). A value the user set in the environment is kept.
"""

import os

os.environ.setdefault("POLARS_MAX_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
