"""`playground serve` and `playground load`: one engine over HTTP, and load against any
OpenAI-compatible endpoint."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import Any

from playground.cli_outputs import check_writable, finish, status


def cmd_serve(args: argparse.Namespace) -> int:
    from playground.core.config import RunConfig
    from playground.core.optimize.device import leave_a_core, wide_pass_threads
    from playground.core.pipeline import build_engine
    from playground.core.serve.app import create_app
    from playground.core.serve.batching import describe
    from playground.core.serve.runner import draining_server

    if not 1 <= args.max_tokens_limit <= 65536:  # before a model is loaded for nothing
        raise ValueError(f"serve: --max-tokens-limit {args.max_tokens_limit}; allowed: 1 to 65536")
    for flag, value, low in (("--max-batch", args.max_batch, 1), ("--prefill-chunk",
                              args.prefill_chunk, 1), ("--batch-wait-ms", args.batch_wait_ms, 0),
                             ("--prefix-cache-mb", args.prefix_cache_mb, 0),
                             ("--drain-timeout", args.drain_timeout, 0)):
        if value < low:
            raise ValueError(f"serve: {flag} {value}; allowed: {low} or more")
    asked = RunConfig.parse(args.config)
    config = leave_a_core(asked)
    if config.draft != "none":  # before the model loads: one line, not a 500 a request
        raise ValueError(f"serve: draft={config.draft} (speculative decoding) decodes one "
                         "sequence its own way and cannot share the server's passes; "
                         "serve without draft=, or measure it with playground bench")
    if config.backend == "llamacpp" and args.batching == "on":
        raise ValueError("serve: backend=llamacpp keeps one llama.cpp context here, so it "
                         "answers one request at a time: add --batching off")
    api_key = _api_key(args)
    engine = build_engine(config, progress=status)
    batching = args.batching == "on"
    loopback = args.host in ("127.0.0.1", "localhost", "::1")
    app = create_app(engine, api_key=api_key, max_queue=args.max_queue,
                     max_tokens_limit=args.max_tokens_limit,
                     trusted_hosts=["127.0.0.1", "localhost", "::1", "[::1]"] if loopback else None,
                     model_name=args.model_name, batching=batching, max_batch=args.max_batch,
                     prefill_chunk=args.prefill_chunk, batch_wait_ms=args.batch_wait_ms,
                     prefix_cache=args.prefix_cache == "on", prefix_cache_mb=args.prefix_cache_mb,
                     wide_threads=wide_pass_threads(asked))
    how = describe(engine, batching, args.max_batch, args.prefill_chunk)
    print(f"serving {engine.info.get('model_name')} ({config.format(only_changed=True) or 'defaults'})"
          f" on http://{args.host}:{args.port}/v1 — {how}", file=sys.stderr)
    # Ctrl+C: new requests get 503 while the running ones finish (drain), then the app's
    # shutdown closes the scheduler; a second Ctrl+C stops at once.
    draining_server(app, args.host, args.port, drain_s=args.drain_timeout).run()
    m = app.state.metrics
    print(f"stopped: {m.requests} requests served, {m.failed} failed, {m.rejected} refused",
          file=sys.stderr)
    return 0


def _api_key(args: argparse.Namespace) -> str | None:
    import os

    if args.api_key_file:
        try:
            lines = Path(args.api_key_file).read_text().splitlines()
        except OSError as exc:
            raise ValueError(f"--api-key-file: cannot read {args.api_key_file} ({exc.strerror})") from None
        if not lines or not lines[0].strip():
            raise ValueError(f"--api-key-file: {args.api_key_file} is empty; put the key on its first line")
        return lines[0].strip()
    return args.api_key or os.environ.get("PLAYGROUND_API_KEY") or None


def cmd_load(args: argparse.Namespace) -> int:
    import os

    from playground.core import bench
    from playground.core.load import LoadSettings, parse_slo, run_load

    if args.requests is None:
        raise ValueError("load: --requests N is required (a load run is always bounded)")
    if args.timeout <= 0:
        raise ValueError(f"load: --timeout {args.timeout}; allowed: seconds above 0")
    if args.plot and Path(args.plot).suffix.lower() != ".svg":
        raise ValueError(f"--plot: '{args.plot}' must end in .svg (drawn without Qt)")
    for name in args.compare_with or []:
        if not Path(name).is_file():
            raise ValueError(f"--compare-with: '{name}' is not a file")
    check_writable({"--json": args.json, "--csv": args.csv, "--plot": args.plot})
    prompts = bench.read_prompts(Path(args.prompts) if args.prompts
                                 else bench.default_prompts_path())
    settings = LoadSettings(
        endpoint=args.endpoint, prompts=prompts, requests=args.requests,
        max_tokens=args.max_tokens, model=args.model,
        api_key=args.api_key or os.environ.get("OPENAI_API_KEY"),
        concurrency=_numbers(args.concurrency, int, "--concurrency"),
        rates=_numbers(args.rate, float, "--rate") if args.rate else None,
        arrivals=args.arrivals, slo=parse_slo(args.goodput), timeout_s=args.timeout,
        unique_prefix=args.unique_prefix)
    steps = run_load(settings, progress=_print_step)
    result = {"schema": 1, "kind": "load", "endpoint": args.endpoint, "model": args.model,
              "label": args.label,
              "hardware": bench.hardware(), "settings": {
                  "requests": args.requests, "max_tokens": args.max_tokens,
                  "prompts": args.prompts or "default", "arrivals": args.arrivals,
                  "goodput": settings.slo},
              "load": {"steps": steps}}
    failed = finish("load", result, [
        ("--json", args.json, lambda p: p.write_text(json.dumps(result, indent=1))),
        ("--csv", args.csv, lambda p: _write_csv(p, steps)),
        ("--plot", args.plot,
         lambda p: _plot(p, args.label or args.endpoint, steps, args.compare_with or [])),
    ], None)  # load runs are not history turns
    return failed or (0 if all(s["errors"] < s["requests"] for s in steps) else 1)


def _plot(path: Path, endpoint: str, steps: list[dict[str, Any]], others: list[str]) -> None:
    """This run, and earlier runs' JSON files beside it (--compare-with)."""
    from playground.core import load_plot

    runs = [(endpoint, steps)]
    for name in others:
        try:
            data = json.loads(Path(name).read_text())
            runs.append((data.get("label") or data["endpoint"], data["load"]["steps"]))
        except (OSError, ValueError, KeyError) as exc:
            raise ValueError(f"--compare-with: '{name}' is not a load result file ({exc})") from None
    load_plot.write(path, runs)


