"""``nni-kws search`` / ``train`` / ``run`` / ``sweep``: the pipeline on the command line.

Every option defaults to "unset" here; unset options come from the run folder's ``config.json``
(so ``--resume`` needs no other option) and then from :class:`~nni_kws.pipeline.PipelineConfig`.
"""
from __future__ import annotations

import argparse
import logging
import shlex
import signal
import sys
from pathlib import Path
from typing import Any

from pytorch_lightning.utilities.exceptions import SIGTERMException

from nni_kws.baselines import BASELINES
from nni_kws.cli import quiet_libraries
from nni_kws.cost.budgets import BUDGETS, budget_option, check_budget
from nni_kws.data.synth import PRESETS as SYNTH_PRESETS
from nni_kws.search.oneshot import STRATEGIES
from nni_kws.signals import StopRequested, exit_code, stop_on_signals
from nni_kws.space import PRESETS as SPACE_PRESETS
from nni_kws.space import SEARCHED, InvalidArchitecture, arch_file_meta, load_arch, parse_space_name, validate_arch

from .config import CONFIG, PipelineConfig, load_config, run_space
from .stages import run_pipeline
from .sweep import SweepPlan, run_sweep

__all__ = ["register", "overrides_from_args", "parse_budget_sweep"]

log = logging.getLogger(__name__)


def _defaults() -> PipelineConfig:
    return PipelineConfig()


def _add_common(p: argparse.ArgumentParser, d: Any, out_default: str) -> None:
    g = p.add_argument_group("data and run folder")
    g.add_argument("--out", default=out_default,
                   help=f"run folder; each stage writes <out>/<stage>/ (default: {out_default})")
    g.add_argument("--data", metavar="DIR", help="a local Speech Commands copy in the official layout "
                   "(default: the synthesized espeak-ng dataset, made and cached on first use)")
    g.add_argument("--synth", choices=sorted(SYNTH_PRESETS), help=f"synthesized dataset: preset (default: {d.synth}; "
                   "'full' is the longer offline configuration, 'today' the espeak-only set)")
    g.add_argument("--keywords", help="synthesized dataset for your own keywords or phrases, comma-separated, e.g. "
                   "'marvin,lights on,hey nni' (default: the 10 Speech Commands keywords)")
    g.add_argument("--speakers", type=int, help="synthesized dataset: number of espeak voices (default: the preset's)")
    g.add_argument("--real-test", metavar="DIR", help="real Speech Commands v2 test folder, evaluation only "
                   "(default: <repo>/../shared/data/gsc-v2-test when present)")
    g.add_argument("--no-real-test", dest="real_test", action="store_const", const="", help="skip the real test set")
    g.add_argument("--max-per-class", type=int, help="cap clips per class of each split, for quick runs on a large "
                   "local copy (with --train-list: of training only; validation and --test-list stay whole)")
    g.add_argument("--train-list", metavar="FILE", help="train (and validate, on held-apart speakers) on the clips of "
                   "--data listed in FILE, one relative path per line, e.g. gsc-v2-test-splits/dev.txt")
    g.add_argument("--test-list", metavar="FILE",
                   help="test on the clips of --data listed in FILE (with --train-list), "
                   "e.g. gsc-v2-test-splits/heldout.txt")
    g.add_argument("--preset", help=f"search-space preset: {', '.join(SPACE_PRESETS)} (default: {d.preset})")
    g.add_argument("--frontend", choices=["raw", "sinc", "conv", "mfcc"],
                   help=f"front end; 'raw' searches SincConv vs conv (default: {d.frontend})")
    g.add_argument("--batch-size", type=int, help=f"(default: {d.batch_size})")
    g.add_argument("--workers", type=int, help=f"DataLoader worker processes (default: {d.workers})")
    g.add_argument("--threads", type=int, help="torch CPU threads, 0: torch's default, one per core "
                   f"(default: {d.threads}; 1 when other jobs share the cores)")
    g.add_argument("--seed", type=int, help=f"seed of data order, augmentation and init (default: {d.seed})")
    g.add_argument("--no-progress", dest="progress", action="store_const", const=False, help="no progress bars")
    g.add_argument("--resume", action="store_true", help="continue an interrupted run: completed stages are "
                   "skipped, an interrupted one restarts from its last checkpoint")
    g.add_argument("--overwrite", action="store_true", help="delete the stages already in --out and start over")


