"""Benchmark of quantization on real speech: accuracy against average bits, learned bit-widths vs NNI's fixed QAT/LSQ.

Protocol (``/work/shared/data/README.md``, limited real speech): the float model is pre-trained on the
synthesized dataset (``ensure_default_dataset``), fine-tuned on the training part of ``dev``
(speaker-disjoint from its validation part) and then (``--float-finetune``, the default) given the
quantizers' fine-tuning recipe without quantizers (``--float-finetune-epochs``);
quantization-aware fine-tuning runs on the same data; learning rates are tuned on the validation part of
``dev``; accuracies are reported on ``heldout`` (never trained or tuned on). Drops count from the float
control of each seed (the float model given the quantizers' epochs of that recipe: what quantization alone
costs). That float model still gains from the control's training, the control no longer does
(``quantize_sensitivity.json``, ``converged_start_experiment``).

1. Learning rate of each method (learned bit-widths, NNI ``QATQuantizer``, NNI ``LsqQuantizer``)
   tuned on dev-val at 4 bits (``--lrs``; learned: ``--learned-lrs``, by default one rate, chosen in
   recipe experiments on dev-val), then used at every budget.
2. Curve (``--curve-seeds``): learned bit-widths at budgets ``--budgets`` (bits per weight = bits
   per activation), NNI QAT and LSQ at ``--fixed-bits`` everywhere; per-layer bits of the learned runs.
3. Seeds (``--seeds``): learned and LSQ at 4 and 3 bits and the float control, for the verdict.
4. ``--synthesized``: the synthesized-only float model fine-tuned on synthesized speech at 4 bits
   (learned and LSQ), reported on heldout.

Results are written after every run; ``--resume`` continues an interrupted invocation, ``--append
--add-runs`` adds runs (e.g. another learned variant) to a finished one.

Where the accuracy goes (PTQ per layer and target, recipe variants): ``benchmarks/quantize_sensitivity.py``.

    python benchmarks/quantize.py [--quick] [--reuse] [--seeds 0 1 2] [--curve-seeds 0] [--synthesized]
    # quantize.json ran as parallel jobs, each --append --add-runs METHOD:BITS:SEED to a copy, merged; the
    # recipe before it (quantize_ft12_e24.json, the curve at every budget): --float-finetune-epochs 12 --quant-epochs 24
"""
from __future__ import annotations

import argparse
import inspect
import json
import logging
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch.utils.data import ConcatDataset, DataLoader, Subset

from nni_kws.data.datamodule import SpeechCommandsDataModule
from nni_kws.data.listed import ListedClips, read_list, speaker_of
from nni_kws.data.paths import NOISE_DIR, real_speech, shared_data_dir
from nni_kws.data.synth import ensure_default_dataset
from nni_kws.quant import DEFINITIONS, TrainingDiverged, float_fine_tune, prepare_model, quantize_model, tune_lr
from nni_kws.space import build_model, build_space
from nni_kws.training import accuracy, fit, seed_everything

#: The benchmarked architecture (preset 'small'): SincConv front end, two blocks per stage.
ARCH = {"frontend": "sinc", "s0_depth": 2, "s0_i0_e": 2, "s0_i0_k": 5, "s0_i1_e": 2, "s0_i1_k": 5,
        "s1_depth": 2, "s1_i0_e": 2, "s1_i0_k": 5, "s1_i1_e": 2, "s1_i1_k": 5,
        "s2_depth": 2, "s2_i0_e": 2, "s2_i0_k": 5, "s2_i1_e": 2, "s2_i1_k": 5}
