"""erp.cli — the Typer app. One module per command; no logic lives here."""