def _numbers(text: str, kind: type, flag: str) -> list[Any]:
    try:
        values = [kind(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{flag}: '{text}' is not a comma-separated list of numbers") from None
    if not values or any(v <= 0 for v in values):
        raise ValueError(f"{flag}: give positive numbers, e.g. 1,2,4,8")
    return values


def _print_step(step: dict[str, Any]) -> None:
    what = f"concurrency {step['concurrency']}" if step["rate"] is None else f"rate {step['rate']}/s"
    t, i = step["ttft_ms"], step["itl_ms"]
    fmt = lambda v: "–" if v is None else f"{v:.0f}"  # noqa: E731
    print(f"{what:<16} {step['requests']} requests, {step['errors']} errors · "
          f"{step['output_tok_s']:.1f} output tok/s · {step['req_s']:.2f} req/s · TTFT p50 "
          f"{fmt(t['p50'])} p99 {fmt(t['p99'])} ms · ITL p50 {fmt(i['p50'])} p99 {fmt(i['p99'])} ms"
          f" · goodput {step['goodput']:.0%}", flush=True)
    cached = step.get("cached_tokens")
    if step.get("prompt_tokens"):
        print(f"{'':<16} prompt tokens {step['prompt_tokens']}, from the server's cache: "
              f"{'not reported' if cached is None else cached}", flush=True)
    for why in step.get("error_samples") or []:
        print(f"{'':<16} failed: {why}", flush=True)


def _write_csv(path: Path, steps: list[dict[str, Any]]) -> None:
    columns = ["concurrency", "rate", "requests", "errors", "req_s", "output_tok_s", "goodput"]
    nested = ["ttft_ms", "itl_ms", "tpot_ms", "e2e_s"]
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns + [f"{k}_{p}" for k in nested for p in ("p50", "p90", "p99")])
        for s in steps:
            writer.writerow([s[c] for c in columns] + [s[k][p] for k in nested
                                                      for p in ("p50", "p90", "p99")])


def add_parsers(sub: Any) -> None:
    serve = sub.add_parser("serve", help="serve one config over the OpenAI API (FastAPI)")
    serve.add_argument("--config", default="", help="spec string (see README)")
    serve.add_argument("--host", default="127.0.0.1", help="bind address (default: loopback only)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--batching", choices=("on", "off"), default="on",
                       help="on: requests share each decode pass (continuous batching); "
                            "off: one request at a time in arrival order")
    serve.add_argument("--max-batch", type=int, default=8,
                       help="most requests in one pass (batching on)")
    serve.add_argument("--prefill-chunk", type=int, default=32,
                       help="most prompt tokens per pass, so a new prompt stalls the "
                            "running requests for one chunk (batching on)")
    serve.add_argument("--prefix-cache", choices=("on", "off"), default="on",
                       help="reuse the keys/values of prompts' shared beginnings across "
                            "requests (batching on)")
    serve.add_argument("--prefix-cache-mb", type=float, default=512,
                       help="the most memory the shared prefixes' keys/values may hold "
                            "(MB; the oldest go first; in /metrics)")
    serve.add_argument("--drain-timeout", type=float, default=120,
                       help="on Ctrl+C / SIGTERM, wait at most this many seconds for the "
                            "requests in flight")
    serve.add_argument("--batch-wait-ms", type=float, default=0.0,
                       help="when idle, wait this long for more requests before the first pass")
    serve.add_argument("--max-queue", type=int, default=64,
                       help="requests waiting beyond this get 429 with Retry-After")
    serve.add_argument("--api-key", help="require this key (Authorization: Bearer KEY); "
                       "$PLAYGROUND_API_KEY or --api-key-file keep it out of the process list")
    serve.add_argument("--api-key-file", help="read the key from this file's first line")
    serve.add_argument("--max-tokens-limit", type=int, default=4096,
                       help="the most tokens a request may ask for (max_tokens)")
    serve.add_argument("--model-name", help="the model id clients use (default: the model's name)")
    serve.set_defaults(func=cmd_serve)

    load = sub.add_parser("load", help="load-test any OpenAI-compatible streaming endpoint")
    load.add_argument("--endpoint", required=True, help="base URL, e.g. http://127.0.0.1:8000/v1")
    load.add_argument("--model", help="model name to send (the server's own when omitted)")
    load.add_argument("--api-key", help="API key (default: $OPENAI_API_KEY)")
    load.add_argument("--concurrency", default="1", help="steps, e.g. 1,2,4,8")
    load.add_argument("--rate", help="arrival-rate steps in requests/s instead, e.g. 0.5,1,2")
    load.add_argument("--arrivals", choices=("poisson", "constant"), default="poisson")
    load.add_argument("--requests", type=int, help="requests per step (required)")
    load.add_argument("--prompts", help="prompt file (.txt one per line, or .jsonl)")
    load.add_argument("--max-tokens", type=int, default=64)
    load.add_argument("--timeout", type=float, default=120.0,
                      help="seconds a request may take before it counts as failed")
    load.add_argument("--unique-prefix", action="store_true",
                      help="begin every request with its own tag, so no prompt shares a "
                           "prefix with another: measures prefill, not a prefix cache")
    load.add_argument("--goodput", help="SLOs, e.g. ttft_ms:500,tpot_ms:100")
    load.add_argument("--json", help="write the result (schema 1, a load section)")
    load.add_argument("--csv", help="write one row per step")
    load.add_argument("--plot", help="write latency against throughput across the steps (.svg)")
    load.add_argument("--compare-with", nargs="*", metavar="JSON",
                      help="earlier load result files to draw beside this run in --plot")
    load.add_argument("--label", help="this run's name in plots (default: the endpoint)")
    load.set_defaults(func=cmd_load)