PRESET = "small"
VAL_FRACTION = 0.2  # dev speakers held apart for validation
#: Fixed quantizers: name -> NNI algorithm.
FIXED = {"qat": "qat", "lsq": "lsq"}
#: The benchmark's fine-tuning recipe (longer than the demo's ``nni-kws quantize`` defaults, same kind), chosen
#: on dev-val at 3 bits, seed 0: dev's training part plus the synthesized clips (``--mix-synth``;
#: quantize_sensitivity.json: recipe_experiments_dev_v3), 48 epochs, after the float model is given 36 epochs of
#: that fine-tuning first (``--float-finetune``): a float model trained longer and a longer quantization-aware
#: fine-tuning each narrowed the 3-bit dev-val drop by less than a point, together by 1.85
#: (quantize_sensitivity.json: converged_start_48_epochs_experiment). Before: 24 epochs after 12
#: (quantize_ft12_e24.json), 12 after 12 (quantize_e12.json).
#: Learned: one rate (``--learned-lrs`` to tune several); fixed: tuned. Step sizes learn 20x faster than the
#: weights' 3e-3, i.e. at 6e-2: the rate the library default (``nni_kws.quant.QPARAM_LR_SCALE``, 60x its weights'
#: 1e-3) gives too.
QUANT_EPOCHS, FLOAT_FINETUNE_EPOCHS, BN_BATCHES = 48, 36, 0
RECIPE_QPARAM_LR_SCALE, LEARNED_LRS, LRS = 20.0, [3e-3], [3e-4, 1e-3, 3e-3]
#: Learned bit-widths: name -> ``quantize_model`` overrides; the plan runs 'learned' (the others only through
#: --add-runs); all use the lr tuned for 'learned' unless they set their own, and the verdict takes, per budget,
#: the one with the better dev-val accuracy (mean over the seeds where a variant ran them all, else the first seed).
#: 'learned' takes ``quantize_model``'s defaults: since quantize_e24_fill.json they fill the budget
#: (``fill_budget``: bit-widths that still fit are raised after the projection), and since the freeze runs of
#: quantize_ft12_e24.json they freeze the bit-widths after the first quarter of the steps (``freeze_bits``: levels
#: pinned, q_max = n·d).
#: Every other variant ran as before those results: projected after every step of the last 10 % (``UNFROZEN``)
#: and, unless it says so, without the fill. 'learned_nofreeze': filled, not frozen (the 'learned' rows from
#: quantize_e24_fill.json until the freeze); 'learned_nofill': neither (the 'learned' rows before);
#: 'learned_slow': the rates of the 6-epoch recipe (quantize_e6.json); 'learned_unscaled': step sizes and
#: bit-widths at the weights' rate, as NNI's LSQ trains its scales (the x20 rate was chosen at 3-4 bits);
#: 'learned_distill3': three times the weight of the KL loss to the float logits; 'learned_freeze50': filled and
#: frozen after half the steps. 3-bit diagnosis in quantize_ft12_e24.json: 'learned_min3' (every tensor at 3 bits at the
#: end, ``min_bits`` = the budget) and 'learned_pinned3' (every tensor pinned at 3 bits from the first step: LSQ's
#: kind of grid; it ran every seed at 3 bits); 'learned_pinned3_weights' / '_acts': only the weights / only the
#: activations pinned at the budget, the others at 8 bits (over the budget, so never chosen: where the 3-bit loss is).
UNFROZEN = {"freeze_bits": False, "hard_budget_fraction": 0.1}
PINNED3 = {"min_bits": 3, "init_bits": "budget", "freeze_bits": True, "hard_budget_fraction": 1.0}
LEARNED = {"learned": {"init_bits": "sensitivity"}, **{
    name: {"init_bits": "sensitivity", "fill_budget": False, **UNFROZEN, **overrides} for name, overrides in {
        "learned_nofill": {}, "learned_budget": {"init_bits": "budget"},
        "learned_slow": {"lr": 1e-3, "qparam_lr_scale": 60.0}, "learned_unscaled": {"qparam_lr_scale": 1.0},
        "learned_distill3": {"distill": 3.0}, "learned_nofreeze": {"fill_budget": True},
        "learned_freeze50": {"fill_budget": True, "freeze_bits": True, "hard_budget_fraction": 0.5},
        "learned_min3": {"min_bits": 3, "init_bits": "budget"},
        "learned_pinned3": PINNED3,
        "learned_pinned3_weights": {**PINNED3, "act_budget_bits": None},
        "learned_pinned3_acts": {**PINNED3, "weight_budget_bits": None}}.items()}}
#: ``quantize_model``'s defaults, which the options of the same name take (one home for them).
LIBRARY = {name: p.default for name, p in inspect.signature(quantize_model).parameters.items()}
#: The control: the float model given the quantizers' fine-tuning without quantizers (``float_fine_tune``: same
#: data, epochs, weight rate and distillation), so that drops against it count quantization alone; its rows
#: carry ``bits`` 32.
FLOAT_CONTROL, FLOAT_BITS = "float", 32


#: A float model and the record of its training.
Trained = tuple[torch.nn.Module, dict[str, Any]]


def saved_or_trained(args: argparse.Namespace, name: str, settings: dict[str, Any], fresh: torch.nn.Module,
                     train: Callable[[], Trained]) -> Trained:
    """A float model kept in ``<--work>/<name>``: with ``--reuse``, ``fresh`` given the saved weights if they were
    made with the same ``settings``; else ``train()`` (the model and its training record), saved there with its
    settings. A model made with other settings is refused, not reused silently."""
    folder = Path(args.work) / name
    if args.reuse and (folder / "model.pt").is_file():
        stored = json.loads((folder / "settings.json").read_text()) if (folder / "settings.json").is_file() else {}
        changed = {k: {"saved": stored.get(k), "now": v} for k, v in settings.items() if stored.get(k) != v}
        if changed:
            raise SystemExit(f"{folder}: made with other settings {json.dumps(changed)}; leave out --reuse "
                             "or use another --work")
        fresh.load_state_dict(torch.load(folder / "model.pt", map_location="cpu"))
        return fresh, json.loads((folder / "training.json").read_text())
    model, training = train()
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), folder / "model.pt")
    for file, content in (("settings.json", settings), ("training.json", training)):
        (folder / file).write_text(json.dumps(content, indent=2) + "\n")
    return model, training


def pretraining_settings(args: argparse.Namespace) -> dict[str, Any]:
    return {"arch": args.arch, "preset": args.preset, "epochs": args.float_epochs, "lr": args.float_lr,
            "seed": args.seed, "batch_size": args.batch_size}


def pretrained_model(args: argparse.Namespace) -> Trained:
    """The float model pre-trained on synthesized speech (``saved_or_trained``: ``<--work>/float``)."""
    space = build_space(args.preset)

    def train() -> Trained:
        data = SpeechCommandsDataModule(ensure_default_dataset(progress=not args.quiet), batch_size=args.batch_size,
                                        seed=args.seed, cache=True)
        seed_everything(args.seed)
        model = build_model(args.arch, space)
        start = time.monotonic()
        metrics = fit(model, data.train_dataloader(), data.val_dataloader(), epochs=args.float_epochs,
                      progress=not args.quiet, learning_rate=args.float_lr)
        return model, {"data": "synthesized", "epochs": args.float_epochs, "lr": args.float_lr,
                       "seconds": round(time.monotonic() - start, 1), "val_acc": metrics.get("val_acc")}

    return saved_or_trained(args, "float", pretraining_settings(args), build_model(args.arch, space), train)


