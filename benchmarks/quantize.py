"""Benchmark of quantization: accuracy drop vs float at learned bit-widths and at fixed 4/3/2 bits.

1. Train a fixed architecture of the 'small' preset (SincConv front end) on the synthesized dataset
   (``nni_kws.data.synth.ensure_default_dataset``), or reuse the one a previous run saved under ``--work``.
2. Learned bit-widths (``LearnedBitwidthQuantizer``, max 8 bits, budgets ``--weight-budget`` /
   ``--act-budget`` average bits) and NNI's QAT at each ``--fixed-bits``, all fine-tuned from the
   same float weights with the same recipe (Adam, cosine, logit distillation from the float model);
   the baselines get ``--fixed-epochs`` (fewer) so that the whole benchmark stays near 10 minutes
   on 2 cores.
3. Accuracy before/after on the synthesized test split and on the real Speech Commands v2 test set
   (``--real-test``), average bits (definitions in the JSON), sizes, and the ONNX QDQ export's top-1
   agreement with the fake-quant model under onnxruntime, on the real test set.

Target: at most 0.5 points of accuracy lost at <= 4 average bits (weights and activations).

    python benchmarks/quantize.py [--float-epochs 25] [--quant-epochs 20] [--fixed-epochs 10] [--reuse]
"""
from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

from torch.utils.data import DataLoader

from nni_kws.data.datamodule import SpeechCommandsDataModule
from nni_kws.data.gsc import SpeechCommandsTestFolder
from nni_kws.data.synth import ensure_default_dataset
from nni_kws.quant import DEFINITIONS, TrainingDiverged, onnx_agreement, prepare_model, quantize_model
from nni_kws.quant.sensitivity import layer_sensitivity, ptq_quantizer, agreement
from nni_kws.space import build_model, build_space, load_arch, save_arch
from nni_kws.training import accuracy, fit, seed_everything

#: The benchmarked architecture (preset 'small'): SincConv front end, two blocks per stage.
ARCH = {"frontend": "sinc", "s0_depth": 2, "s0_i0_e": 2, "s0_i0_k": 5, "s0_i1_e": 2, "s0_i1_k": 5,
        "s1_depth": 2, "s1_i0_e": 2, "s1_i0_k": 5, "s1_i1_e": 2, "s1_i1_k": 5,
        "s2_depth": 2, "s2_i0_e": 2, "s2_i0_k": 5, "s2_i1_e": 2, "s2_i1_k": 5}
PRESET = "small"
REAL_TEST = "/work/shared/data/gsc-v2-test"
SPLITS = "/work/shared/data/gsc-v2-test-splits"


def listed_loader(root: str, list_file: str, batch_size: int) -> DataLoader:
    """Loader over the clips of ``root`` named in ``list_file`` (until the list-defined loader lands on main)."""
    keep = set(Path(list_file).read_text().split())
    ds = SpeechCommandsTestFolder(root)
    ds._items = [it for it in ds._items if str(Path(it[0]).relative_to(root)) in keep]
    if len(ds) != len(keep):
        raise ValueError(f"{list_file}: {len(keep) - len(ds)} listed clips are missing from {root}")
    ds.preload()
    return DataLoader(ds, batch_size=batch_size)


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
    dev = listed_loader(args.real_test, f"{SPLITS}/dev.txt", 256)
    model, training = float_model(args, data)
    prepared = prepare_model(model)
    example = next(iter(data.train_dataloader()))[0]
    result: dict[str, Any] = {"benchmark": "quantize-sensitivity", "preset": PRESET, "arch": ARCH,
                              "float_training": training, "eval_set": "real gsc-v2-test dev split (2,656 clips)"}
    result["ptq"] = layer_sensitivity(prepared, example, dev, bits=args.ptq_bits)
    float_acc = agreement(prepared, dev)
    result["ptq_range_init"] = {
        init: {b: agreement(ptq_quantizer(prepared, example, b, {
            layer: ["weight", "_input_"] for layer in result["ptq"]["layers"]}, init).bound_model, dev)["accuracy"] for b in (8, 6, 4)}
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
                      "layers": {row["name"]: [row.get("weight_bits"), row.get("act_bits")] for row in report["layers"]},
                      "time_s": round(time.monotonic() - t, 1)}
        logging.info("%s: %s", name, {k: v for k, v in runs[name].items() if k != "layers"})
        result["qat"] = runs
        _write(result, args.out)
    result["settings"] = {k: getattr(args, k) for k in ("quant_epochs", "quant_lr", "distill", "weight_budget",
                                                       "act_budget", "batch_size", "threads", "seed")}
    result["total_s"] = round(time.monotonic() - start, 1)
    _write(result, args.out)
    return 0