def _add_search(p: argparse.ArgumentParser, d: Any) -> None:
    g = p.add_argument_group("search")
    g.add_argument("--strategy", choices=[s for s in STRATEGIES if s != "enas"],
                   help=f"one-shot strategy: darts trains the softmax mixture, gumbel-hard one path per step, "
                        f"random uniform single paths then evolution, sandwich the largest, smallest and a random "
                        f"path per step then evolution (default: {d.strategy})")
    g.add_argument("--search-epochs", type=int, help="supernet epochs in all (split supernets share them) "
                   f"(default: {d.search_epochs})")
    g.add_argument("--warmup-epochs", type=int, help="search epochs that train the weights only, before the first "
                   "architecture step (default: a quarter of --search-epochs)")
    g.add_argument("--arch-every", type=int, help="one architecture step per N weight steps (ICPR: 5; a full DARTS "
                   f"iteration costs two supernet passes) (default: {d.arch_every})")
    g.add_argument("--calib-batches", type=int, help="training batches that recalibrate the BatchNorm statistics of "
                   f"a sub-network inheriting supernet weights (default: {d.calib_batches})")
    g.add_argument("--split", help="random/sandwich: train one supernet per value of this choice (frontend: a "
                   "SincConv and a conv supernet, which rank across front ends better than one shared supernet), "
                   "sharing --search-epochs equally; auto: the front end where the space has that choice; none: one "
                   f"supernet (default: {d.split})")
    g.add_argument("--finalists", type=int, help="random/sandwich: train the N best candidates of the evolution (and "
                   "the best of each front end they miss) from scratch for --finalist-epochs and keep the best on "
                   "validation (default 3; 0: evolution's best)")
    g.add_argument("--finalist-epochs", type=int, help=f"(default: {d.finalist_epochs})")
    g.add_argument("--finalist-seeds", type=int, help="trainings per finalist, picked by their mean validation "
                   f"accuracy: steadier when candidates are close (default: {d.finalist_seeds})")
    g.add_argument("--finalist-folds", action="store_const", const=True, help="with --train-list: training i of each "
                   "finalist validates on fold i of the list's speakers, not all on one validation part")
    g.add_argument("--max-macs", type=float,
                   help=f"budget: multiply-accumulates per inference (default: {d.max_macs:g}; "
                   "0: none)")
    g.add_argument("--max-params", type=float, help="budget: parameters")
    g.add_argument("--max-peak-act-kb", "--max-peak-kb", dest="max_peak_act_kb", type=float,
                   help="budget: peak activation memory [kB = 1000 bytes]")
    g.add_argument("--max-latency-ms", type=float, help="budget: estimated latency [ms] (from the latency table)")
    g.add_argument("--allow-over-budget", action="store_const", const=True, help="finish the run when the searched "
                   "architecture ends over a budget (default: stop after the search with exit status 3)")
    g.add_argument("--arc-lr", type=float, help=f"Adam step of the architecture logits (default: {d.arc_lr})")
    g.add_argument("--lambda", dest="lam", type=float, help=f"weight of the budget penalties (default: {d.lam})")
    g.add_argument("--penalty-form", choices=["hinge", "add", "mul-log"],
                   help=f"budget penalty: hinge = λ·relu(E/T−1), add = λ·(E/T−1), mul-log = loss·(log E/log T)^λ "
                   f"(default: {d.penalty_form})")
    g.add_argument("--latency-lut", metavar="FILE", help="latency table from `nni-kws profile` (default: measure "
                   "one for this space, a few seconds, into <out>/profile/)")


def _add_lr(g: Any, d: Any) -> None:
    """``--lr``: the weights' rate of the search and of retraining (with the search alone, of the search)."""
    g.add_argument("--lr", type=float, help=f"SGD learning rate of the weights (search and retraining), cosine "
                   f"schedule (default: {d.lr})")


def _add_train(p: argparse.ArgumentParser, d: Any) -> None:
    g = p.add_argument_group("retraining")
    g.add_argument("--train-epochs", type=int, help=f"(default: {d.train_epochs})")
    g.add_argument("--init", choices=["scratch", "supernet"], help=f"start from fresh or inherited supernet "
                   f"weights (default: {d.init})")
    _add_lr(g, d)
    g.add_argument("--distill", type=float, metavar="W", help="distil the retrained network from the real-speech "
                   "teacher (needs pip install 'nni-kws[teacher]'): weight W in [0, 1] of its soft labels, e.g. 0.9 "
                   f"(default: {d.distill:g}: off)")
    g.add_argument("--distill-temperature", type=float, metavar="T",
                   help=f"temperature of the teacher's soft labels (default: {d.distill_temperature:g})")