def real_data(args: argparse.Namespace, seed: int) -> SpeechCommandsDataModule:
    """dev (training part, augmented) / dev-val (held-apart speakers) / heldout, as list-defined subsets."""
    return SpeechCommandsDataModule(args.real_test, batch_size=args.batch_size, seed=seed, cache=True,
                                    train_list=args.train_list, test_list=args.test_list,
                                    noise_dir=shared_data_dir(NOISE_DIR), val_fraction=args.val_fraction)


def synth_data(args: argparse.Namespace, seed: int, preset: str | None = None) -> SpeechCommandsDataModule:
    """The synthesized dataset the float model was pre-trained on (train / val splits), or that of ``preset``."""
    return SpeechCommandsDataModule(ensure_default_dataset(progress=not args.quiet, preset=preset),
                                    batch_size=args.batch_size, seed=seed, cache=True)


def synthesized_protocol(args: argparse.Namespace, tuned: dict[str, Any], earlier: dict[str, Any]) -> dict[str, Any]:
    """Quantize the synthesized-only float model on synthesized speech at 4 bits (learned and LSQ, first
    seed, the rates tuned on dev); report on heldout (real speech never seen in training)."""
    model, _ = pretrained_model(args)
    prepared = prepare_model(model)
    data = synth_data(args, args.seed)
    float_acc = {"val": accuracy(prepared, data.val_dataloader()),
                 "test": accuracy(prepared, listed_loader(args.real_test, args.test_list, 256))}
    done = {(r["method"], r["bits"]): r for r in earlier.get("runs", [])}
    runs = [done.get((m, 4)) or run(m, 4, tuned[m]["lr"], args.seeds[0], model, float_acc, args, synthesized=True)
            for m in ("learned", "lsq")]
    return {"protocol": "fine-tune on the synthesized dataset (training split), report on heldout; 'dev_val' "
                        "in the rows is the synthesized validation split",
            "float": {"accuracy": {"synth_val": float_acc["val"], "heldout": float_acc["test"]}}, "runs": runs}


def dev_model(args: argparse.Namespace, data: SpeechCommandsDataModule) -> Trained:
    """The pre-trained float model fine-tuned on dev's training part (``<--work>/float-dev``), then with
    ``--float-finetune`` given the float control's fine-tuning (``<--work>/float-dev-finetuned``:
    ``float_fine_tune`` on the quantizers' data and rate, ``--float-finetune-epochs``): the start of every
    quantized and float-control run."""
    model, pretraining = pretrained_model(args) if args.float_epochs else (None, {})
    fresh = build_model(args.arch, build_space(args.preset))
    settings = {"pretraining": pretraining_settings(args) if args.float_epochs else None,
                "train_list": args.train_list, "val_fraction": args.val_fraction, "epochs": args.dev_epochs,
                "lr": args.dev_lr}

    def train() -> Trained:
        seed_everything(args.seed)  # before building: without pre-training (--float-epochs 0) the seed sets the init
        trained = model if model is not None else build_model(args.arch, build_space(args.preset))
        start = time.monotonic()
        metrics = fit(trained, data.train_dataloader(), data.val_dataloader(), epochs=args.dev_epochs,
                      progress=not args.quiet, learning_rate=args.dev_lr)
        return trained, {"pretraining": pretraining, "data": "dev (training part)", "epochs": args.dev_epochs,
                         "lr": args.dev_lr, "seconds": round(time.monotonic() - start, 1),
                         "val_acc": metrics.get("val_acc")}

    model, training = saved_or_trained(args, "float-dev", settings, fresh, train)
    if not args.float_finetune:
        return model, training
    finetune = {"epochs": args.float_finetune_epochs, "lr": args.learned_lrs[0], "distill": args.distill,
                "mix_synth": args.mix_synth, "mix_preset": args.mix_preset}

    def train_more() -> Trained:
        seed_everything(args.seed)
        start = time.monotonic()
        tuned = float_fine_tune(model, training_loader(args, data, args.seed), epochs=args.float_finetune_epochs,
                                lr=args.learned_lrs[0], distill=args.distill, progress=not args.quiet)
        return tuned, {"before": training,
                       "float_fine_tune": {**finetune, "seconds": round(time.monotonic() - start, 1)}}

    return saved_or_trained(args, "float-dev-finetuned", {"dev": settings, **finetune}, prepare_model(model),
                            train_more)


def training_loader(args: argparse.Namespace, data: SpeechCommandsDataModule, seed: int) -> DataLoader:
    """The fine-tuning data: dev's training part, plus (``--mix-synth``) the synthesized clips the float model
    was pre-trained on, or those of the synthesis preset ``--mix-preset``."""
    if not args.mix_synth:
        return data.train_dataloader()
    synth = synth_data(args, seed, args.mix_preset).dataset("training")
    return data.loader(ConcatDataset([data.dataset("training"), synth]), shuffle=True)


def quantize_kwargs(method: str, bits: float, args: argparse.Namespace) -> dict[str, Any]:
    """``quantize_model`` arguments of a method at ``bits`` (a budget for the learned bit-widths)."""
    common = dict(epochs=args.quant_epochs, distill=args.distill, progress=not args.quiet,
                  input_bits=args.input_bits or None, bn_batches=args.bn_batches,
                  freeze_bn_fraction=args.freeze_bn_fraction)
    if method in LEARNED:
        return {**dict(method="trained", bits=8, weight_budget_bits=bits, act_budget_bits=bits,
                       qparam_lr_scale=args.qparam_lr_scale, freeze_bits=args.freeze_bits,
                       hard_budget_fraction=args.hard_budget_fraction, **common), **LEARNED[method]}
    return dict(method="fixed", bits=int(bits), fixed_algorithm=FIXED[method], **common)


