"""Errors shared across layers."""

from __future__ import annotations


class InfrastructureError(RuntimeError):
    """The machinery failed, not the candidate (a sandbox that cannot start, a cluster
    that is lost): the search stops without recording anything against the batch in
    flight, so that the run can be resumed once the cause is fixed."""
