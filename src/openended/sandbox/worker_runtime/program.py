"""Run one program's entry point and turn the outcome into a response object."""

import builtins
import json
import linecache
import os
import traceback

PROGRAM = "<program>"
MAX_MESSAGE = 2000
MAX_TRACEBACK = 8000


def program_traceback(exc):
    """The traceback of `exc` restricted to the program's own frames and those of files
    in its working folder (a candidate module the program wrote there and imported)."""
    here = os.getcwd() + os.sep
    frames = [
        f
        for f in traceback.extract_tb(exc.__traceback__)
        if f.filename == PROGRAM or f.filename.startswith(here)
    ]
    lines = traceback.format_list(frames[-20:])
    lines += traceback.format_exception_only(type(exc), exc)
    text = "Traceback (most recent call last):\n" + "".join(lines)
    return text if len(text) <= MAX_TRACEBACK else "...\n" + text[-MAX_TRACEBACK:]


def evaluate(request, max_result_bytes):
    """``{"value": json_text}`` or ``{"error": {"kind", "message", "traceback"?}}``."""
    program = request["program"]
    linecache.cache[PROGRAM] = (len(program), None, program.splitlines(True), PROGRAM)
    namespace = {"__name__": "__sandbox__", "__builtins__": builtins}
    try:
        code = compile(program, PROGRAM, "exec")
        exec(code, namespace)
        function = namespace.get(request["entry"])
        if not callable(function):
            return {
                "error": {
                    "kind": "exception",
                    "message": f"the program defines no function {request['entry']!r}",
                }
            }
        value = function(*request["args"], **request.get("kwargs", {}))
    except SystemExit as exc:
        return {"error": {"kind": "exit", "message": f"sys.exit({exc.code!r})"[:MAX_MESSAGE]}}
    except MemoryError:
        return {"error": {"kind": "memory", "message": "out of memory (MemoryError)"}}
    except BaseException as exc:
        message = f"{type(exc).__name__}: {exc}"[:MAX_MESSAGE]
        return {
            "error": {"kind": "exception", "message": message, "traceback": program_traceback(exc)}
        }
    try:
        encoded = json.dumps(value)
    except (TypeError, ValueError, RecursionError, OverflowError) as exc:
        return {
            "error": {
                "kind": "bad_return_value",
                "message": f"return value is not JSON-serialisable: {exc}"[:500],
            }
        }
    except MemoryError:
        return {"error": {"kind": "bad_return_value", "message": "return value too large"}}
    if len(encoded) > max_result_bytes:
        return {
            "error": {
                "kind": "bad_return_value",
                "message": f"return value is {len(encoded)} bytes; the limit is {max_result_bytes}",
            }
        }
    return {"value": encoded}