def tuned_as(method: str) -> str:
    """Whose tuned learning rate a method uses: the learned variants and the float control use 'learned''s."""
    return "learned" if method in (*LEARNED, FLOAT_CONTROL) else method


def run(method: str, bits: float, lr: float, seed: int, model: torch.nn.Module, float_acc: dict[str, float],
        args: argparse.Namespace, synthesized: bool = False) -> dict[str, Any]:
    """One quantization run; the row of the results (heldout and dev-val accuracies, average bits, layers).
    ``synthesized``: fine-tune on the synthesized dataset (its validation split stands in for dev-val)."""
    data = synth_data(args, seed) if synthesized else real_data(args, seed)
    heldout = listed_loader(args.real_test, args.test_list, 256) if synthesized else data.test_dataloader()
    train = data.train_dataloader() if synthesized else training_loader(args, data, seed)
    seed_everything(seed)
    start = time.monotonic()
    if method == FLOAT_CONTROL:
        tuned = float_fine_tune(model, train, epochs=args.quant_epochs, lr=lr, distill=args.distill,
                                progress=not args.quiet)
        acc = {"dev_val": accuracy(tuned, data.val_dataloader()), "heldout": accuracy(tuned, heldout)}
        row = {"method": method, "bits": bits, "seed": seed, "lr": lr, "accuracy": acc,
               "drop_points_heldout": round(100 * (float_acc["test"] - acc["heldout"]), 2),
               "time_s": round(time.monotonic() - start, 1)}
        logging.info("%s", row)
        return row
    kwargs = quantize_kwargs(method, bits, args)
    lr = kwargs.pop("lr", lr)
    row = {"method": method, "bits": bits, "seed": seed, "lr": lr}
    try:
        report = quantize_model(model, train, data.val_dataloader(), lr=lr,
                                test_loader=heldout, float_accuracy=float_acc, **kwargs).report
    except TrainingDiverged as err:
        row["diverged"] = str(err)
        return row
    acc = report["accuracy"]
    row.update({
        "avg_bits_per_weight": report["avg_bits_per_weight"],
        "avg_bits_per_activation": report["avg_bits_per_activation"],
        "within_bits": max(report["avg_bits_per_weight"], report["avg_bits_per_activation"]) <= bits + 1e-9,
        "accuracy": {"dev_val": acc["val"]["after"], "heldout": acc["test"]["after"]},
        "drop_points_heldout": round(100 * (acc["test"]["before"] - acc["test"]["after"]), 2),
        "size_bytes": report["size_bytes"], "time_s": round(time.monotonic() - start, 1)})
    if method in LEARNED:
        row["layers"] = {layer["name"]: {"weight_bits": layer.get("weight_bits"), "act_bits": layer.get("act_bits")}
                         for layer in report["layers"]}
        row["budget_met"] = report.get("budget_met")
    logging.info("%s", {k: v for k, v in row.items() if k != "layers"})
    return row


