"""``nni-kws quantize MODEL_DIR_OR_CKPT``: learned or fixed bit-width quantization of a trained model."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from nni_kws.files import read_json

from .learned_bits import QPARAM_LR_SCALE

__all__ = ["register", "run"]


def run(args: argparse.Namespace) -> int:
    from nni_kws.data.datamodule import SpeechCommandsDataModule
    from nni_kws.data.listed import check_list_options
    from nni_kws.space import load_trained_model
    from nni_kws.training import seed_everything, torch_threads

    from .api import check_args

    if args.threads < 0:
        raise ValueError(f"--threads must be >= 0, got {args.threads}")
    if args.method == "trained" and args.bits is None:
        args.bits = 8
    if args.method == "fixed" and args.bits is None:
        raise ValueError("--method fixed needs --bits (the bit-width of every weight and activation)")
    if args.method == "trained" and args.fixed_algorithm is not None:
        raise ValueError("--fixed-algorithm applies to --method fixed (NNI's QAT or LSQ at --bits everywhere)")
    args.fixed_algorithm = args.fixed_algorithm or "qat"
    check_args(args.method, args.bits, args.min_bits, args.weight_budget, args.act_budget, args.budget_weight,
               args.epochs, args.max_steps, args.lr, args.fixed_algorithm, _input_bits(args), args.distill,
               names=OPTION_NAMES)  # before anything is loaded, naming the options
    seed_everything(args.seed)
    model = _baseline_model(args) or load_trained_model(args.model, arch=args.arch, preset=args.preset)
    trained_on = _trained_on(args)
    if args.data is None and trained_on.get("root") and not trained_on.get("synthetic"):
        args.data = trained_on["root"]  # the data the model was trained on, with its lists
        if args.train_list is None and args.test_list is None:
            args.train_list, args.test_list = trained_on.get("train_list"), trained_on.get("test_list")
        print(f"data: {args.data}" + (f" (--train-list {args.train_list}, --test-list {args.test_list})"
                                      if args.train_list else "") + ", as the model was trained", file=sys.stderr)
    check_list_options(args.data, args.train_list, args.test_list)
    if args.data is None:
        from nni_kws.data.synth import DEFAULT_PRESET, ensure_default_dataset
        args.data = ensure_default_dataset(progress=not args.no_progress, preset=DEFAULT_PRESET)
    if not Path(args.data).is_dir():
        raise FileNotFoundError(f"dataset folder not found: {args.data}")
    common = dict(batch_size=args.batch_size, num_workers=args.workers, seed=args.seed,
                  max_per_class=args.max_per_class, real_test_root=args.real_test, cache=True)
    data = (SpeechCommandsDataModule.from_lists(args.data, args.train_list, args.test_list, **common)
            if args.train_list else SpeechCommandsDataModule(args.data, **common))
    _check_classes(model, data, args)
    out = Path(args.out) if args.out else _stage_folder(args) / f"quantize-{args.method}"
    from nni_kws.signals import StopRequested, exit_code, stop_on_signals

    try:
        with stop_on_signals(), torch_threads(args.threads):
            result = _quantize(args, model, data, out)
    except StopRequested as stop:
        print(f"\nnni-kws quantize: {stop}; continue with the same command and --resume", file=sys.stderr)
        return exit_code(stop)
    r = result.report
    acc = "  ".join(f"{name} {v['before']:.4f} -> {v['after']:.4f}" for name, v in r["accuracy"].items())
    print(f"{r['avg_bits_per_weight']:.2f} bits/weight, {r['avg_bits_per_activation']:.2f} bits/activation, "
          f"{r['size_bytes']} bytes (float {r['float_size_bytes']}); accuracy {acc}")
    if "onnx" in r:
        print(f"ONNX QDQ: {out / r['onnx']['path']} agrees with the fake-quant model on "
              f"{100 * r['onnx']['agreement']:.2f}% of {r['onnx']['clips']} {r['onnx']['checked_on']} clips")
    print(f"report: {out / 'quant_report.json'}")
    if args.json:
        print(json.dumps({k: v for k, v in r.items() if k not in ("layers", "definitions")}, indent=2))
    return 0


#: The command's option for each :func:`~nni_kws.quant.api.check_args` argument, for its error messages.
OPTION_NAMES = {"method": "--method", "bits": "--bits", "min_bits": "--min-bits",
                "weight_budget_bits": "--weight-budget", "act_budget_bits": "--act-budget",
                "budget_weight": "--budget-weight", "epochs": "--epochs", "max_steps": "--max-steps", "lr": "--lr",
                "fixed_algorithm": "--fixed-algorithm", "input_bits": "--input-bits", "distill": "--distill"}


def _input_bits(args: argparse.Namespace) -> int | None:
    """``--input-bits``, where 0 means the float waveform (None)."""
    return None if args.input_bits == 0 else args.input_bits


def _stage_folder(args: argparse.Namespace) -> Path:
    """The run stage folder of ``MODEL_DIR_OR_CKPT`` (the folder itself, or the checkpoint's)."""
    return Path(args.model) if Path(args.model).is_dir() else Path(args.model).parent


def _baseline_model(args: argparse.Namespace) -> Any:
    """The hand-designed peer trained by ``nni-kws train --baseline`` in the folder ``args.model``, else None."""
    from nni_kws.baselines import load_trained_baseline

    return load_trained_baseline(args.model) if args.arch is None and Path(args.model).is_dir() else None


def _trained_on(args: argparse.Namespace) -> dict[str, Any]:
    """The data record (``root``, ``synthetic``, ``train_list``, ``test_list``) of the training run that made the
    model, read from its stage folder's ``result.json``; empty where there is none."""
    record = _stage_folder(args) / "result.json"
    return dict(read_json(record).get("data") or {}) if record.is_file() else {}


def _check_classes(model: Any, data: Any, args: argparse.Namespace) -> None:
    """Refuse data whose classes the model does not output (a ``--keywords`` model on the 12-class default set)."""
    import torch

    training = model.training
    with torch.no_grad():
        outputs = model.eval()(data.dataset("training")[0][0].unsqueeze(0)).shape[-1]
    model.train(training)
    if outputs != data.num_classes:
        trained_on = _trained_on(args).get("root")
        hint = f" (it was trained on {trained_on})" if trained_on else ""
        raise ValueError(f"the model {args.model} has {outputs} outputs but the data {args.data} has "
                         f"{data.num_classes} classes; pass --data with the dataset the model was trained on{hint}")


def _quantize(args: argparse.Namespace, model: Any, data: Any, out: Path) -> Any:
    from .api import quantize_model

    return quantize_model(
        model, data.train_dataloader(), data.val_dataloader(), method=args.method, bits=args.bits,
        weight_budget_bits=args.weight_budget, act_budget_bits=args.act_budget, budget_weight=args.budget_weight,
        min_bits=args.min_bits, epochs=args.epochs, max_steps=args.max_steps, lr=args.lr, distill=args.distill,
        fixed_algorithm=args.fixed_algorithm, input_bits=_input_bits(args),
        fold_bn=args.fold_bn, qparam_lr_scale=args.qparam_lr_scale, strict_budget=args.strict_budget,
        resume=args.resume, out_dir=out, test_loader=data.test_dataloader(),
        extra_loaders={"real_test": data.real_test_dataloader()} if args.real_test else None,
        progress=not args.no_progress)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "quantize", help="quantize a trained model (learned or fixed bit-widths), report, export ONNX QDQ",
        description="Quantization-aware fine-tuning through NNI's compression framework: learned per-layer "
                    "bit-widths (--method trained, Uhlich et al. 2020) or NNI's QAT/LSQ at one bit-width "
                    "(--method fixed). Writes quant_report.json and model_qdq.onnx to --out.")
    p.add_argument("model", metavar="MODEL_DIR_OR_CKPT",
                   help="run folder (model.pt / checkpoints/last.ckpt + arch.json) or a checkpoint file")
    p.add_argument("--arch", help="architecture JSON (default: arch.json next to the weights)")
    p.add_argument("--preset", help="space preset of the architecture (default: from arch.json, else 'paper')")
    p.add_argument("--method", "--quant-method", choices=["trained", "fixed"], default="trained")
    p.add_argument("--bits", type=int, help="fixed: bits of every tensor; trained: maximum bits (default 8)")
    p.add_argument("--min-bits", type=int, default=2, help="trained: minimum bits (default 2)")
    p.add_argument("--weight-budget", "--weight-budget-bits", type=float,
                   help="trained: target average bits per weight")
    p.add_argument("--act-budget", "--act-budget-bits", type=float,
                   help="trained: target average bits per activation")
    p.add_argument("--budget-weight", type=float, default=1.0, help="trained: weight of the budget penalty (default 1)")
    p.add_argument("--strict-budget", action=argparse.BooleanOptionalAction, default=True,
                   help="trained: project the bit-widths onto the budgets a quarter into the fine-tuning and keep "
                        "them (default); --no-strict-budget only reports a violation")
    p.add_argument("--qparam-lr-scale", type=float, default=QPARAM_LR_SCALE, metavar="K",
                   help=f"trained: step sizes and ranges learn K times faster than the weights (default "
                        f"{QPARAM_LR_SCALE:g})")
    p.add_argument("--fixed-algorithm", choices=["qat", "lsq"], help="fixed: NNI quantizer (default qat)")
    p.add_argument("--epochs", type=int, default=3, help="fine-tuning epochs (default 3)")
    p.add_argument("--max-steps", type=int, help="stop after this many optimizer steps")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate of the weights (default 1e-3)")
    p.add_argument("--distill", type=float, default=1.0,
                   help="weight of the KL loss to the float model's logits (default 1; 0: off)")
    p.add_argument("--input-bits", type=int, default=0,
                   help="bits of the raw waveform where the first layer reads it (default 0: float, the PCM)")
    p.add_argument("--fold-bn", action="store_true", help="fold BatchNorm into the convs before quantizing")
    p.add_argument("--data", help="Speech Commands folder (default: the folder the model was trained on, with its "
                                  "lists, else the synthesized default dataset)")
    p.add_argument("--train-list", metavar="FILE", help="fine-tune (and validate, on held-apart speakers) on the clips "
                                                        "of --data listed in FILE, as nni-kws train --train-list")
    p.add_argument("--test-list", metavar="FILE", help="test on the clips of --data listed in FILE (with --train-list)")
    p.add_argument("--real-test", help="a real test folder to report accuracy on too (e.g. gsc-v2-test)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers")
    p.add_argument("--max-per-class", type=int, help="cap clips per class (quick runs)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default, one per core)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="output folder (default: <model folder>/quantize-<method>)")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run from <out>/checkpoints/last.pt (saved after every epoch)")
    p.add_argument("--json", action="store_true", help="also print the report summary as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)