def _write(result: dict[str, Any], out: str) -> None:
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(result, indent=2) + "\n")


def float_model(args: argparse.Namespace, data: SpeechCommandsDataModule) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Train (or reload from ``--work``) the float model."""
    space = build_space(PRESET)
    folder = Path(args.work) / "float"
    if args.reuse and (folder / "model.pt").is_file():
        model = build_model(load_arch(folder / "arch.json", space), space)
        model.load_state_dict(torch.load(folder / "model.pt", map_location="cpu"))
        return model, json.loads((folder / "arch.json").read_text()).get("training", {})
    seed_everything(args.seed)
    model = build_model(ARCH, space)
    start = time.monotonic()
    metrics = fit(model, data.train_dataloader(), data.val_dataloader(), epochs=args.float_epochs,
                  progress=not args.quiet, learning_rate=args.float_lr)
    training = {"epochs": args.float_epochs, "lr": args.float_lr, "seconds": round(time.monotonic() - start, 1),
                "val_acc": metrics.get("val_acc")}
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), folder / "model.pt")
    save_arch(ARCH, folder / "arch.json", preset=PRESET, training=training)
    return model, training


def summary(name: str, report: dict[str, Any]) -> dict[str, Any]:
    acc = report["accuracy"]
    return {
        "name": name, "avg_bits_per_weight": report["avg_bits_per_weight"],
        "avg_bits_per_activation": report["avg_bits_per_activation"], "size_bytes": report["size_bytes"],
        "accuracy": {k: v["after"] for k, v in acc.items()},
        "drop_points": {k: round(100 * (v["before"] - v["after"]), 2) for k, v in acc.items()},
        "time_s": report["time_s"],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--float-epochs", type=int, default=25)
    p.add_argument("--float-lr", type=float, default=0.05)
    p.add_argument("--quant-epochs", type=int, default=20, help="fine-tuning epochs of the learned bit-widths")
    p.add_argument("--fixed-epochs", type=int, default=10,
                   help="fine-tuning epochs of each fixed baseline (fewer, to stay within 10 minutes)")
    p.add_argument("--quant-lr", type=float, default=3e-3)
    p.add_argument("--distill", type=float, default=1.0, help="weight of the KL loss to the float logits")
    p.add_argument("--weight-budget", type=float, default=4.0)
    p.add_argument("--act-budget", type=float, default=4.0)
    p.add_argument("--budget-weight", type=float, default=1.0)
    p.add_argument("--fixed-bits", type=int, nargs="*", default=[4, 3, 2])
    p.add_argument("--real-test", default=REAL_TEST, help="real test folder ('' to skip)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a busy 2-core machine)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", default="runs/bench-quantize", help="float model and ONNX files")
    p.add_argument("--reuse", action="store_true", help="reuse the float model saved under --work")
    p.add_argument("--out", default="benchmarks/results/quantize.json")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--sensitivity", action="store_true", help="where the accuracy goes (PTQ per layer, recipes)")
    p.add_argument("--ptq-bits", type=int, nargs="*", default=[4, 3, 2])
    p.add_argument("--only", nargs="*", help="sensitivity: run only these recipe variants")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    torch.set_num_threads(args.threads)
    if args.sensitivity:
        if args.out == p.get_default("out"):
            args.out = "benchmarks/results/quantize_sensitivity.json"
        return sensitivity(args)
    start = time.monotonic()

    root = ensure_default_dataset(progress=not args.quiet)
    real = args.real_test if args.real_test and Path(args.real_test).is_dir() else None
    data = SpeechCommandsDataModule(root, batch_size=args.batch_size, seed=args.seed, real_test_root=real, cache=True)
    loaders = {"test": data.test_dataloader(), **({"real_test": data.real_test_dataloader()} if real else {})}
    model, training = float_model(args, data)
    prepared = prepare_model(model)
    float_acc = {"val": accuracy(prepared, data.val_dataloader()),
                 **{name: accuracy(prepared, loader) for name, loader in loaders.items()}}
    logging.info("float model: %s", float_acc)
    common = dict(lr=args.quant_lr, distill=args.distill, test_loader=loaders["test"],
                  extra_loaders={k: v for k, v in loaders.items() if k != "test"}, float_accuracy=float_acc,
                  progress=not args.quiet)

    runs: dict[str, dict[str, Any]] = {}
    seed_everything(args.seed)
    learned = quantize_model(model, data.train_dataloader(), data.val_dataloader(), method="trained", bits=8,
                             weight_budget_bits=args.weight_budget, act_budget_bits=args.act_budget,
                             budget_weight=args.budget_weight, epochs=args.quant_epochs,
                             out_dir=Path(args.work) / "trained", **common)
    runs["trained"] = learned.report
    check = loaders.get("real_test", loaders["test"])
    agreement = {"on": "real_test" if real else "test", **onnx_agreement(learned.model, learned.onnx_path, check)}
    logging.info("ONNX agreement: %s", agreement)
    diverged = {}
    for bits in args.fixed_bits:
        seed_everything(args.seed)
        try:
            runs[f"fixed{bits}"] = quantize_model(model, data.train_dataloader(), data.val_dataloader(),
                                                  method="fixed", bits=bits, epochs=args.fixed_epochs,
                                                  out_dir=Path(args.work) / f"fixed{bits}", **common).report
        except TrainingDiverged as err:  # a result too: NNI's QAT does not train at this bit-width
            logging.warning("fixed %d bits: %s", bits, err)
            diverged[f"fixed{bits}"] = {"name": f"fixed{bits}", "bits": bits, "diverged": str(err)}

    rows = [summary(name, report) for name, report in runs.items()] + list(diverged.values())
    t = runs["trained"]
    bits_ok = max(t["avg_bits_per_weight"], t["avg_bits_per_activation"]) <= 4.0
    target = {"max_avg_bits": 4.0, "max_drop_points": 0.5,
              "met": {k: bool(bits_ok and d <= 0.5) for k, d in rows[0]["drop_points"].items() if k != "val"}}
    result = {
        "benchmark": "quantize", "preset": PRESET, "arch": ARCH, "dataset": str(root),
        "clips": {"train": len(data.dataset("training")), "val": len(data.dataset("validation")),
                  "test": len(data.dataset("testing")),
                  **({"real_test": len(data.dataset("real_test"))} if real else {})},
        "float": {"accuracy": float_acc, "parameters": sum(p.numel() for p in prepared.parameters()),
                  "size_bytes": 4 * sum(p.numel() for p in prepared.parameters()), "training": training},
        "settings": {k: getattr(args, k) for k in ("quant_epochs", "fixed_epochs", "quant_lr", "distill",
                                                  "weight_budget", "act_budget", "budget_weight", "fixed_bits",
                                                  "batch_size", "threads", "seed")},
        "summary": rows, "target": target,
        "onnx": {**agreement, "path": str(learned.onnx_path), "bytes": learned.report["onnx"]["bytes"]},
        "trained_layers": t["layers"], "definitions": DEFINITIONS,
        "machine": {"python": sys.version.split()[0], "torch": torch.__version__, "platform": platform.platform()},
        "total_s": round(time.monotonic() - start, 1),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    for row in rows:
        if "diverged" in row:
            print(f"{row['name']:>8}: diverged ({row['diverged']})")
            continue
        print(f"{row['name']:>8}: {row['avg_bits_per_weight']:.2f} b/w {row['avg_bits_per_activation']:.2f} b/a "
              f"{row['size_bytes']:>6} B  acc {row['accuracy']}  drop {row['drop_points']}")
    print(f"float: {float_acc}; ONNX agreement {agreement['agreement']:.4f} on {agreement['clips']} clips; "
          f"target met: {target['met']}; {result['total_s']:.0f} s -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
