"""The errors a user may see: every one derives from `OpenendedError`, so the command
line (and any caller) catches one type and reports it as one line, not a traceback."""

from __future__ import annotations


class OpenendedError(Exception):
    """Base of every error openended reports to its user."""


class UserError(OpenendedError):
    """Something the user gave is wrong or missing (a file, a key, a value, a run folder);
    the message names it and says what to do. The command line prints it as one line."""


class InfrastructureError(OpenendedError, RuntimeError):
    """The machinery failed, not the candidate (a sandbox that cannot start, a cluster
    that is lost): the search stops without recording anything against the batch in
    flight, so that the run can be resumed once the cause is fixed."""
