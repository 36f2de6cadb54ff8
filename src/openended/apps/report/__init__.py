"""Plots and the HTML report of a run."""

from openended.apps.report.html import write_report

__all__ = ["write_report"]