def mean_drop(rows: list[dict[str, Any]], method: str, bits: float,
              reference: dict[int, float] | None = None) -> dict[str, Any] | None:
    """Mean heldout drop (points) over seeds of ``method`` at ``bits``, counting only runs within the bits: from
    the float model, or from ``reference`` (heldout accuracy per seed: the float control; seeds without one are
    left out)."""
    picked = [r for r in rows if r["method"] == method and r["bits"] == bits and "diverged" not in r
              and (reference is None or r["seed"] in reference)]
    if not picked:
        return None
    drop = {r["seed"]: r["drop_points_heldout"] if reference is None
            else round(100 * (reference[r["seed"]] - r["accuracy"]["heldout"]), 2) for r in picked}
    ok = [r["seed"] for r in picked if r["within_bits"]]
    return {"mean": round(statistics.fmean(drop[s] for s in ok), 2) if ok else None, "per_seed": drop,
            "all_within_bits": len(ok) == len(picked), "seeds": len(picked)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="seconds-long smoke run (tiny model, few clips)")
    p.add_argument("--float-epochs", type=int, default=25, help="pre-training epochs on synthesized speech (0: none)")
    p.add_argument("--float-lr", type=float, default=0.05)
    p.add_argument("--dev-epochs", type=int, default=10, help="float fine-tuning epochs on dev")
    p.add_argument("--dev-lr", type=float, default=0.02)
    p.add_argument("--quant-epochs", type=int, default=QUANT_EPOCHS, help="quantization-aware fine-tuning epochs")
    p.add_argument("--mix-synth", action=argparse.BooleanOptionalAction, default=True,
                   help="fine-tune on dev's training part plus the synthesized training split that the float model "
                   "was pre-trained on (distilled from the float model like the dev clips)")
    p.add_argument("--mix-preset", help="--mix-synth: the synthesis preset of the mixed-in clips (default: the "
                   "float model's pre-training set)")
    p.add_argument("--float-finetune", action=argparse.BooleanOptionalAction, default=True,
                   help="give the float model the float control's fine-tuning before quantizing it")
    p.add_argument("--float-finetune-epochs", type=int, default=FLOAT_FINETUNE_EPOCHS,
                   help="--float-finetune: its epochs (the float control itself gets --quant-epochs)")
    p.add_argument("--bn-batches", type=int, default=BN_BATCHES,
                   help="training batches that re-estimate BatchNorm statistics after fine-tuning (0: none)")
    p.add_argument("--freeze-bn-fraction", type=float, default=0.0,
                   help="last fraction of the fine-tuning steps with BatchNorm statistics frozen (0: none)")
    p.add_argument("--freeze-bits", action=argparse.BooleanOptionalAction, default=LIBRARY["freeze_bits"],
                   help="learned: keep the bit-widths once projected to the budget (quantize_model(freeze_bits))")
    p.add_argument("--hard-budget-fraction", type=float, default=LIBRARY["hard_budget_fraction"],
                   help="learned: last fraction of the steps under the budget projection")
    p.add_argument("--qparam-lr-scale", type=float, default=RECIPE_QPARAM_LR_SCALE,
                   help="learned: learning-rate multiplier of step sizes and ranges relative to the weights")
    p.add_argument("--tune-epochs", type=int, default=1, help="epochs of the learning-rate tuning runs")
    p.add_argument("--lrs", type=float, nargs="*", default=LRS, help="fixed quantizers: learning rates tried")
    p.add_argument("--learned-lrs", type=float, nargs="*", default=LEARNED_LRS,
                   help="learned bit-widths: learning rates tried (one: used without tuning runs)")
    p.add_argument("--resume", action="store_true",
                   help="keep the tuned rates and the finished runs of --out (same settings) and run the rest")
    p.add_argument("--note", action="append", default=[], help="a line for the JSON's notes (repeatable)")
    p.add_argument("--append", action="store_true",
                   help="add --add-runs (and with --synthesized, that protocol) to the results in --out")
    p.add_argument("--add-runs", nargs="*", default=[], metavar="METHOD:BITS:SEED",
                   help=f"with --append: runs to add (methods: {', '.join([*LEARNED, *FIXED])})")
    p.add_argument("--tuned-from", help="reuse the learning rates tuned by an earlier run (its JSON)")
    p.add_argument("--distill", type=float, default=1.0, help="weight of the KL loss to the float logits")
    p.add_argument("--input-bits", type=int, default=0,
                   help="bits of the raw waveform at the first layer (default 0: float, the microphone's 16-bit PCM)")
    p.add_argument("--budgets", type=float, nargs="*", default=[8, 6, 4, 3, 2.5], help="learned: bit budgets")
    p.add_argument("--fixed-bits", type=int, nargs="*", default=[8, 6, 4, 3, 2], help="QAT/LSQ bit-widths")
    p.add_argument("--fixed", nargs="*", default=list(FIXED), choices=list(FIXED), help="fixed quantizers")
    p.add_argument("--curve-seeds", type=int, nargs="*", default=[0])
    p.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2], help="seeds of the verdict runs")
    add_protocol_args(p)
    p.add_argument("--val-fraction", type=float, default=VAL_FRACTION, help="dev speakers held apart for validation")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a busy 2-core machine)")
    p.add_argument("--seed", type=int, default=0, help="seed of the float model")
    p.add_argument("--work", default="runs/bench-quantize", help="float models")
    p.add_argument("--reuse", action="store_true", help="reuse the float models saved under --work")
    p.add_argument("--out", default="benchmarks/results/quantize.json")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--synthesized", action="store_true",
                   help="also the synthesized-data protocol at 4 bits (learned and LSQ, first seed)")
    args = protocol_defaults(p.parse_args(argv))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    torch.set_num_threads(args.threads)
    args.arch, args.preset = ARCH, PRESET
    if args.quick:
        quick(args)
    return benchmark(args)


def quick(args: argparse.Namespace) -> None:
    """Shrink everything to a seconds-long run: tiny preset, 16 dev clips per class (distinct speakers, so
    both sides of the speaker split have every class) and 3 heldout ones, 1 epoch, 4 and 3 bits."""
    from nni_kws.space import random_arch

    space = build_space("tiny")
    args.preset, args.arch = "tiny", {**random_arch(space, 0), "frontend": "sinc"}
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    for name, n in (("train_list", 16), ("test_list", 3)):  # n clips of distinct speakers per class folder
        per_class: dict[str, dict[str, str]] = {}
        for rel in read_list(getattr(args, name)):
            per_class.setdefault(rel.split("/")[0], {}).setdefault(speaker_of(rel), rel)
        small = work / f"quick-{name}.txt"
        small.write_text("\n".join(r for rels in per_class.values() for r in list(rels.values())[:n]) + "\n")
        setattr(args, name, str(small))
    args.float_epochs, args.dev_epochs, args.quant_epochs, args.tune_epochs, args.float_finetune_epochs = 0, 1, 1, 1, 1
    args.mix_synth = False  # it would synthesize the default dataset (minutes) for a seconds-long run
    args.lrs, args.budgets, args.fixed_bits, args.seeds, args.curve_seeds = [3e-3], [4, 3], [4], [0], [0]
    args.val_fraction, args.batch_size, args.reuse, args.bn_batches = 0.3, 16, False, 2


class ResultFile:
    """The benchmark's JSON (``--out``): ``result`` as it grows, over ``earlier``, the result that ``--resume`` or
    ``--append`` continues; rewritten after every run."""

    def __init__(self, out: Path, result: dict[str, Any], earlier: dict[str, Any], start: float) -> None:
        self.out, self.result, self.earlier, self.start = out, result, earlier, start

    def save(self) -> None:
        """Write ``result``; its total_s: this invocation's seconds plus those of the one it continues."""
        self.result["total_s"] = round(self.earlier.get("total_s", 0) + time.monotonic() - self.start, 1)
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.out.write_text(json.dumps(self.result, indent=2) + "\n")

    def add_row(self, rows: list[dict[str, Any]], row: dict[str, Any], args: argparse.Namespace) -> None:
        """Append ``row`` to ``rows``, the runs so far, and save them with their verdict."""
        rows.append(row)
        self.result["runs"], self.result["verdict"] = rows, verdict(rows, args)
        self.save()


