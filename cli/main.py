"""The ``erp`` console entry point.

Kept free of imports on purpose: ``erp ingest``'s parser processes are started
by multiprocessing's fork server, and each one imports the main module again
(``bin/erp`` or ``python -m erp.cli.main``). With the whole Typer app here,
every parser paid ~0.2 s of CPU and ~30 MB for modules it never uses.
"""

import os


def main() -> None:
    # erp does no linear algebra, but importing numpy starts OpenBLAS's thread
    # pool, whose threads spin for ~0.1 s of CPU per process (this one and the
    # ingest's fork server, which inherits the setting). A value the user set is kept.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from erp.cli.app import run

    run()


def __getattr__(name: str) -> object:  # ``from erp.cli.main import app`` keeps working
    if name == "app":
        from erp.cli.app import app

        return app
    raise AttributeError(name)


if __name__ == "__main__":
    main()
