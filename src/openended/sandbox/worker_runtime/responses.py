"""The response objects the fork server sends for a run, and how a child's answer or
death becomes one."""

import os
import signal

from . import program

CHILD_KINDS = {"exception", "exit", "memory", "bad_return_value", "sandbox_error"}
"""The error kinds a child may report about itself (the rest are the server's to give)."""
SIGNAL_NAMES = {s.value: s.name for s in signal.Signals}


def error(kind, message, traceback=None):
    body = {"kind": kind, "message": message}
    if traceback:
        body["traceback"] = traceback
    return {"error": body}


def checked(message, max_result):
    """A child's answer, validated: a JSON text value within the cap, or an error of a
    kind a child may report. Anything else is the program's `bad_return_value`."""
    if "value" in message:
        value = message["value"]
        if not isinstance(value, str) or len(value) > max_result:
            return error("bad_return_value", "the program's result is malformed")
        return {"value": value}
    parsed = parse_error(message, CHILD_KINDS)
    if parsed is None:
        return error("bad_return_value", "the program's result is malformed")
    kind, text, trace = parsed
    trace = trace[-program.MAX_TRACEBACK :] if trace is not None else None
    return error(kind, text[: program.MAX_MESSAGE], trace)


def parse_error(message, kinds):
    """(kind, message, traceback or None) of a response's well-formed error of one of
    `kinds`; None for anything else."""
    body = message.get("error")
    if not isinstance(body, dict) or body.get("kind") not in kinds:
        return None
    if not isinstance(body.get("message"), str):
        return None
    trace = body.get("traceback")
    return body["kind"], body["message"], trace if isinstance(trace, str) else None


def death(status):
    """The error of a child that died without answering, from its wait status."""
    if os.WIFSIGNALED(status):
        signum = os.WTERMSIG(status)
        if signum == signal.SIGXCPU:
            return error("timeout", "CPU time limit exceeded")
        if signum == signal.SIGXFSZ:
            return error("output_too_large", "wrote a file larger than the file size limit")
        name = SIGNAL_NAMES.get(signum, f"signal {signum}")
        return error("killed", f"the program was killed by {name}")
    code = os.waitstatus_to_exitcode(status)
    return error("exit", f"the program exited with status {code} before returning")
