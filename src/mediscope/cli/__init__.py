"""The ``mediscope`` command line: a thin typer layer over the importable API."""
