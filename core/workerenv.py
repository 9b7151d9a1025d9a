"""Imported first in each parser process, before Polars.

The ingest pool already runs one parser process per core; letting each one
start a Polars thread pool of its own as well only oversubscribes the cores.
A value the user set in the environment is kept.
"""

import os

os.environ.setdefault("POLARS_MAX_THREADS", "1")