def header(args: argparse.Namespace, data: SpeechCommandsDataModule, prepared: torch.nn.Module,
           training: dict[str, Any], float_acc: dict[str, float]) -> dict[str, Any]:
    """The result's protocol, clip counts, float model and settings (what a resumed run must match)."""
    return {
        "benchmark": "quantize", "protocol": "limited real speech: fine-tune on dev (training part), tune on "
        "dev-val, report on heldout", "quick": args.quick, "preset": args.preset, "arch": args.arch,
        "clips": {"dev_train": len(data.dataset("training")), "dev_val": len(data.dataset("validation")),
                  "heldout": len(data.dataset("testing"))},
        "float": {"accuracy": {"dev_val": float_acc["val"], "heldout": float_acc["test"]},
                  "parameters": sum(p.numel() for p in prepared.parameters()), "training": training},
        "settings": {k: getattr(args, k) for k in (
            "quant_epochs", "mix_synth", "mix_preset", "float_finetune", "float_finetune_epochs", "bn_batches",
            "freeze_bn_fraction", "qparam_lr_scale", "freeze_bits", "hard_budget_fraction", "tune_epochs",
            "learned_lrs", "lrs", "distill", "input_bits", "budgets", "fixed_bits", "fixed", "curve_seeds", "seeds",
            "batch_size", "val_fraction", "threads")},
        "definitions": DEFINITIONS,
        **({"notes": args.note} if args.note else {}),
    }


def resumed(args: argparse.Namespace, out: Path, result: dict[str, Any]) -> dict[str, Any]:
    """With ``--resume``, the earlier result in ``out`` (refused if made with other settings), its notes and
    synthesized protocol carried into ``result``; else nothing."""
    if not (args.resume and out.is_file()):
        return {}
    earlier = json.loads(out.read_text())
    changed = {k: (earlier.get("settings", {}).get(k), v) for k, v in result["settings"].items()
               if k not in ("curve_seeds", "seeds", "budgets", "fixed_bits", "fixed")
               and earlier.get("settings", {}).get(k) != v}
    if changed:
        raise SystemExit(f"{out}: --resume with other settings {changed}; use another --out")
    if "added_runs" in earlier.get("settings", {}):
        result["settings"]["added_runs"] = earlier["settings"]["added_runs"]
    result.update({k: earlier[k] for k in ("notes", "synthesized") if k in earlier and k not in result})
    return earlier


def append_runs(args: argparse.Namespace, file: ResultFile, model: torch.nn.Module, float_acc: dict[str, float]) -> int:
    """``--append``: the ``--add-runs`` (and with ``--synthesized``, that protocol) added to the result in
    ``--out``, with its tuned learning rates."""
    file.earlier = json.loads(file.out.read_text())
    result = file.result
    result.update({k: v for k, v in file.earlier.items() if k in ("lr_tuning", "settings", "runs") or k not in result})
    result["settings"]["added_runs"] = result["settings"].get("added_runs", []) + args.add_runs
    rows = list(result.get("runs", []))
    for spec in args.add_runs:
        method, bits, seed = spec.split(":")
        lr = result["lr_tuning"][tuned_as(method)]["lr"]
        file.add_row(rows, run(method, float(bits) if "." in bits else int(bits), lr, int(seed), model, float_acc,
                               args), args)
    result["verdict"] = verdict(rows, args)
    file.save()
    if args.synthesized:
        result["synthesized"] = synthesized_protocol(args, result["lr_tuning"], file.earlier.get("synthesized", {}))
        file.save()
    return 0


def tune_rates(args: argparse.Namespace, model: torch.nn.Module, file: ResultFile) -> dict[str, Any]:
    """Each method's learning rate, tuned on dev-val at 4 bits (never on heldout); kept from ``--tuned-from`` or
    the run being resumed, and given without tuning where one rate is listed."""
    tuned: dict[str, Any] = {}

    def record() -> None:  # after every tuning, so an interrupted benchmark resumes with the rates found
        file.result["lr_tuning"] = {"at_bits": 4, "epochs": args.tune_epochs, "on": "dev-val", **tuned}
        file.save()

    previous = json.loads(Path(args.tuned_from).read_text()).get("lr_tuning", {}) if args.tuned_from else {}
    previous = {**previous, **file.earlier.get("lr_tuning", {})}
    for method in ["learned", *args.fixed]:
        if method in previous:  # tuned by an earlier (interrupted) run of the same benchmark
            tuned[method] = previous[method]
            continue
        lrs = args.learned_lrs if method == "learned" else args.lrs
        if len(lrs) == 1:
            tuned[method] = {"lr": lrs[0], "dev_val_accuracy_per_lr": None}
            continue
        data = real_data(args, args.seed)
        seed_everything(args.seed)
        kwargs = {**quantize_kwargs(method, 4, args), "epochs": args.tune_epochs}
        best, scores = tune_lr(model, data.train_dataloader(), data.val_dataloader(), lrs, **kwargs)
        tuned[method] = {"lr": best, "dev_val_accuracy_per_lr": {str(k): v for k, v in scores.items()}}
        logging.info("%s: tuned lr %s (%s)", method, best, scores)
        record()
    record()
    return tuned


