"""Where quantization loses accuracy: PTQ per layer and target, range inits, BN folding, fine-tuning recipe
variants, on real ``dev`` clips; writes ``benchmarks/results/quantize_sensitivity.json``.

Uses the float model of ``benchmarks/quantize.py`` (pre-trained on synthesized speech, ``--work``).

    python benchmarks/quantize_sensitivity.py [--reuse] [--ptq-bits 3] [--only base "fold BN"]
    python benchmarks/quantize_sensitivity.py --per-channel --work runs/bench-quantize  # adds one section
"""
from __future__ import annotations

import argparse
import copy
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the benchmark next to this script

from quantize import (  # noqa: E402
    ARCH,
    PRESET,
    VAL_FRACTION,
    add_protocol_args,
    listed_loader,
    pretrained_model,
    protocol_defaults,
    real_data,
)

from nni_kws.data.datamodule import SpeechCommandsDataModule  # noqa: E402
from nni_kws.data.synth import ensure_default_dataset  # noqa: E402
from nni_kws.files import load_state_dict  # noqa: E402
from nni_kws.quant import TrainingDiverged, U3ClampRound, prepare_model, quantize_model  # noqa: E402
from nni_kws.quant.ranges import mse_range  # noqa: E402
from nni_kws.quant.sensitivity import agreement, layer_sensitivity, ptq_quantizer  # noqa: E402
from nni_kws.space import build_model, build_space  # noqa: E402
from nni_kws.training import seed_everything  # noqa: E402

SENSITIVITY_RUNS = {  # name: quantize_model overrides of the base recipe (learned bits, 4-bit budgets)
    "base": {},
    "epochs x2.5": {"epochs": "long"},
    "lr 1e-3": {"lr": 1e-3},
    "lr 1e-2": {"lr": 1e-2},
    "qparam lr x1": {"qparam_lr_scale": 1.0},
    "qparam lr x100": {"qparam_lr_scale": 100.0},
    "range init max": {"range_init": "max"},
    "fold BN": {"fold_bn": True},
    "float input": {"input_bits": None},
    "no distillation": {"distill": 0.0},
}


def sensitivity(args: argparse.Namespace) -> int:
    """Where the accuracy goes: PTQ per layer/target and fine-tuning recipe variants, on real ``dev`` clips."""
    start = time.monotonic()
    root = ensure_default_dataset(progress=not args.quiet)
    data = SpeechCommandsDataModule(root, batch_size=args.batch_size, seed=args.seed, cache=True)
    dev = listed_loader(args.real_test, args.train_list, 256, every=args.dev_every)
    model, training = pretrained_model(args)
    prepared = prepare_model(model)
    example = next(iter(data.train_dataloader()))[0]
    result: dict[str, Any] = {"benchmark": "quantize-sensitivity", "preset": PRESET, "arch": ARCH,
                              "float_training": training, "eval_set": "real gsc-v2-test dev split (2,656 clips)"}
    result["eval_set"] += f", every {args.dev_every}th clip: {len(dev.dataset)}"
    result["ptq"] = layer_sensitivity(prepared, example, dev, bits=args.ptq_bits)
    _write(result, args.out)
    float_acc = agreement(prepared, dev)
    everything = {layer: ["weight", "_input_"] for layer in result["ptq"]["layers"]}
    result["ptq_range_init"] = {
        init: {b: agreement(ptq_quantizer(prepared, example, b, everything, init).bound_model, dev)["accuracy"]
               for b in (8, 6, 4)}
        for init in ("mse", "max", "percentile")}
    folded = prepare_model(model, fold_bn=True)
    result["ptq_fold_bn"] = {
        b: agreement(ptq_quantizer(folded, example, b, {layer: ["weight"] for layer in result["ptq"]["layers"]}
                                   ).bound_model, dev)["accuracy"] for b in (8, 6, 4, 3)}
    result["ptq_fold_bn"]["float"] = float_acc["accuracy"]
    _write(result, args.out)
    runs = {}
    for name, override in SENSITIVITY_RUNS.items():
        if args.only and name not in args.only:
            continue
        kwargs = dict(method="trained", bits=8, weight_budget_bits=args.weight_budget, act_budget_bits=args.act_budget,
                      epochs=args.quant_epochs, lr=args.quant_lr, distill=args.distill, progress=not args.quiet)
        kwargs.update(override)
        if kwargs["epochs"] == "long":
            kwargs["epochs"] = round(2.5 * args.quant_epochs)
        seed_everything(args.seed)
        t = time.monotonic()
        try:
            report = quantize_model(model, data.train_dataloader(), data.val_dataloader(),
                                    extra_loaders={"dev": dev}, **kwargs).report
        except TrainingDiverged as err:
            runs[name] = {"override": override, "diverged": str(err)}
            continue
        runs[name] = {"override": override, "accuracy": report["accuracy"],
                      "drop_points_dev": round(100 * (report["accuracy"]["dev"]["before"]
                                                      - report["accuracy"]["dev"]["after"]), 2),
                      "avg_bits_per_weight": report["avg_bits_per_weight"],
                      "avg_bits_per_activation": report["avg_bits_per_activation"],
                      "layers": {row["name"]: [row.get("weight_bits"), row.get("act_bits")]
                                 for row in report["layers"]},
                      "time_s": round(time.monotonic() - t, 1)}
        logging.info("%s: %s", name, {k: v for k, v in runs[name].items() if k != "layers"})
        result["qat"] = runs
        _write(result, args.out)
    result["settings"] = {k: getattr(args, k) for k in ("quant_epochs", "quant_lr", "distill", "weight_budget",
                                                       "act_budget", "batch_size", "threads", "seed")}
    result["total_s"] = round(time.monotonic() - start, 1)
    _write(result, args.out)
    return 0


