"""The ``playground`` command: gui, chat, bench, models (``python -m playground`` too)."""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from playground.cli_outputs import check_writable, finish
from playground.cli_outputs import status as _status
from playground.core.config import ConfigError, RunConfig
from playground.core.jobs import Cancelled, CancelToken


def _user_errors() -> tuple[type[BaseException], ...]:
    from playground.core.engine import GenerationError
    from playground.core.models import ModelError
    from playground.core.optimize import OptimizationError

    return (ConfigError, ModelError, OptimizationError, GenerationError, OSError, ValueError)


def _positive(text: str) -> int:
    """argparse type: a whole number of at least 1 (0 must not quietly mean a default)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is too small; allowed: 1 or more")
    return value


def _config(spec: str | None) -> RunConfig:
    return RunConfig.parse(spec)


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
        if r.info.get("decode_step"):  # which decode path ran, and why not a faster one
            print(f"    decode: {r.info['decode_step']}")
        if s.get("cache_hits"):
            print(f"    response cache hits: {s['cache_hits']} of {len(r.runs)} runs")


# -- subcommands ---------------------------------------------------------------
def cmd_bench(args: argparse.Namespace) -> int:
    from playground.core import bench
    from playground.core.history import row as history_row
    from playground.core.pipeline import build_engine

    config = _config(args.config)
    check_writable({"--json": args.json, "--csv": args.csv})
    source = Path(args.chat or args.prompts or bench.default_prompts_path())
    conversations = bench.read_prompts(source)
    conversations = [bench.with_system(c, args.system) for c in conversations]
    if args.chat and args.system:
        conversations = [conversations[0]] + [c[1:] for c in conversations[1:]]
    engine = build_engine(config, progress=_status)
    if args.ignore_eos:  # every run decodes max_new_tokens, as llama-bench's tg does
        engine.eos_ids = set()
        engine.info["ignore_eos"] = True
    with ctrl_c_stops() as stop:
        try:
            result = bench.run_bench(engine, conversations, warmup=args.warmup,
                                     repeats=args.repeats, chat=bool(args.chat),
                                     progress=ProgressBar("bench"), should_stop=stop)
        except RuntimeError:
            if stop.cancelled:
                print("\nstopped before any measured run", file=sys.stderr)
                return 130
            raise
    if stop.cancelled:
        _status("stopped (Ctrl+C): the runs measured so far are kept")
    print_table([result])
    data = bench.result_file([result])
    session = uuid.uuid4().hex[:12]
    rows = [history_row("bench", config.format(), metrics=run, hardware=data["hardware"],
                        reply=run["reply"], session=session, complete=not stop.cancelled)
            for run in result.runs]
    return finish("bench", data, [
        ("--json", args.json, lambda p: p.write_text(json.dumps(data, indent=1))),
        ("--csv", args.csv, lambda p: bench.write_csv([result], p)),
    ], rows)


def print_compare_table(rows: list[dict[str, Any]]) -> None:
    """Each metric with its ratio to the baseline (the first row, ×1.00)."""
    from playground.core.compare import noisy_note

    def x(value: float | None) -> str:
        return "" if value is None else f"×{value:.2f}"

    def pct(value: float | None) -> str:
        return "-" if value is None else f"{100 * value:.0f}%"

    def spread(lo: float | None, hi: float | None, digits: int = 0) -> str:
        return "" if lo is None or hi is None else f"{lo:.{digits}f}–{hi:.{digits}f}"

    header = (f"{'':<2} {'config':<40} {'TTFT ms p50':>18} {'(min–max)':>11} "
              f"{'decode tok/s p50':>16} {'(min–max)':>11} {'weights MB':>15} "
              f"{'peak RSS':>9} {'KL nats':>8} {'top-1':>6} {'ppl':>7} {'greedy=':>7}")
    print(header)
    print("-" * len(header))
    notes = []
    for i, r in enumerate(rows):
        print(
            f"{chr(65 + i):<2} {r['config'][:40]:<40} "
            f"{_fmt(r['ttft_ms']):>11} {x(r['ttft_x']):>6} "
            f"{spread(r.get('ttft_lo'), r.get('ttft_hi')):>11} "
            f"{_fmt(r['decode_tok_s']):>9} {x(r['decode_x']):>6} "
            f"{spread(r.get('decode_lo'), r.get('decode_hi'), 1):>11} "
            f"{_fmt(r['weights_mb']):>8} {x(r['weights_x']):>6} "
            f"{_fmt(r['peak_rss_mb'], 0):>9} {_fmt(r['kl_mean'], 3):>8} "
            f"{pct(r['top1_agreement']):>6} {_fmt(r['ppl'], 2):>7} {pct(r['greedy_match']):>7}"
        )
        for note in (noisy_note(r), r.get("incomplete") and f"incomplete: {r['incomplete']}"):
            if note:
                notes.append(f"{chr(65 + i)}: {note}")
    print("p50: the median of the rounds' means (configs alternate round by round)")
    for note in notes:
        print(note)


def cmd_compare(args: argparse.Namespace) -> int:
    from playground.core import bench
    from playground.core.compare import history_rows, ratio_rows, run_compare

    configs = [_config(spec) for spec in args.config]
    check_writable({"--json": args.json, "--csv": args.csv, "--plot": args.plot})
    if args.plot and Path(args.plot).suffix.lower() not in (".svg", ".png"):
        raise ValueError(f"--plot {args.plot}: must end in .svg or .png")
    conversations = bench.read_prompts(Path(args.prompts or bench.default_prompts_path()))
    conversations = [bench.with_system(c, args.system) for c in conversations]
    bar = ProgressBar("compare")
    with ctrl_c_stops() as stop:
        outcome = run_compare(configs, conversations, warmup=args.warmup, repeats=args.repeats,
                              with_quality=not args.no_quality, progress=bar, status=_status,
                              should_stop=stop)
    if not outcome.results:
        print("stopped before any config finished a round", file=sys.stderr)
        return 130 if outcome.cancelled else 2
    if not outcome.complete:
        why = "stopped (Ctrl+C)" if outcome.cancelled else f"failed: {outcome.error}"
        _status(f"comparison {why}; keeping the {len(outcome.results)} configs with "
                "finished rounds, marked incomplete")
    rows = ratio_rows(outcome.results)
    print_compare_table(rows)
    data = bench.result_file(outcome.results)

    def plot(path: Path) -> None:
        if path.suffix.lower() == ".svg":  # no Qt: headless machines make it too
            from playground.core import compare_plot

            compare_plot.write(path, rows)
        else:  # the app's own charts, rendered offscreen
            from playground.gui.compare_charts import save_compare_png

            save_compare_png(rows, str(path))

    return finish("compare", data, [
        ("--json", args.json, lambda p: p.write_text(json.dumps(data, indent=1))),
        ("--csv", args.csv, lambda p: bench.write_csv(outcome.results, p)),
        ("--plot", args.plot, plot),
    ], history_rows(outcome.results, rows, hardware=data["hardware"],
                    session=uuid.uuid4().hex[:12], complete=outcome.complete)
    ) or (0 if outcome.complete else (130 if outcome.cancelled else 2))


def cmd_chat(args: argparse.Namespace) -> int:
    from playground.core.history import History
    from playground.core.messages import MessageError, check_text
    from playground.core.pipeline import build_engine

    config = _config(args.config)
    if args.system:
        check_text(args.system, "--system")
    engine = build_engine(config, progress=_status)
    history = History()
    if history.notice:
        _status(history.notice)
    session = uuid.uuid4().hex[:12]
    messages: list[dict[str, str]] = []
    if args.system:
        messages.append({"role": "system", "content": args.system})
    for note in [*(engine.info.get("notes") or []), f"decode: {engine.info.get('decode_step')}"]:
        _status(note)
    print(f"Chatting with {engine.info.get('model_name')} ({config.format(only_changed=True)}).")
    print("Ctrl-C stops a reply; /new starts over; /quit or Ctrl-D leaves.")
    while True:
        try:
            line = check_text(input("\nyou> "), "that line").strip()
        except (EOFError, KeyboardInterrupt):
            print()
            break
        except (UnicodeDecodeError, MessageError) as exc:
            reason = str(exc) if isinstance(exc, MessageError) else "that line is not UTF-8 text"
            print(f"error: {reason}; type it again")
            continue
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
        stop = CancelToken()
        previous = signal.signal(signal.SIGINT, lambda *_, s=stop: s.cancel())
        print("bot> ", end="", flush=True)
        try:
            result = engine.chat(
                messages, on_token=lambda p: print(p, end="", flush=True), should_stop=stop
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
        metrics = {**m.to_dict(), "finish_reason": result.finish_reason}
        if history.add("chat", config.format(), metrics=metrics, prompt=line,
                       reply=result.reply, session=session) is None:
            _status(history.notice or "history not written yet")
    history.close()
    if history.pending or history.path is None:
        _status(history.notice or "history not saved")
    elif history.path != history.main_path:
        _status(f"this session's turns are in {history.path}")
    return 0


@contextlib.contextmanager
def ctrl_c_stops() -> Iterator[CancelToken]:
    """Ctrl+C cancels the job's token (its should_stop) instead of raising inside the
    model: the job stops between tokens or at its next step and keeps what it finished.
    A second Ctrl+C still interrupts at once."""
    stop = CancelToken()

    def handler(*_: Any) -> None:
        if stop.cancelled:
            raise KeyboardInterrupt
        stop.cancel()
        print("\nstopping at the next token or step (Ctrl+C again to abort)", file=sys.stderr)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)


def _run_training(job: Any, settings: Any, label: str) -> Any:
    """Run a training job (distill, qat) with progress bars and Ctrl+C as its stop."""
    bars: dict[str, ProgressBar] = {}

    def progress(event: dict[str, Any]) -> None:
        stage = event["stage"]
        if "message" in event:
            _status(event["message"])
        if stage == "corpus" and event.get("total"):
            bars.setdefault(stage, ProgressBar("teacher replies"))(event["done"], event["total"])
        if stage == "train":
            bar = bars.setdefault(stage, ProgressBar(label))
            bar(event["step"], event["total"], f"loss {event['loss']:.4f}")

    with ctrl_c_stops() as stop:
        return job(settings, progress=progress, should_stop=stop)


def cmd_distill(args: argparse.Namespace) -> int:
    from playground.core import quality
    from playground.core.config import RunConfig
    from playground.core.distill import DistillSettings, distill

    teacher = RunConfig.parse(args.teacher).model
    layers = args.layers
    if args.preset and layers is None:
        # Fractions of the teacher's depth, measured on the default model: a third of the
        # layers for speed (about 2× faster), two thirds for quality.
        from playground.core.distill import preset_layers

        layers = preset_layers(teacher, args.preset)
    settings = DistillSettings(
        teacher=teacher, layers=layers, width=args.width, steps=args.steps,
        minutes=args.minutes, seq_len=args.seq_len, batch=args.batch, corpus=args.corpus,
        out=args.out, resume=args.resume,
        sample_top_p=None if args.greedy_replies else DistillSettings.sample_top_p,
    )
    report = _run_training(distill, settings, "distill")
    if report.cancelled:
        print(f"interrupted after {report.steps} steps: checkpoint kept in {report.out}; "
              "continue with --resume (same --out)")
        return 130
    print(f"student: {report.out}")
    print(f"  layers kept: {len(report.kept_layers)} of {len(report.layer_kl)} "
          f"({', '.join(map(str, report.kept_layers))})")
    print(f"  parameters {report.params / 1e6:.1f} M (teacher {report.teacher_params / 1e6:.1f} M), "
          f"weights {report.weights_mb:.0f} MB (teacher {report.teacher_weights_mb:.0f} MB)")
    print(f"  {report.steps} steps in {report.train_s / 60:.1f} min on {report.corpus_tokens} "
          f"corpus tokens; loss {_fmt(report.loss_first, 3)} → {_fmt(report.loss_last, 3)}")
    print(f"  KL to teacher on the evaluation text: {report.kl_before:.2f} → {report.kl_after:.2f} "
          f"nats; top-1 agreement {report.top1_before:.0%} → {report.top1_after:.0%}")
    if report.decode_tok_s and report.teacher_decode_tok_s:
        print(f"  decode {report.decode_tok_s:.1f} tok/s vs teacher {report.teacher_decode_tok_s:.1f} "
              f"(×{report.decode_tok_s / report.teacher_decode_tok_s:.2f})")
    print(f"  measured: {quality.disagreement(report.kl_after, report.top1_after)}; compare "
          "them (playground compare) before relying on it; train longer with --minutes.")
    print(f"  registered: variant=distilled and draft=distilled now use it for model={teacher}")
    return 0


def cmd_qat(args: argparse.Namespace) -> int:
    from playground.core.quant.qat import QatSettings, qat

    settings = QatSettings(config=args.config, minutes=args.minutes, steps=args.steps,
                           batch=args.batch, lr=args.lr, out=args.out)
    report = _run_training(qat, settings, "qat")
    if report.cancelled:
        print(f"interrupted after {report.steps} steps: nothing saved")
        return 130
    group = f", group {report.quant_group}" if report.quant == "int4-weight" else ""
    print(f"quantization-aware weights for {report.model}, {report.quant}{group}: {report.out}")
    print(f"  {report.steps} steps in {report.train_s / 60:.1f} min on {report.corpus_tokens} "
          f"corpus tokens; loss {_fmt(report.loss_first, 4)} → {_fmt(report.loss_last, 4)}")
    b, a = report.before, report.after
    print(f"  KL to the float model: {b['kl_mean']:.4f} → {a['kl_mean']:.4f} nats "
          f"(×{a['kl_mean'] / b['kl_mean']:.2f}); top-1 {b['top1_agreement']:.1%} → "
          f"{a['top1_agreement']:.1%}; perplexity {b['ppl']:.2f} → {a['ppl']:.2f} "
          f"(float {b['ppl_baseline']:.2f})")
    if report.smoothed:
        print(f"  of which smoothing activation outliers into the weights, before training: "
              f"KL {report.smoothed['kl_mean']:.4f} nats")
    spec = f"quant={report.quant}," + (f"quant_group={report.quant_group}," if group else "")
    print(f"  use them with qat=on (e.g. --config {spec}qat=on)")
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
    from playground.core.formats import model_scan

    roots = [Path(p) for p in args.dirs] if args.dirs else None
    found = model_scan.scan(roots)
    free = model_scan.free_mb()
    print(f"\n{len(found)} GGUF files and model folders found; {free / 1e3:.1f} GB of RAM free")
    for m in found:
        fits = m.fits(free)
        print(f"{m.name[:40]:<40} {m.size_mb:>9.0f}  {m.fmt:<8} "
              f"{model_scan.human_params(m.params):>7}  fast path: "
              f"{m.problem or ('yes' if m.fast is None else 'no (' + m.fast + ')')}  "
              f"fits: {'?' if fits is None else 'yes' if fits else 'no'}  {m.spec()}")
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
    spec_help = "RunConfig spec, e.g. quant=int8-dynamic,threads=2 (see docs/ARCHITECTURE.md)"

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
    bench.add_argument("--ignore-eos", action="store_true",
                       help="decode exactly max_new_tokens, past end-of-text (as llama-bench)")
    bench.add_argument("--json", help="write the result file here")
    bench.add_argument("--csv", help="write one CSV row per config here")
    bench.set_defaults(func=cmd_bench)

    compare = sub.add_parser("compare", help="several configs on the same prompts, with quality")
    compare.add_argument("--config", action="append", required=True,
                         help="a config spec; give 2 or more, the first is the baseline")
    compare.add_argument("--prompts", help="prompt file: one per line, or .jsonl of messages")
    compare.add_argument("--system", help="system prompt (default: none)")
    compare.add_argument("--warmup", type=int, default=1, help="untimed runs first (default 1)")
    compare.add_argument("--repeats", type=int, default=3,
                         help="rounds: every config runs every prompt once a round, the "
                              "configs alternating (default 3)")
    compare.add_argument("--no-quality", action="store_true", help="skip the KL/perplexity scoring")
    compare.add_argument("--json", help="write the result file here")
    compare.add_argument("--csv", help="write one CSV row per config here")
    compare.add_argument("--plot", help="write the charts here: .svg (no Qt needed) or .png "
                                        "(the app's charts, rendered offscreen)")
    compare.set_defaults(func=cmd_compare)

    dist = sub.add_parser("distill", help="build a smaller student from a teacher (KD)")
    dist.add_argument("--teacher", default="model=default", help="teacher spec (model=...)")
    dist.add_argument("--layers", type=_positive, help="decoder layers to keep (default: half)")
    dist.add_argument("--preset", choices=("speed", "quality"),
                      help="speed: keep a third of the layers; quality: two thirds")
    dist.add_argument("--width", type=float, default=1.0, help="share of MLP neurons kept")
    dist.add_argument("--steps", type=int, help="training steps (default: fill --minutes)")
    dist.add_argument("--minutes", type=float, default=12.0, help="training time budget")
    dist.add_argument("--seq-len", type=int, default=256)
    dist.add_argument("--batch", type=int, default=4)
    dist.add_argument("--corpus", help="extra training text (UTF-8 file)")
    dist.add_argument("--out", help="output folder (default: in the data folder)")
    dist.add_argument("--resume", action="store_true", help="continue from the checkpoint")
    dist.add_argument("--greedy-replies", action="store_true",
                      help="corpus of greedy teacher replies instead of sampled ones "
                           "(measured worse: the student memorises repetitive text)")
    dist.set_defaults(func=cmd_distill)

    qat_cmd = sub.add_parser("qat", help="quantization-aware training for a config's quant")
    qat_cmd.add_argument("--config", default="quant=int8-dynamic",
                         help="spec: the model and the quant (int8-dynamic, int8-weight, "
                              "int4-weight with quant_group) to train for")
    qat_cmd.add_argument("--minutes", type=float, default=7.0, help="training time budget")
    qat_cmd.add_argument("--steps", type=int, help="training steps (default: fill --minutes)")
    qat_cmd.add_argument("--batch", type=int, default=2)
    qat_cmd.add_argument("--lr", type=float, default=1.5e-4)
    qat_cmd.add_argument("--out", help="output folder (default: in the data folder)")
    qat_cmd.set_defaults(func=cmd_qat)

    models = sub.add_parser("models", help="list the default model, cached models and the "
                            "GGUF files and model folders on this machine")
    models.add_argument("dirs", nargs="*", help="folders to look in (default: the usual places)")
    models.set_defaults(func=cmd_models)
    from playground import cli_serve

    cli_serve.add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0].startswith("-") and argv[0] not in ("-h", "--help"):
        argv = ["gui", *argv]  # no subcommand: the options are the app's (`--self-test`)
    args = parser.parse_args(argv)
    if args.command is None:
        args = parser.parse_args(["gui"])
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
    except Cancelled as exc:  # Ctrl+C reached a job between its steps: nothing half-saved
        print(f"playground: {exc}; nothing was saved", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