def run_plan(args: argparse.Namespace) -> tuple[list[tuple[str, float, int]], list[tuple[str, float, int]]]:
    """``(method, bits, seed)`` of the runs, in order, and of the QAT curve that runs after the synthesized protocol.

    Seed 0 of the verdict runs first, then the learned and LSQ curve, then the other seeds of the verdict runs, so
    that an interrupted benchmark still has a verdict and a curve.
    """
    verdict_runs = [(m, b) for m, b in (("learned", 4), ("lsq", 4), ("learned", 3), ("lsq", 3))
                    if m == "learned" or m in args.fixed]
    seed_runs = [*verdict_runs, (FLOAT_CONTROL, FLOAT_BITS)]  # what every seed of the verdict runs
    plan = [(m, b, s) for s in args.seeds[:1] for m, b in seed_runs]
    curve = [("learned", args.budgets), *[(f, args.fixed_bits) for f in args.fixed]]
    plan += [(m, b, s) for s in args.curve_seeds for m, bits in curve if m != "qat"
             for b in bits if (m, b, s) not in plan]
    plan += [(m, b, s) for s in args.seeds[1:] for m, b in seed_runs if (m, b, s) not in plan]
    qat = [(m, b, s) for s in args.curve_seeds for m, bits in curve if m == "qat" for b in bits]
    return plan, qat


def print_summary(rows: list[dict[str, Any]], float_acc: dict[str, float], result: dict[str, Any], out: Path) -> None:
    """One line per run, and the verdict's keys."""
    for r in rows:
        if "diverged" in r:
            print(f"{r['method']:>7} {r['bits']:>4} seed {r['seed']}: diverged")
            continue
        if r["method"] == FLOAT_CONTROL:
            print(f"{r['method']:>7} {r['bits']:>4} seed {r['seed']}: heldout {r['accuracy']['heldout']:.4f} (control)")
            continue
        print(f"{r['method']:>7} {r['bits']:>4} seed {r['seed']}: {r['avg_bits_per_weight']:.2f} b/w "
              f"{r['avg_bits_per_activation']:.2f} b/a heldout {r['accuracy']['heldout']:.4f} "
              f"drop {r['drop_points_heldout']:+.2f}")
    keys = ("drop_pts_at_4bits", "drop_pts_at_3bits", "fixed_lsq_drop_pts_at_4bits")
    print(f"float heldout {float_acc['test']:.4f}; verdict {json.dumps({k: result['verdict'][k] for k in keys})} "
          f"-> {out}")


def benchmark(args: argparse.Namespace) -> int:
    start = time.monotonic()
    data = real_data(args, args.seed)
    model, training = dev_model(args, data)
    prepared = prepare_model(model)
    float_acc = {"val": accuracy(prepared, data.val_dataloader()), "test": accuracy(prepared, data.test_dataloader())}
    logging.info("float model: dev-val %.4f heldout %.4f", float_acc["val"], float_acc["test"])
    out = Path(args.out)
    result = header(args, data, prepared, training, float_acc)
    file = ResultFile(out, result, resumed(args, out, result), start)
    if args.append:
        return append_runs(args, file, model, float_acc)

    tuned = tune_rates(args, model, file)
    plan, qat_plan = run_plan(args)
    rows: list[dict[str, Any]] = []
    done = {(r["method"], r["bits"], r["seed"]): r for r in file.earlier.get("runs", [])}

    def execute(plan: list[tuple[str, float, int]]) -> None:
        for method, bits, seed in plan:
            if (method, bits, seed) in done:  # finished by the interrupted invocation that --resume continues
                rows.append(done[(method, bits, seed)])
                continue
            file.add_row(rows, run(method, bits, tuned[tuned_as(method)]["lr"], seed, model, float_acc, args), args)

    execute(plan)
    result["runs"], result["verdict"] = rows, verdict(rows, args)
    file.save()
    if args.synthesized:
        result["synthesized"] = synthesized_protocol(args, tuned, file.earlier.get("synthesized", {}))
        file.save()
    execute(qat_plan)
    ran = {(r["method"], r["bits"], r["seed"]) for r in rows}
    rows += [r for key, r in done.items() if key not in ran]  # runs added with --append stay
    result["runs"], result["verdict"] = rows, verdict(rows, args)
    result["machine"] = {"python": sys.version.split()[0], "torch": torch.__version__, "platform": platform.platform()}
    file.save()
    print_summary(rows, float_acc, result, out)
    return 0