def per_channel_weights(args: argparse.Namespace) -> int:
    """Adds ``ptq_per_channel_weights`` to ``--out``: every weight (activations float) of quantize.py's float model
    (``<--work>/float-dev-finetuned``) on MSE grids, one per tensor against one per output channel, at 4, 3 and 2
    bits; dev-val accuracy and the squared error relative to the weights' energy. The learned quantizer's grids
    are per tensor; this bounds what per-channel steps could gain before writing them."""
    model = load_state_dict(prepare_model(build_model(ARCH, build_space(PRESET))),
                            Path(args.work) / "float-dev-finetuned" / "model.pt").eval()
    val = real_data(argparse.Namespace(**vars(args), val_fraction=VAL_FRACTION), args.seed).val_dataloader()

    def on_grid(w: torch.Tensor, levels: int) -> torch.Tensor:  # the learned quantizer's op on an MSE range
        q_max = mse_range(w, True, levels)
        return U3ClampRound.apply(w, q_max / levels, q_max, True)

    section: dict[str, Any] = {"model": "quantize.py's float-dev-finetuned", "eval": "dev-val",
                               "float_dev_val": round(agreement(model, val)["accuracy"], 4)}
    for bits in (4, 3, 2):
        levels = 2 ** (bits - 1) - 1
        for granularity in ("per_tensor", "per_channel"):
            quantized, error, energy = copy.deepcopy(model), 0.0, 0.0
            for layer in quantized.modules():
                if isinstance(layer, (torch.nn.Conv1d, torch.nn.Linear)):
                    w = layer.weight.data
                    q = on_grid(w, levels) if granularity == "per_tensor" else torch.stack([on_grid(c, levels)
                                                                                            for c in w])
                    error, energy = error + float(((q - w) ** 2).sum()), energy + float((w ** 2).sum())
                    layer.weight.data = q
            section[f"{bits}_bits_{granularity}"] = {"dev_val": round(agreement(quantized, val)["accuracy"], 4),
                                                     "relative_squared_error": round(error / energy, 4)}
            logging.info("%s bits %s: %s", bits, granularity, section[f"{bits}_bits_{granularity}"])
    result = json.loads(Path(args.out).read_text()) if Path(args.out).exists() else {}
    result["ptq_per_channel_weights"] = section
    _write(result, args.out)
    return 0


def _write(result: dict[str, Any], out: str) -> None:
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(result, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--float-epochs", type=int, default=25, help="pre-training epochs on synthesized speech")
    p.add_argument("--float-lr", type=float, default=0.05)
    p.add_argument("--quant-epochs", type=int, default=3, help="epochs of the recipe variants")
    p.add_argument("--quant-lr", type=float, default=3e-3, help="lr of the recipe variants")
    p.add_argument("--distill", type=float, default=1.0)
    p.add_argument("--weight-budget", type=float, default=4.0, help="budget of the recipe variants")
    p.add_argument("--act-budget", type=float, default=4.0, help="budget of the recipe variants")
    p.add_argument("--ptq-bits", type=int, nargs="*", default=[3], help="per-layer PTQ bits")
    p.add_argument("--dev-every", type=int, default=3, help="evaluate on every n-th dev clip")
    p.add_argument("--only", nargs="*", help="run only these recipe variants")
    add_protocol_args(p)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", default="runs/bench-quantize", help="float models")
    p.add_argument("--reuse", action="store_true", help="reuse the float model saved under --work")
    p.add_argument("--out", default="benchmarks/results/quantize_sensitivity.json")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--per-channel", action="store_true", help="only add the per-channel weight PTQ section")
    args = protocol_defaults(p.parse_args(argv))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    torch.set_num_threads(args.threads)
    args.arch, args.preset = ARCH, PRESET
    return per_channel_weights(args) if args.per_channel else sensitivity(args)


if __name__ == "__main__":
    sys.exit(main())