def _add_quant(p: argparse.ArgumentParser, d: Any) -> None:
    g = p.add_argument_group("quantization")
    g.add_argument("--quant-method", choices=["trained", "fixed"],
                   help=f"learned or fixed bit-widths (default: {d.quant_method})")
    g.add_argument("--bits", type=int,
                   help=f"fixed: the bit-width; trained: the largest bit-width allowed (default: {d.bits})")
    g.add_argument("--weight-budget-bits", type=float, help=f"learned: average bits per weight to aim for "
                   f"(default: {d.weight_budget_bits}; 0: none)")
    g.add_argument("--act-budget-bits", type=float, help=f"learned: average bits per activation to aim for "
                   f"(default: {d.act_budget_bits}; 0: none)")
    g.add_argument("--strict-budget", action=argparse.BooleanOptionalAction, default=None,
                   help=f"learned: end within the bit budgets (bit-widths projected onto them a quarter into the "
                   f"fine-tuning, then kept) rather than report a violation (default: {d.strict_budget})")
    g.add_argument("--quant-epochs", type=int, help=f"(default: {d.quant_epochs})")
    g.add_argument("--qparam-lr-scale", type=float, metavar="K", help="learned: step sizes and ranges learn K times "
                   f"faster than the weights (default: {d.qparam_lr_scale:g})")


