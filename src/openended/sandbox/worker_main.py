"""The sandbox worker: runs inside the sandbox, evaluates requests one after another.

Standard library only: it is run by path with ``python -I``. Protocol on inherited file
descriptors (given in argv): requests and responses are 4-byte big-endian lengths
followed by JSON. Started as root, it applies its resource limits, then drops to an
unprivileged uid before it runs any untrusted code.
"""

import builtins
import json
import linecache
import os
import resource
import sys
import threading
import traceback

PROGRAM = "<program>"


def read_exact(fd, size):
    chunks = []
    while size:
        chunk = os.read(fd, size)
        if not chunk:
            return None
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def receive(fd):
    head = read_exact(fd, 4)
    if head is None:
        return None
    body = read_exact(fd, int.from_bytes(head, "big"))
    return None if body is None else json.loads(body)


def send(fd, message):
    data = json.dumps(message).encode()
    data = len(data).to_bytes(4, "big") + data
    while data:
        data = data[os.write(fd, data) :]


def setup(settings):
    limits = [
        (resource.RLIMIT_AS, settings["memory_bytes"]),
        (resource.RLIMIT_NPROC, settings["max_processes"]),
        (resource.RLIMIT_FSIZE, settings["max_file_bytes"]),
        (resource.RLIMIT_CORE, 0),
        (resource.RLIMIT_NOFILE, 256),
    ]
    for which, value in limits:
        resource.setrlimit(which, (value, value))
    cpu_total = settings["cpu_lifetime_seconds"]
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_total, cpu_total))
    uid = settings.get("uid")
    if uid is not None and os.getuid() == 0:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)


def program_traceback(exc):
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == PROGRAM]
    lines = traceback.format_list(frames[-20:])
    lines += traceback.format_exception_only(type(exc), exc)
    return "Traceback (most recent call last):\n" + "".join(lines)


def evaluate(request, max_result_bytes):
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
        return {"error": {"kind": "exit", "message": f"sys.exit({exc.code!r})"}}
    except MemoryError:
        return {"error": {"kind": "memory", "message": "out of memory (MemoryError)"}}
    except BaseException as exc:
        message = f"{type(exc).__name__}: {exc}"[:2000]
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


def other_processes(uid, me):
    """Processes of our uid other than this one (forked children left running)."""
    count = 0
    try:
        entries = os.listdir("/proc")
    except OSError:
        return 0
    for entry in entries:
        if entry.isdigit() and int(entry) != me:
            try:
                if os.stat(f"/proc/{entry}").st_uid == uid:
                    count += 1
            except OSError:
                pass
    return count


def main():
    request_fd, response_fd = int(sys.argv[1]), int(sys.argv[2])
    settings = json.loads(sys.argv[3])
    setup(settings)
    me, uid = os.getpid(), os.getuid()
    send(response_fd, {"ready": True, "uid": os.getuid()})
    while True:
        request = receive(request_fd)
        if request is None:
            return
        used = resource.getrusage(resource.RUSAGE_SELF)
        used = used.ru_utime + used.ru_stime
        hard = resource.getrlimit(resource.RLIMIT_CPU)[1]
        soft = min(hard, int(used + request["cpu_seconds"]) + 1)
        resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))
        response = evaluate(request, settings["max_result_bytes"])
        if os.getpid() != me:  # a process the program forked: it must not answer
            os._exit(0)
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        response["threads"] = threading.active_count()
        response["processes"] = other_processes(uid, me) if uid != 0 else 0
        send(response_fd, response)


if __name__ == "__main__":
    main()
