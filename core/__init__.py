"""erp.core — the pipeline library: config, tenants, events, lake, ingest.

Nothing in this package prints, exits or reads environment variables outside
``erp.core.config``. Functions return typed results and raise ``ErpError``.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("erp")
except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
    __version__ = "0.0.0+unknown"
