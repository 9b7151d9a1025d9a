"""The renderer: report JSON -> static, embeddable HTML bundles (``erp build-reports``).

``render_bundle`` turns one report JSON into its files; ``build_reports`` computes
and writes every selected tenant x report into ``dist/``. Charts are SVG built on
the server (``charts``), pages are Jinja2 templates under ``templates/bundle/``
with autoescape on.
"""

from erp.reports.render.bundle import Options, render_bundle

__all__ = ["Options", "render_bundle"]
