"""Generation throughput and cost: the real coordinator and LLM worker (boto3 Converse by default) against
a loopback server answering every call after a fixed latency. Prints pairs per second against the ideal
(concurrency / latency), then the cost the price table gives for the plan's volume (3 services x 50
pairs), with and without the synthesis pass, against the plan's cost model ($0.27 / $0.74).

    python benchmarks/datagen.py [--latency 0.2] [--pairs 150] [--provider bedrock]

Token counts of the prompts are estimated at 4 characters a token (the loopback model counts words),
plus the system prompt that forced tool use adds to every call (Anthropic documents 340 tokens for a
Claude 3 Haiku call with ``tool_choice`` "tool").
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bcomc_dagster.datagen import coordinator  # noqa: E402
from bcomc_dagster.datagen.llm_worker import LLMWorker, synthesize  # noqa: E402
from bcomc_dagster.evals.suite import load_suite  # noqa: E402
from bcomc_dagster.llm import registry  # noqa: E402
from bcomc_dagster.llm.base import Usage  # noqa: E402
from bcomc_dagster.llm.client import LLMClient, ResponseCache  # noqa: E402
from bcomc_dagster.llm.cost import DEFAULT_PRICES, Meter  # noqa: E402


def _serve(port: int, latency: float) -> None:
    import uvicorn

    from bcomc_dagster_tests.fakes.llm import FakeLLM

    uvicorn.run(
        FakeLLM(latency_s=latency).app(), host="127.0.0.1", port=port, log_level="error", lifespan="off"
    )


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(port: int) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("the loopback server did not start")


TOOL_PROMPT_TOKENS = 340


def tokens(text: str) -> int:
    return max(1, round(len(text) / 4))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--latency", type=float, default=0.2)
    p.add_argument("--pairs", type=int, default=150)
    p.add_argument("--provider", default="bedrock", choices=["bedrock", "anthropic", "openai"])
    p.add_argument("--concurrency", type=int, nargs="*", default=[4, 8, 16, 32])
    args = p.parse_args()
    os.environ.update(
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION="us-east-1",
        ANTHROPIC_API_KEY="bench",
        OPENAI_API_KEY="bench",
    )
    port = _port()
    server = multiprocessing.Process(target=_serve, args=(port, args.latency), daemon=True)
    server.start()
    _wait(port)
    url = f"http://127.0.0.1:{port}" + ("/v1" if args.provider == "openai" else "")
    suite = load_suite("demo")
    services = suite.services[:3]
    per_service = max(1, args.pairs // len(services))
    settings = registry.ProviderSettings(base_url=url, max_retries=2, timeout_s=30)
    haiku = registry.resolve_model(args.provider, "claude-3-5-haiku")

    print(
        f"{args.provider} at {url}, {args.latency * 1000:.0f} ms per call, "
        f"{per_service * len(services)} pairs"
    )
    print(f"{'concurrency':>11} {'pairs/s':>8} {'ideal':>7} {'of ideal':>9} {'wall s':>7}")
    last_pairs = []
    for c in args.concurrency:
        with tempfile.TemporaryDirectory() as cache_dir:  # a cold cache: every call goes to the server
            client = LLMClient(
                registry.create(args.provider, haiku, settings),
                "generator",
                Meter("bench"),
                cache=ResponseCache(Path(cache_dir)),
            )
            t0 = time.monotonic()
            r = coordinator.generate(
                suite, services, per_service, LLMWorker(client), "bench", 1, concurrency=c
            )
            wall = time.monotonic() - t0
        rate, ideal = len(r.pairs) / wall, c / args.latency
        print(f"{c:>11} {rate:>8.1f} {ideal:>7.1f} {rate / ideal:>8.0%} {wall:>7.2f}")
        last_pairs = r.pairs

    # cost of the plan's volume at the price table, from the prompts this project sends
    from bcomc_dagster.datagen.llm_worker import pair_request
    from bcomc_dagster.datagen.presets import prompting

    requests = {s: coordinator.plan_requests(suite, s, per_service, 0, needs_facts=False) for s in services}
    gen_in = gen_out = 0
    for k, pair in enumerate(last_pairs):
        req = pair_request(
            requests[pair.service][k % per_service], prompting("qa-grounded", domain="cloud services")
        )
        gen_in += (
            tokens(req.system + req.messages[0].content + str(req.schema_.json_schema)) + TOOL_PROMPT_TOKENS
        )
        gen_out += tokens(f'{{"question": "{pair.question}", "answer": "{pair.answer}"}}')
    n = len(last_pairs)
    with tempfile.TemporaryDirectory() as cache_dir:
        synth_meter = Meter("bench")
        sclient = LLMClient(
            registry.create(
                args.provider, registry.resolve_model(args.provider, "claude-3-5-sonnet"), settings
            ),
            "synthesizer",
            synth_meter,
            cache=ResponseCache(Path(cache_dir)),
        )
        s = synthesize(sclient, last_pairs, batch_size=10, concurrency=8)
    words_in = synth_meter.cost.roles["synthesizer"].input_tokens  # the loopback model counts words
    syn_in = round(words_in * 1.3) + s.batches * TOOL_PROMPT_TOKENS
    syn_out = round(synth_meter.cost.roles["synthesizer"].output_tokens * 1.3)
    gen = DEFAULT_PRICES["claude-3-5-haiku"].cost(Usage(input_tokens=gen_in, output_tokens=gen_out))
    syn = DEFAULT_PRICES["claude-3-5-sonnet"].cost(Usage(input_tokens=syn_in, output_tokens=syn_out))
    print(
        f"\nper generated pair: ~{gen_in / n:.0f} input + ~{gen_out / n:.0f} output tokens "
        "(Haiku $0.80/$4.00 per 1M)"
    )
    print(
        f"per synthesized pair: ~{syn_in / n:.0f} input + ~{syn_out / n:.0f} output tokens "
        "(Sonnet $6.00/$30.00 per 1M), "
        f"{s.batches} batches"
    )
    print(f"{'':>24} {'this project':>13} {'plan':>7}")
    print(f"{'generation only':>24} {'$' + format(gen, '.3f'):>13} {'$0.27':>7}")
    print(f"{'with synthesis':>24} {'$' + format(gen + syn, '.3f'):>13} {'$0.74':>7}")
    server.terminate()


if __name__ == "__main__":
    main()
