"""The `openended` command line (`main`), one module per command group."""

from openended.apps.cli.main import build_parser, explain, main

__all__ = ["build_parser", "explain", "main"]