_NOT_CONFIG = {"command", "func", "verbose", "resume", "overwrite", "arch", "baseline", "lambdas", "budgets",
               "frontends", "quantize"}


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The options given on the command line, as :class:`PipelineConfig` fields."""
    values = {k: v for k, v in vars(args).items() if k not in _NOT_CONFIG and v is not None}
    if values.get("real_test") == "":
        values["real_test"] = None
    for key in ("data", "train_list", "test_list"):
        if key in values:
            values[key] = str(Path(values[key]).expanduser().absolute())
    return values


def _config(args: argparse.Namespace, extra: dict[str, Any] | None = None,
            base: PipelineConfig | None = None) -> PipelineConfig:
    """Options of this invocation: ``base`` (default PipelineConfig) ⊕ stored config ⊕ command line."""
    overrides = {**overrides_from_args(args), **(extra or {})}
    base = base or PipelineConfig()
    if args.overwrite:  # a fresh start: nothing comes from the old config.json
        return PipelineConfig(**{**base.to_json(), **overrides, "out": args.out})
    return load_config(args.out, overrides, base=base)


def _interrupted(args: argparse.Namespace, stop: BaseException) -> int:
    """The one-line stop message with the resume command; exit status 128 + signal (130 Ctrl-C, 143 SIGTERM)."""
    signum = getattr(stop, "signum", 2)
    how = str(stop) if isinstance(stop, StopRequested) else "interrupted"
    again = f" --arch {shlex.quote(args.arch)}" if getattr(args, "arch", None) else ""
    print(f"\nnni-kws {args.command}: {how}; the last per-epoch checkpoints are in {args.out}. "
          f"Continue with: nni-kws {args.command} --out {shlex.quote(str(args.out))}{again} --resume",
          file=sys.stderr)
    return exit_code(stop) if isinstance(stop, StopRequested) else 128 + signum


def _summary(results: dict[str, Any]) -> None:
    for p in results.get("points", []):
        acc = p.get("test_acc")
        real = p.get("real_test_acc")
        print(f"  {p['name']:<28} test {100 * acc:6.2f} %" if acc is not None else f"  {p['name']:<28} test –", end="")
        print(f"  real {100 * real:6.2f} %" if real is not None else "", end="")
        c = p.get("costs", {})
        print(f"  {c.get('params', 0) / 1e3:7.1f}k params  {c.get('macs', 0) / 1e6:7.2f}M MACs"
              + (f"  {c['weight_kb']:7.1f} kB" if c.get("weight_kb") is not None else ""))
    print(f"  total {results.get('timings_s', {}).get('total', 0):.0f} s; see {results['config']['out']}/report.md")


def _stages(args: argparse.Namespace, stages: list[str], arch: dict[str, Any] | None = None,
            extra: dict[str, Any] | None = None, baseline: str | None = None) -> int:
    quiet_libraries()
    cfg = _config(args, extra)
    try:
        with stop_on_signals():
            out = run_pipeline(cfg, stages, resume=args.resume, overwrite=args.overwrite, arch=arch,
                               baseline=baseline)
    except SIGTERMException:  # Lightning's own SIGTERM handling, should a signal reach it
        return _interrupted(args, StopRequested(signal.SIGTERM))
    except (StopRequested, KeyboardInterrupt) as stop:
        return _interrupted(args, stop)
    for stage, res in out.items():
        if stage == "search":
            print(f"searched architecture: {Path(cfg.out) / 'search' / 'arch.json'}")
        elif stage == "train":
            real = res.get("real_test_acc")
            print(f"retrained: test accuracy {100 * res['test_acc']:.2f} %"
                  + (f", real test {100 * real:.2f} %" if real is not None else "")
                  + f"; weights in {Path(cfg.out) / 'train' / 'model.pt'}")
        elif stage == "report":
            _summary(res)
    return 0


def _run_search(args: argparse.Namespace) -> int:
    return _stages(args, ["search"])


def _run_train(args: argparse.Namespace) -> int:
    arch, extra = None, {}
    if args.baseline:
        if args.arch:
            raise ValueError("train: give --arch FILE or --baseline NAME, not both")
        return _stages(args, ["train"], baseline=args.baseline)
    if args.arch:
        path = Path(args.arch)
        if path.exists():
            searched = None
        elif args.arch in SEARCHED:
            searched = SEARCHED[args.arch]
        else:
            raise FileNotFoundError(f"architecture file not found: {path} (nor the name of a searched architecture: "
                                    f"{', '.join(SEARCHED)})")
        # the space an arch.json (or a searched architecture) belongs to
        meta = dict(zip(("preset", "frontend"), parse_space_name(searched.space))) if searched \
            else arch_file_meta(path)
        stored = (Path(args.out) / CONFIG).is_file() and not args.overwrite
        for key in ("preset", "frontend"):
            if meta.get(key) and getattr(args, key) is None and not stored:
                extra[key] = meta[key]
        if meta.get("coarse") and not stored:  # whole-block choices: the space of the proxyless strategy
            extra["strategy"] = "proxyless"
        cfg = _config(args, extra)
        space = run_space(cfg)  # before any data is synthesized or loaded
        candidate = searched.arch if searched else load_arch(path)  # read here, checked against the space below
        try:
            arch = validate_arch(space, candidate)
        except InvalidArchitecture as err:  # most often: an architecture of another space than this run's
            run = {"preset": cfg.preset, "frontend": cfg.frontend, "coarse": cfg.coarse()}
            other = {k: v for k, v in meta.items() if k in run and v is not None and v != run[k]}
            if not other:
                raise InvalidArchitecture(f"{args.arch}: {err}") from None
            raise InvalidArchitecture(
                f"{args.arch} is an architecture of another space ({', '.join(f'{k} {v}' for k, v in other.items())}) "
                f"than this run's ({', '.join(f'{k} {run[k]}' for k in other)}, from --preset/--frontend or "
                f"{Path(args.out) / CONFIG}): {err}") from None
    return _stages(args, ["train"], arch=arch, extra=extra)


def _run_run(args: argparse.Namespace) -> int:
    return _stages(args, ["search", "train", "quantize", "report"])


#: A sweep's default penalty: the paper's multiplicative loss·(log E / log T)^λ, whose pull per relative
#: change of cost is the same for every front end and budget (a fair raw-vs-MFCC comparison).
SWEEP_PENALTY_FORM = "mul-log"
SWEEP_LAMBDAS = "0,2,8,32"


def parse_budget_sweep(text: str) -> tuple[str, list[float]]:
    """``'macs=1e6,2e6'`` (or ``max_macs=...``) → ``('max_macs', [1e6, 2e6])``."""
    name, sep, values = text.partition("=")
    name = name.strip().replace("-", "_").removeprefix("max_")
    if not sep or name not in BUDGETS:
        raise ValueError(f"--budgets reads NAME=V1,V2,... with NAME one of {', '.join(BUDGETS)}; got {text!r}")
    limits = _floats(values, "--budgets")
    for limit in limits:
        check_budget(name, limit)
    return budget_option(name), limits


def _floats(text: str, option: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{option} takes comma-separated numbers, got {text!r}") from None
    if not values:
        raise ValueError(f"{option} needs at least one value")
    return values


def _run_sweep(args: argparse.Namespace) -> int:
    frontends = [f.strip() for f in (args.frontends or "").split(",") if f.strip()]
    bad = [f for f in frontends if f not in ("raw", "sinc", "conv", "mfcc")]
    if bad:
        raise ValueError(f"unknown front end {bad[0]!r} in --frontends (choose from raw, sinc, conv, mfcc)")
    if args.budgets:
        knob, values = parse_budget_sweep(args.budgets)
    else:
        knob, values = "lam", _floats(args.lambdas, "--lambdas")
    quiet_libraries()
    # a λ sweep by default searches with DARTS, whose architecture step λ weighs (the default strategy has none)
    cfg = _config(args, base=PipelineConfig(penalty_form=SWEEP_PENALTY_FORM, **({"strategy": "darts"} if knob == "lam"
                                                                                else {})))
    plan = SweepPlan(knob=knob, values=values, frontends=frontends or [cfg.frontend], quantize=args.quantize)
    try:
        with stop_on_signals():
            sweep = run_sweep(cfg, plan, resume=args.resume, overwrite=args.overwrite)
    except SIGTERMException:  # Lightning's own SIGTERM handling, should a signal reach it
        return _interrupted(args, StopRequested(signal.SIGTERM))
    except (StopRequested, KeyboardInterrupt) as stop:
        return _interrupted(args, stop)
    for p in sweep["points"]:
        star = "*" if p.get("pareto", {}).get("macs") else " "
        q = p.get("quant") or {}
        quantized = (f"  quantized {100 * (q.get('test_acc') or 0):6.2f} % at {q.get('bits_weight') or 0:.2f}/"
                     f"{q.get('bits_act') or 0:.2f} bits" if q else "")
        print(f"{star} {p['frontend']:<5} {knob}={p[knob]:<8g} test {100 * (p['test_acc'] or 0):6.2f} %  "
              f"{p['costs'].get('params', 0) / 1e3:7.1f}k params  {p['costs'].get('macs', 0) / 1e6:7.2f}M MACs"
              f"{quantized}")
    print(f"sweep: {Path(cfg.out) / 'sweep.md'} ({sweep['seconds']:.0f} s; * = on the accuracy-MACs front)")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    d = _defaults()
    p = subparsers.add_parser("search", help="hardware-aware one-shot search; writes <out>/search/arch.json",
                              description="One-shot hardware-aware NAS: by default 'sandwich' (single-path supernet "
                              "training, then evolution within the budgets); DARTS-style strategies weigh budget "
                              "penalties with --lambda.")
    _add_common(p, d, d.out)
    _add_search(p, d)
    _add_lr(p, d)
    p.set_defaults(func=_run_search)

    p = subparsers.add_parser("train", help="retrain a frozen architecture and evaluate it",
                              description="Train the searched architecture (or --arch FILE, or a peer with --baseline "
                              "NAME) and evaluate it on the "
                              "test split and the real Speech Commands test set.")
    _add_common(p, d, d.out)
    p.add_argument("--arch", metavar="FILE|NAME", help="architecture JSON (default: <out>/search/arch.json), or the "
                   f"name of a searched architecture kept with the space: {', '.join(SEARCHED)}")
    p.add_argument("--baseline", choices=list(BASELINES), help="train a hand-designed peer instead (nni_kws.baselines: "
                   "published configuration and front end, costed like a searched model)")
    _add_train(p, d)
    p.set_defaults(func=_run_train)

    p = subparsers.add_parser("run", help="the whole job: search → retrain → quantize → report",
                              description="Search, retrain, quantize and report in one go (resumable). Writes "
                              "<out>/results.json, report.md and pareto.png.")
    _add_common(p, d, d.out)
    _add_search(p, d)
    _add_train(p, d)
    _add_quant(p, d)
    p.set_defaults(func=_run_run)

    p = subparsers.add_parser("sweep", help="λ or budget sweep: the accuracy–cost Pareto front",
                              description="Search + retrain for every λ (or budget) and front end; writes "
                              "<out>/sweep.json, sweep.md and pareto.png.")
    _add_common(p, d, "runs/sweep")
    _add_search(p, d)
    _add_train(p, d)
    _add_quant(p, d)
    p.add_argument("--lambdas", default=SWEEP_LAMBDAS, help=f"comma-separated λ values (default: {SWEEP_LAMBDAS}, "
                   f"with --penalty-form {SWEEP_PENALTY_FORM} unless given)")
    p.add_argument("--budgets", metavar="NAME=V1,V2", help="sweep one budget instead of λ, e.g. macs=5e5,1e6,2e6")
    p.add_argument("--frontends", help="comma-separated front ends to compare, e.g. raw,mfcc (default: --frontend)")
    p.add_argument("--quantize", action="store_true", help="also quantize every point")
    p.set_defaults(func=_run_sweep)
