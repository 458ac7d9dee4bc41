"""The ``playground`` command: gui, chat, bench, models (``python -m playground`` too)."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from playground.core.config import ConfigError, RunConfig


def _user_errors() -> tuple[type[BaseException], ...]:
    from playground.core.engine import GenerationError
    from playground.core.models import ModelError
    from playground.core.optimize import OptimizationError

    return (ConfigError, ModelError, OptimizationError, GenerationError, OSError, ValueError)


def _config(spec: str | None) -> RunConfig:
    return RunConfig.parse(spec)


def _status(message: str) -> None:
    print(f"· {message}", file=sys.stderr, flush=True)


class ProgressBar:
    """A one-line text progress bar on stderr with an ETA."""

    def __init__(self, label: str = "") -> None:
        self.label = label
        self.started = time.perf_counter()
        self.tty = sys.stderr.isatty()

    def __call__(self, done: int, total: int, what: str = "") -> None:
        width = 24
        filled = int(width * done / total) if total else width
        elapsed = time.perf_counter() - self.started
        eta = elapsed / done * (total - done) if done else 0.0
        line = (
            f"{self.label} [{'#' * filled}{'.' * (width - filled)}] {done}/{total} "
            f"{what}  {elapsed:5.1f}s elapsed, ETA {eta:5.1f}s"
        )
        end = "\r" if self.tty and done < total else "\n"
        if self.tty or done == total or done % max(1, total // 10) == 0:
            print(line, end=end, file=sys.stderr, flush=True)


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def print_table(results: list[Any]) -> None:
    """A readable table: one row per config, means (p50/p99 where it matters)."""
    header = (
        f"{'config':<44} {'TTFT ms':>9} {'p99':>7} {'decode tok/s':>12} {'prefill tok/s':>13} "
        f"{'ITL p50':>8} {'ITL p99':>8} {'weights MB':>10} {'peak RSS':>9} {'% bound':>8}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        s = r.summary
        name = RunConfig.from_dict(r.config).format(only_changed=True) or "(defaults)"
        print(
            f"{name[:44]:<44} {_fmt(s['ttft_ms']['mean']):>9} {_fmt(s['ttft_ms']['p99']):>7} "
            f"{_fmt(s['decode_tok_s']['mean']):>12} {_fmt(s['prefill_tok_s']['mean'], 0):>13} "
            f"{_fmt(s['itl_ms']['p50']):>8} {_fmt(s['itl_ms']['p99']):>8} "
            f"{_fmt(s['weights_mb']):>10} {_fmt(s['peak_rss_mb'], 0):>9} "
            f"{_fmt(s['pct_of_bound'], 0):>8}"
        )
        notes = r.info.get("notes") or []
        for note in notes:
            print(f"    {note}")
        if s.get("cache_hits"):
            print(f"    response cache hits: {s['cache_hits']} of {len(r.runs)} runs")


# -- subcommands ---------------------------------------------------------------
def cmd_bench(args: argparse.Namespace) -> int:
    from playground.core import bench
    from playground.core.history import History
    from playground.core.pipeline import build_engine

    config = _config(args.config)
    source = Path(args.chat or args.prompts or bench.default_prompts_path())
    conversations = bench.read_prompts(source)
    conversations = [bench.with_system(c, args.system) for c in conversations]
    if args.chat and args.system:
        conversations = [conversations[0]] + [c[1:] for c in conversations[1:]]
    engine = build_engine(config, progress=_status)
    result = bench.run_bench(
        engine,
        conversations,
        warmup=args.warmup,
        repeats=args.repeats,
        chat=bool(args.chat),
        progress=ProgressBar("bench"),
    )
    print_table([result])
    data = bench.result_file([result])
    if args.json:
        Path(args.json).write_text(json.dumps(data, indent=1))
        print(f"wrote {args.json}")
    if args.csv:
        bench.write_csv([result], Path(args.csv))
        print(f"wrote {args.csv}")
    history = History()
    if history.notice:
        _status(history.notice)
    session = uuid.uuid4().hex[:12]
    for run in result.runs:
        history.add("bench", config.format(), metrics=run, hardware=data["hardware"],
                    reply=run["reply"], session=session)
    history.close()
    return 0


def cmd_chat(args: argparse.Namespace) -> int:
    from playground.core.history import History
    from playground.core.pipeline import build_engine

    config = _config(args.config)
    engine = build_engine(config, progress=_status)
    history = History()
    if history.notice:
        _status(history.notice)
    session = uuid.uuid4().hex[:12]
    messages: list[dict[str, str]] = []
    if args.system:
        messages.append({"role": "system", "content": args.system})
    print(f"Chatting with {engine.info.get('model_name')} ({config.format(only_changed=True)}).")
    print("Ctrl-C stops a reply; /new starts over; /quit or Ctrl-D leaves.")
    while True:
        try:
            line = input("\nyou> ").strip()
        except (EOFError, KeyboardInterrupt):
            print()
            break
        if not line:
            continue
        if line in ("/quit", "/exit"):
            break
        if line == "/new":
            messages = messages[:1] if args.system else []
            engine.reset()
            print("(new chat)")
            continue
        messages.append({"role": "user", "content": line})
        stop = threading.Event()
        previous = signal.signal(signal.SIGINT, lambda *_, s=stop: s.set())
        print("bot> ", end="", flush=True)
        try:
            result = engine.chat(
                messages, on_token=lambda p: print(p, end="", flush=True), should_stop=stop.is_set
            )
        except _user_errors() as exc:
            print(f"\nerror: {exc}")
            messages.pop()
            continue
        finally:
            signal.signal(signal.SIGINT, previous)
        messages.append({"role": "assistant", "content": result.reply})
        m = result.metrics
        flag = " [stopped]" if result.cancelled else (" [cache hit]" if m.cache_hit else "")
        print(
            f"\n  TTFT {_fmt(m.ttft_ms)} ms · decode {_fmt(m.decode_tok_s)} tok/s · "
            f"{m.new_tokens} tokens · peak RSS {_fmt(m.peak_rss_mb, 0)} MB{flag}"
        )
        history.add("chat", config.format(), metrics=m.to_dict(), prompt=line,
                    reply=result.reply, session=session)
    history.close()
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from playground.core.models import list_models

    rows = list_models()
    print(f"{'model':<40} {'size MB':>9}  where")
    for row in rows:
        size = _fmt(row.get("size_mb"))
        print(f"{row['model']:<40} {size:>9}  {row['where']}")
        if row.get("converted_mb"):
            print(f"{'  (converted, float32)':<40} {_fmt(row['converted_mb']):>9}")
    return 0


def cmd_gui(args: argparse.Namespace) -> int:
    try:
        from playground.gui.app import run_gui
    except ImportError as exc:
        _status(f"the desktop app is not available ({exc}); starting the terminal chat")
        return cmd_chat(args)
    return run_gui(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="playground", description="LLM Latency Playground: measure what optimizations do."
    )
    sub = parser.add_subparsers(dest="command")
    spec_help = "RunConfig spec, e.g. quant=int8-dynamic,threads=2 (see ARCHITECTURE.md)"

    gui = sub.add_parser("gui", help="open the desktop app (default)")
    gui.add_argument("--config", help=spec_help)
    gui.add_argument("--system", help="system prompt")
    gui.add_argument("--self-test", action="store_true", help="scripted run, then exit")
    gui.add_argument("--screenshot", help="PNG path for --self-test")
    gui.set_defaults(func=cmd_gui)

    chat = sub.add_parser("chat", help="chat in the terminal with live metrics")
    chat.add_argument("--config", help=spec_help)
    chat.add_argument("--system", help="system prompt")
    chat.set_defaults(func=cmd_chat)

    bench = sub.add_parser("bench", help="benchmark one config on a prompt set")
    bench.add_argument("--config", help=spec_help)
    group = bench.add_mutually_exclusive_group()
    group.add_argument("--prompts", help="prompt file: one per line, or .jsonl of messages")
    group.add_argument("--chat", help="file whose lines are the user turns of one conversation")
    bench.add_argument("--system", help="system prompt (default: none)")
    bench.add_argument("--warmup", type=int, default=1, help="untimed runs first (default 1)")
    bench.add_argument("--repeats", type=int, default=3, help="measured runs (default 3)")
    bench.add_argument("--json", help="write the result file here")
    bench.add_argument("--csv", help="write one CSV row per config here")
    bench.set_defaults(func=cmd_bench)

    models = sub.add_parser("models", help="list the default model and cached models")
    models.set_defaults(func=cmd_models)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        args = parser.parse_args(["gui", *(argv or sys.argv[1:])])
    for name in ("warmup", "repeats"):
        value = getattr(args, name, None)
        if value is not None and value < (1 if name == "repeats" else 0):
            parser.error(f"--{name}: {value} is too small (warmup ≥ 0, repeats ≥ 1)")
    try:
        return int(args.func(args) or 0)
    except _user_errors() as exc:
        print(f"playground: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