def verdict(rows: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    """The issue's verdict keys from the runs so far, and learned vs LSQ at each budget of the curve.

    "Learned" at a budget is the variant of :data:`LEARNED` with the best mean dev-val accuracy over the seeds,
    among the variants within the budget that ran every seed there, else the best at the first seed (chosen on
    dev-val, never on heldout; a tie goes to 'learned')."""
    chosen = {}
    for bits in sorted({r["bits"] for r in rows if r["method"] in LEARNED}):
        dev_val: dict[str, dict[int, float]] = {}
        for r in rows:
            if (r["method"] in LEARNED and r["bits"] == bits and r["seed"] in args.seeds and "diverged" not in r
                    and r["within_bits"]):
                dev_val.setdefault(r["method"], {})[r["seed"]] = r["accuracy"]["dev_val"]
        score = ({m: statistics.fmean(v.values()) for m, v in dev_val.items() if set(v) == set(args.seeds)}
                 or {m: v[args.seeds[0]] for m, v in dev_val.items() if args.seeds[0] in v})
        if score:
            chosen[bits] = max(score, key=lambda m: (score[m], m == "learned"))
    runs = {"learned@4": (chosen.get(4, "learned"), 4), "learned@3": (chosen.get(3, "learned"), 3),
            "lsq@4": ("lsq", 4), "lsq@3": ("lsq", 3)}
    # drops from the float control when it ran (what quantization alone costs), else from the float model
    control = {r["seed"]: r["accuracy"]["heldout"] for r in rows if r["method"] == FLOAT_CONTROL}
    drops = {k: mean_drop(rows, m, b, control or None) for k, (m, b) in runs.items()}
    from_model = {k: mean_drop(rows, m, b) for k, (m, b) in runs.items()}
    learned4, learned3, lsq4 = drops["learned@4"], drops["learned@3"], drops["lsq@4"]
    curve_rows = [r for r in rows if r["seed"] in args.curve_seeds and "diverged" not in r]
    beats = {}
    for r in curve_rows:
        if r["method"] != chosen.get(r["bits"]):
            continue
        fixed = [f for f in curve_rows if f["method"] == "lsq" and f["seed"] == r["seed"]
                 and f["bits"] <= r["bits"] + 1e-9]
        if fixed:  # the best LSQ run at no more average bits than the learned run's budget
            best = max(fixed, key=lambda f: (f["bits"], f["accuracy"]["heldout"]))
            beats[str(r["bits"])] = {"learned": r["accuracy"]["heldout"], "lsq": best["accuracy"]["heldout"],
                                     "lsq_bits": best["bits"],
                                     "learned_better": r["accuracy"]["heldout"] > best["accuracy"]["heldout"]}
    over_seeds = {}
    for bits in sorted(chosen, reverse=True):  # every budget where both ran at every seed (LSQ at the same bits)
        runs_at = {m: {r["seed"]: r["accuracy"]["heldout"] for r in rows if r["method"] == m and r["bits"] == bits
                       and r["seed"] in args.seeds and "diverged" not in r} for m in (chosen[bits], "lsq")}
        if all(set(by_seed) == set(args.seeds) for by_seed in runs_at.values()):
            learned, lsq = (statistics.fmean(by_seed.values()) for by_seed in runs_at.values())
            over_seeds[str(bits)] = {"learned": learned, "lsq": lsq, "learned_better": learned > lsq,
                                     "seeds": len(args.seeds)}
    # per budget, the mean over every seed where both ran at every seed, else the curve seed's comparison: one
    # seed decides no budget that has three (the drops above are means over seeds too)
    deciding = {**beats, **over_seeds}
    return {
        "learned_variant_per_budget": {str(b): m for b, m in chosen.items()},
        "drop_pts_at_4bits": learned4 and learned4["mean"], "drop_pts_at_3bits": learned3 and learned3["mean"],
        "fixed_lsq_drop_pts_at_4bits": lsq4 and lsq4["mean"],
        "seeds": drops,
        "drops_from": "float control" if control else "float model",
        "float_control": control and {"heldout_mean": statistics.fmean(control.values()), "per_seed": control,
                                      "definition": "the float model fine-tuned like the quantized ones, without "
                                                    "quantizers (float_fine_tune)"},
        "drop_pts_from_float_model": {k: d["mean"] for k, d in from_model.items() if d} if control else None,
        "targets": {"max_drop_pts_at_4bits": 0.5, "max_drop_pts_at_3bits": 1.5},
        "met_4bits": bool(learned4 and learned4["mean"] is not None and learned4["mean"] <= 0.5),
        "met_3bits": bool(learned3 and learned3["mean"] is not None and learned3["mean"] <= 1.5),
        "learned_vs_lsq_per_budget": beats,
        "learned_beats_lsq_everywhere": bool(deciding) and all(v["learned_better"] for v in deciding.values()),
        "learned_vs_lsq_mean_over_seeds": over_seeds,
        "definition": "heldout accuracy points, float minus quantized, mean over seeds (float: the float control of "
                      "the same seed where it ran, which the fine-tuning trains as much as the quantized models, else "
                      "the float model); a run counts only if both average bits per weight and per activation are "
                      "<= the stated bits",
    }


def add_protocol_args(parser: argparse.ArgumentParser) -> None:
    """``--real-test``, ``--train-list`` and ``--test-list``: the real clips, trained and tuned on, reported on."""
    parser.add_argument("--real-test", help="root of the real clips (default: the shared data's gsc-v2-test/)")
    parser.add_argument("--train-list", help="clips to fine-tune and validate on (default: the shared dev.txt)")
    parser.add_argument("--test-list", help="clips to report on (default: the shared heldout.txt)")


def protocol_defaults(args: argparse.Namespace) -> argparse.Namespace:
    """``args`` with the protocol options left out set to the shared data's dev/heldout protocol."""
    if not (args.real_test and args.train_list and args.test_list):
        real = real_speech()
        args.real_test = args.real_test or str(real.root)
        args.train_list = args.train_list or str(real.dev_list)
        args.test_list = args.test_list or str(real.heldout_list)
    return args


def listed_loader(root: str, list_file: str, batch_size: int, every: int = 1) -> DataLoader:
    """Loader over every ``every``-th clip of ``root`` named in ``list_file`` (evaluation only)."""
    clips = ListedClips(root, list_file, cache=True)
    return DataLoader(Subset(clips, range(0, len(clips), every)), batch_size=batch_size)


if __name__ == "__main__":
    sys.exit(main())
