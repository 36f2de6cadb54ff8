"""The sandbox worker's entry point: ``main(request_fd, response_fd, settings_json)``.

Protocol on the two inherited descriptors: frames (see `frames`). The first frame sent is
the ready message; then one response per request, carrying the request's nonce.
"""

import json
import sys

from . import frames
from .child import REQUEST_LIMIT
from .fork_server import ForkServer


def main(request_fd, response_fd, settings_json):
    settings = json.loads(settings_json)
    sys.path.extend(p for p in settings.get("site_packages", []) if p not in sys.path)
    server = ForkServer(settings)
    ready = server.prepare()
    frames.write_all(response_fd, frames.encode(ready))
    if not ready["ready"]:
        return
    while True:
        request = frames.receive(request_fd, REQUEST_LIMIT)
        if request is None:
            return
        response = server.run(request)
        response["nonce"] = request.get("nonce")
        frames.write_all(response_fd, frames.encode(response))
        if response.get("retry"):
            return
        server.prepare_next()
