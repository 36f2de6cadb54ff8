"""Output tokens/s of `openended serve-model` at 1, 4 and 16 concurrent clients, with
dynamic batching on and off, measured side by side in one run.

    python bench/serve.py [--requests-per-client 2] [--tokens 32]

Starts two servers on 127.0.0.1 (one with batching, one without) with the embedded model,
one after the other, and drives each with the official `openai` client.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import subprocess
import sys
import time

import httpx
import openai

PROMPT = (
    "Formulas for y as a function of m, v, u, w, each fitting the data better than the last:\n"
    "y = m*v\ny = m + v + u + w\ny = m*v**2\ny ="
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(batching: bool) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [sys.executable, "-m", "openended.apps.cli", "serve-model", "--port", str(port)]
    if not batching:
        command.append("--no-batching")
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 300
    while time.time() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return process, f"{url}/v1"
        except httpx.HTTPError:
            time.sleep(0.3)
    process.kill()
    raise RuntimeError("server did not start")


async def drive(url: str, clients: int, per_client: int, tokens: int) -> tuple[float, float]:
    client = openai.AsyncOpenAI(base_url=url, api_key="none", timeout=600)

    async def one_client(c: int) -> int:
        generated = 0
        for r in range(per_client):
            response = await client.completions.create(
                model="embedded",
                prompt=PROMPT,
                max_tokens=tokens,
                temperature=1.0,
                seed=1000 * c + r,
            )
            generated += response.usage.completion_tokens if response.usage else 0
        return generated

    start_time = time.perf_counter()
    counts = await asyncio.gather(*(one_client(c) for c in range(clients)))
    seconds = time.perf_counter() - start_time
    await client.close()
    return sum(counts) / seconds, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests-per-client", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    args = parser.parse_args()
    results: dict[bool, dict[int, float]] = {}
    for batching in (True, False):
        process, url = start(batching)
        try:
            asyncio.run(drive(url, 1, 1, 4))  # warm up
            results[batching] = {}
            for clients in args.clients:
                rate, _ = asyncio.run(drive(url, clients, args.requests_per_client, args.tokens))
                results[batching][clients] = rate
        finally:
            process.terminate()
            process.wait(30)
    print(
        f"serve-model, embedded SmolLM2-135M (fp32, CPU), {args.tokens} tokens per request, "
        f"{args.requests_per_client} requests per client"
    )
    print(f"{'clients':>7} {'batching tok/s':>15} {'no batching tok/s':>18} {'ratio':>6}")
    for clients in args.clients:
        on, off = results[True][clients], results[False][clients]
        print(f"{clients:>7} {on:>15.1f} {off:>18.1f} {on / off:>5.1f}x")


if __name__ == "__main__":
    main()
