"""Sim-to-real benchmark: real-speech accuracy of a model trained on synthesized speech only (issue 10).

For each configuration (today's recipe, each data-engine ingredient added alone, all together; front ends
and models; the real-speech teacher of :mod:`nni_kws.teacher` alone and distilled into students) it
synthesizes the dataset (cached, cost recorded), trains one fixed model from scratch on it (by default
the SincConv architecture of the 'small' preset of ``benchmarks/quantize.py``; see :data:`MODELS`), and
measures accuracy on the synthesized test split, on the whole real Speech Commands v2 test set (4,890
clips) and on its ``heldout`` half (``gsc-v2-test-splits/heldout.txt``). Nothing real is used for
training or model selection (the last epoch is evaluated); configurations were compared on the real
``dev`` half only. One torch thread, so runs on a shared 2-core machine compare.

The longer offline configuration (DS-CNN-S distilled from the teacher, needs ``pip install
'nni-kws[teacher]'``)::

    python benchmarks/sim_to_real.py --configs demo_dscnn_distill_oof_t4_int16 --epochs 60 --append --save-models DIR

Writes ``benchmarks/results/sim_to_real.json`` (top-level "verdict") and ``sim_to_real.md`` (table).

    python benchmarks/sim_to_real.py [--configs today,all] [--seeds 0] [--epochs 12] [--quick]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, NamedTuple

import torch

from nni_kws.baselines import build_baseline
from nni_kws.data import ListedClips, SpeechCommandsTestFolder, TrainAugment, read_list
from nni_kws.data.datamodule import SpeechCommandsDataModule
from nni_kws.data.paths import real_speech
from nni_kws.data.synth import PRESETS, _params, _synthesize, default_dataset_dir
from nni_kws.files import save_torch
from nni_kws.space import build_model, build_space
from nni_kws.teacher import INPUT_SCALE, HintedStudent, embed_dataset, fit_teacher, head_accuracy, head_predictions
from nni_kws.training import accuracy, fit, predict, seed_everything

#: The fixed architecture (preset 'small', SincConv front end), as in benchmarks/quantize.py.
ARCH = {"frontend": "sinc", "s0_depth": 2, "s0_i0_e": 2, "s0_i0_k": 5, "s0_i1_e": 2, "s0_i1_k": 5,
        "s1_depth": 2, "s1_i0_e": 2, "s1_i0_k": 5, "s1_i1_e": 2, "s1_i1_k": 5,
        "s2_depth": 2, "s2_i0_e": 2, "s2_i0_k": 5, "s2_i1_e": 2, "s2_i1_k": 5}
PRESET = "small"
#: SpecAugment on DS-CNN-S's 49 frames x 40 log-mel bands: 2 time masks of <= 8 frames, 2 of <= 6 bands.
SPEC_MASKS = (2, 8, 2, 6)
#: The models a configuration can train: the fixed SincConv architecture, the same blocks behind the MFCC
#: front end of the space, and the DS-CNN-S peer (MFCC, 2-D convolutions).
MODELS: dict[str, Any] = {
    "sinc": lambda: build_model(ARCH, build_space(PRESET)),
    "mfcc": lambda: build_model({k: v for k, v in ARCH.items() if k != "frontend"},
                                build_space(PRESET, frontend="mfcc")),
    "mfcc10": lambda: build_model({k: v for k, v in ARCH.items() if k != "frontend"},
                                  build_space(PRESET, frontend="mfcc", n_mfcc=10)),
    "dscnn": lambda: build_baseline("ds-cnn-s"),
    "dscnn_cmn": lambda: build_baseline("ds-cnn-s", utterance_norm="mean"),
    "dscnn_cmvn": lambda: build_baseline("ds-cnn-s", utterance_norm="meanvar"),
    "dscnn_specaug": lambda: build_baseline("ds-cnn-s", spec_masks=SPEC_MASKS),
    "dscnn_cmn_specaug": lambda: build_baseline("ds-cnn-s", utterance_norm="mean", spec_masks=SPEC_MASKS),
}
MASKS = dict(time_masks=2, freq_masks=2)
SNR = dict(noise_snr_db=(0.0, 20.0))
class Config(NamedTuple):
    """One benchmark configuration: synthesis parameters on top of the 'today' recipe, training augmentation,
    the model trained (a key of :data:`MODELS`, or ``"teacher"``: the speech-embedding teacher alone) and the
    weights of distillation from that teacher's logits and of the hint loss towards its embedding (0: none),
    and whether the teacher's training logits are out-of-fold (``teacher_folds`` > 1)."""

    synth: dict[str, Any]
    augment: TrainAugment = TrainAugment()
    model: str = "sinc"
    distill: float = 0.0
    hint: float = 0.0
    teacher_folds: int = 1
    temperature: float = 2.0
    teacher_scale: float = INPUT_SCALE


DEMO = dict(PRESETS["demo"])
CONFIGS: dict[str, Config] = {
    "today": Config({}),
    "recorded_noise": Config({"recorded_noise": "shared"}, TrainAugment(**SNR)),
    "flite": Config({"flite_speakers": 100}),
    "room_channel": Config({"room": 0.5, "channel": 0.5}),
    "speed": Config({"speed": (0.88, 1.12)}),
    "masking": Config({}, TrainAugment(**MASKS)),
    "all": Config({"flite_speakers": 100, "test_fraction": 0.2, "speed": (0.88, 1.12), "room": 0.5, "channel": 0.5,
                   "recorded_noise": "shared"}, TrainAugment(**SNR, **MASKS)),
    # combinations of the ingredients that helped alone (flite, speed) and the acoustics
    "flite_speed": Config({"flite_speakers": 100, "speed": (0.88, 1.12)}),
    "all_but_noise_masks": Config({"flite_speakers": 100, "speed": (0.88, 1.12), "room": 0.5, "channel": 0.5,
                                   "test_fraction": 0.2}),
    "demo": Config(DEMO),
    "demo_more_flite": Config(dict(DEMO, flite_speakers=300)),
    "full_preset": Config(dict(PRESETS["full"])),
    # front ends and models on the demo data
    "demo_mfcc": Config(DEMO, model="mfcc"),
    "demo_mfcc10": Config(DEMO, model="mfcc10"),
    "demo_dscnn": Config(DEMO, model="dscnn"),
    "demo_dscnn_cmn": Config(DEMO, model="dscnn_cmn"),
    "demo_dscnn_cmvn": Config(DEMO, model="dscnn_cmvn"),
    "demo_dscnn_specaug": Config(DEMO, model="dscnn_specaug"),
    "demo_dscnn_cmn_specaug": Config(DEMO, model="dscnn_cmn_specaug"),
    # the real-speech teacher alone, and distilled into the students
    "demo_teacher": Config(DEMO, model="teacher"),
    "demo_distill": Config(DEMO, distill=0.5),
    "demo_dscnn_distill": Config(DEMO, model="dscnn", distill=0.5),
    "demo_dscnn_distill_oof": Config(DEMO, model="dscnn", distill=0.7, teacher_folds=5),
    "demo_dscnn_hint": Config(DEMO, model="dscnn", hint=1.0),
    "demo_hint": Config(DEMO, hint=1.0),
    "demo_dscnn_distill_oof_hint": Config(DEMO, model="dscnn", distill=0.7, hint=1.0, teacher_folds=5),
    "demo_dscnn_distill_oof9": Config(DEMO, model="dscnn", distill=0.9, teacher_folds=5),
    "demo_distill_oof": Config(DEMO, distill=0.7, teacher_folds=5),
    "demo_dscnn_distill_oof_t4": Config(DEMO, model="dscnn", distill=0.9, teacher_folds=5, temperature=4.0),
    # the same with the teacher fed int16-range samples (how the first teacher rows were made)
    "demo_dscnn_distill_oof_t4_int16": Config(DEMO, model="dscnn", distill=0.9, teacher_folds=5, temperature=4.0,
                                              teacher_scale=32767.0),
    "demo_teacher_int16": Config(DEMO, model="teacher", teacher_scale=32767.0),
    # the documented longer offline configuration: the same student and teacher on the 'full' synthesis preset
    "full_dscnn_distill_oof_t4_int16": Config(dict(PRESETS["full"]), model="dscnn", distill=0.9, teacher_folds=5,
                                              temperature=4.0, teacher_scale=32767.0),
    "demo_dscnn_distill_oof_t4w1": Config(DEMO, model="dscnn", distill=1.0, teacher_folds=5, temperature=4.0),
    "demo_mfcc10_distill_oof": Config(DEMO, model="mfcc10", distill=0.7, teacher_folds=5),
    # the same on today's espeak-only data (the quick test's teacher runs)
    "today_teacher": Config({}, model="teacher"),
    "today_dscnn_distill_oof": Config({}, model="dscnn", distill=0.7, teacher_folds=5),
    "more_flite_dscnn_distill_oof": Config(dict(DEMO, flite_speakers=300), model="dscnn", distill=0.7, teacher_folds=5),
}
#: The documented longer offline configuration: the distillation variant chosen on dev (among those on the demo
#: data, 60 epochs), on the 'full' synthesis preset, 40 epochs (:data:`FULL_EPOCHS`).
FULL_CONFIG, FULL_EPOCHS = "full_dscnn_distill_oof_t4_int16", 40
#: The data-engine table (today's recipe, each ingredient alone, combinations): the default --configs.
INGREDIENTS = ("today", "recorded_noise", "flite", "room_channel", "speed", "masking", "all", "flite_speed",
               "all_but_noise_masks")
RESULTS = Path(__file__).resolve().parent / "results"
log = logging.getLogger("sim_to_real")


def _real_sets(quick: bool, work: Path) -> dict[str, Any]:
    """The whole real v2 test set (a tiny stand-in with --quick) and the files of its heldout half."""
    real = real_speech()
    root, heldout = real.root, real.heldout_list
    if quick:  # 5 clips per class of each, through a list file (same loaders, seconds instead of minutes)
        full = SpeechCommandsTestFolder(root, on_error=None)
        picked: dict[int, list[str]] = {}
        for path, label in zip(full.files, full.labels):
            if len(picked.setdefault(label, [])) < 5:
                picked[label].append(str(Path(path).relative_to(root)))
        small_list = work / "real_quick.txt"
        small_list.write_text("\n".join(r for rels in picked.values() for r in rels) + "\n")
        full = ListedClips(root, small_list, cache=True)
    else:
        full = SpeechCommandsTestFolder(root, cache=True)
    return {"full": full, "heldout": {str(root / r) for r in read_list(heldout)} & set(full.files)}


def run_config(name: str, seed: int, args: argparse.Namespace, real: dict[str, Any], cache: Path) -> dict[str, Any]:
    config = CONFIGS[name]
    synth_params, augmentation, model_name = config.synth, config.augment, config.model
    params = {**synth_params, **({"speakers": 6, "flite_speakers": min(synth_params.get("flite_speakers", 0), 4),
                                   "noise_seconds": 2} if args.quick else {})}
    out = cache / default_dataset_dir(**params).name
    t0 = time.monotonic()
    root, built = _synthesize(out, params, progress=False)
    synth_s = time.monotonic() - t0
    manifest = json.loads((root / "manifest.json").read_text())
    dm = SpeechCommandsDataModule(root, batch_size=64, seed=seed, cache=True, augmentation=augmentation)
    seed_everything(seed)
    t0 = time.monotonic()
    train_loader, teacher = dm.train_dataloader(), None
    if model_name == "teacher" or config.distill > 0 or config.hint > 0:
        scale = config.teacher_scale
        teacher, targets = fit_teacher(dm, root / "teacher", seed=seed, folds=config.teacher_folds, scale=scale,
                                       hints=config.hint > 0)
        train_loader = dm.loader(targets, shuffle=True)
    if model_name == "teacher":
        assert teacher is not None
        # the embeddings of the real set are the same for every run: cached next to the datasets
        real_emb = embed_dataset(real["full"], cache / f"teacher-real-{len(real['full'])}-x{scale:g}.npy", scale=scale)
        preds, labels = head_predictions(teacher.head, real_emb), torch.as_tensor(real["full"].labels)
        synth_acc = head_accuracy(teacher.head, dm.dataset("testing"),
                                  root / "teacher" / f"testing-seed{seed}-x{scale:g}.npy", scale)
        train_s = time.monotonic() - t0
        t0 = time.monotonic()
    else:
        model = MODELS[model_name]()
        trained = HintedStudent(model) if config.hint > 0 else model
        fit(trained, train_loader, dm.val_dataloader(), epochs=args.epochs, progress=False,
            learning_rate=args.lr, distill_weight=config.distill, distill_temperature=config.temperature,
            hint_weight=config.hint)
        train_s = time.monotonic() - t0
        t0 = time.monotonic()
        # One pass over the whole real set; heldout is a subset of it, so its accuracy comes from the same predictions.
        preds, labels = predict(model, torch.utils.data.DataLoader(real["full"], batch_size=256))
        synth_acc = accuracy(model, dm.test_dataloader())
    correct = dict(zip(real["full"].files, (preds == labels).tolist()))
    held = [correct[f] for f in real["heldout"] if f in correct]
    res = {"config": name, "model": model_name, "distill": config.distill, "hint": config.hint,
           "teacher_folds": config.teacher_folds, "temperature": config.temperature,
           "teacher_scale": config.teacher_scale, "seed": seed,
           "epochs": args.epochs,
           "synth_params": manifest["params"], "augmentation": dataclasses.asdict(augmentation),
           "clips": manifest["counts"]["clips"], "speakers_by_engine": manifest["counts"]["speakers_by_engine"],
           "train_items": len(dm.dataset("training")), "synth_test_items": len(dm.dataset("testing")),
           "synth_test_acc": synth_acc,
           "real_test_acc": sum(correct.values()) / len(correct), "heldout_acc": sum(held) / max(len(held), 1),
           "n_real_test": len(correct), "n_heldout": len(held),
           "synth_seconds": round(synth_s, 1), "synth_cached": not built, "train_seconds": round(train_s, 1)}
    if teacher is not None:
        res["teacher_train_acc"] = teacher.train_accuracy
    res["eval_seconds"] = round(time.monotonic() - t0, 1)
    if args.save_models and model_name != "teacher":
        path = Path(args.save_models) / f"{name}-{args.epochs}ep-seed{seed}.pt"
        res["model_file"] = str(save_torch({"state_dict": model.state_dict(), "model": model_name,
                                            "classes": list(dm.classes)}, path))
    log.info("%s seed %d: real %.3f heldout %.3f synth %.3f (synth %.0f s, train %.0f s)", name, seed,
             res["real_test_acc"], res["heldout_acc"], res["synth_test_acc"], synth_s, train_s)
    return res


def _summary(runs: list[dict[str, Any]]) -> str:
    """One row per configuration and epoch count: real-test and heldout accuracy, mean ± std over its seeds."""
    groups: dict[tuple[str, Any], list[dict[str, Any]]] = {}
    for r in runs:
        groups.setdefault((r["config"], r.get("epochs")), []).append(r)

    def stat(rs: list[dict[str, Any]], key: str) -> str:
        values = [100 * r[key] for r in rs]
        spread = f" ± {statistics.stdev(values):.1f}" if len(values) > 1 else ""
        return f"{statistics.fmean(values):.1f}{spread}"

    lines = ["| configuration | epochs | seeds | real test (4,890) % | dev % | heldout % |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {name} | {epochs} | {len(rs)} | {stat(rs, 'real_test_acc')} | {stat(rs, 'dev_acc')} | "
              f"{stat(rs, 'heldout_acc')} |" for (name, epochs), rs in groups.items()]
    return "\n".join(lines) + "\n"


def _table(runs: list[dict[str, Any]]) -> str:
    lines = ["| configuration | model | seed | epochs | clips | synth test | real test (4,890) | dev | heldout "
             "| synth s | train s |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        recipe = _recipe(r)
        model = recipe[0] if len(recipe) == 1 else f"{recipe[0]}, teacher x{recipe[-1]:g}"
        lines.append(f"| {r['config']} | {model} | {r['seed']} | {r.get('epochs', '')} | "
                     f"{r['clips']} | "
                     f"{100 * r['synth_test_acc']:.1f} % | {100 * r['real_test_acc']:.1f} % | "
                     f"{100 * r['dev_acc']:.1f} % | {100 * r['heldout_acc']:.1f} % | "
                     f"{r['synth_seconds']:.0f}{' (cached)' if r['synth_cached'] else ''} | {r['train_seconds']:.0f} |")
    return "\n".join(lines) + "\n"


def _key(r: dict[str, Any]) -> str:
    """Runs with the same data, augmentation and epochs are the same configuration (whatever their name)."""
    return json.dumps([r["synth_params"], r["augmentation"], r.get("epochs"), *_recipe(r)], sort_keys=True)


def _runs_of(groups: dict[str, list[dict[str, Any]]], config: Config, epochs: int, quick: bool) -> list[dict[str, Any]]:
    """The runs of ``config`` trained for ``epochs`` (any seeds; [] if none, and always [] with --quick); of
    runs on data of several synthesizer versions (same parameters, other bytes), those of the newest."""
    if quick:
        return []

    def unversioned(params: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in params.items() if k != "synth_version"}

    params = unversioned(_params(**config.synth))
    wanted = _recipe_of(*config[2:])
    found = [rs for rs in groups.values() if unversioned(rs[0]["synth_params"]) == params
             and rs[0].get("epochs") == epochs and rs[0]["augmentation"] == dataclasses.asdict(config.augment)
             and _recipe(rs[0]) == wanted]
    return max(found, key=lambda rs: rs[0]["synth_params"].get("synth_version", 0), default=[])


def _recipe(r: dict[str, Any]) -> tuple[Any, ...]:
    """The model and teacher settings of a run (rows written before these existed: SincConv, no teacher)."""
    # rows without a teacher_scale were made with the int16 scale (the first teacher runs)
    return _recipe_of(r.get("model", "sinc"), r.get("distill", 0.0), r.get("hint", 0.0), r.get("teacher_folds", 1),
                      r.get("temperature", 2.0), r.get("teacher_scale", 32767.0))


def _recipe_of(model: str, distill: float, hint: float, folds: int, temperature: float,
               scale: float) -> tuple[Any, ...]:
    """The recipe tuple; the teacher's settings only where a teacher is used."""
    if model != "teacher" and distill == 0 and hint == 0:
        return (model,)
    return model, distill, hint, folds, temperature, scale


def _write(out: Path, runs: list[dict[str, Any]], args: argparse.Namespace, seconds: float,
           notes: list[str] | None = None) -> dict[str, Any]:
    """Write the JSON and the Markdown table of ``runs``; return the verdict.

    Accuracies in the verdict are means over the seeds run of a configuration.
    """
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in runs:
        # dev and heldout partition the real test set: the dev accuracy (what configurations are compared on)
        r.setdefault("dev_acc", (r["n_real_test"] * r["real_test_acc"] - r["n_heldout"] * r["heldout_acc"])
                     / max(r["n_real_test"] - r["n_heldout"], 1))
        groups.setdefault(_key(r), []).append(r)
    mean = lambda rs, k: sum(r[k] for r in rs) / len(rs)  # noqa: E731
    # the teacher alone is reported apart: its embedding network was trained on real speech (not by us)
    students = [rs for rs in groups.values() if rs[0].get("model") != "teacher"]
    teachers = sorted((rs for rs in groups.values() if rs[0].get("model") == "teacher"),
                      key=lambda rs: -mean(rs, "dev_acc"))  # the best teacher on dev first
    demo_config = CONFIGS[args.demo_config]
    demo_runs = _runs_of(groups, demo_config, args.demo_epochs, args.quick)
    # the documented longer configuration when given (and run), else the best student on dev (never heldout)
    best = _runs_of(groups, CONFIGS[args.full_config], args.full_epochs, args.quick) if args.full_config else []
    full_name = args.full_config if best else None
    best = best or max(students, key=lambda rs: mean(rs, "dev_acc"), default=[])

    def summary(prefix: str, name: str | None, rs: list[dict[str, Any]]) -> dict[str, Any]:
        """Mean accuracies of ``rs`` (seeds of one configuration), what they are, and their minutes."""
        if not rs:
            return {f"{prefix}_{key}": None for key in ("real_test_acc", "heldout_acc", "config", "minutes")}
        minutes = max(r["synth_seconds"] for r in rs) / 60 + mean(rs, "train_seconds") / 60
        return {f"{prefix}_real_test_acc": mean(rs, "real_test_acc"), f"{prefix}_heldout_acc": mean(rs, "heldout_acc"),
                f"{prefix}_config": f"{name} ({rs[0].get('epochs')} epochs, seeds {[r['seed'] for r in rs]}, run as "
                                    f"{sorted({r['config'] for r in rs})})",
                f"{prefix}_minutes": round(minutes, 1)}

    demo = summary("demo", args.demo_config, demo_runs)
    full = summary("full", full_name or (best[0]["config"] if best else None), best)
    verdict = {
        **demo, **full,
        "teacher_real_test_acc": mean(teachers[0], "real_test_acc") if teachers else None,
        "teacher_heldout_acc": mean(teachers[0], "heldout_acc") if teachers else None,
        "targets_met": {"demo_60": bool(demo_runs) and demo["demo_real_test_acc"] >= 0.60,
                        "full_75": bool(best) and full["full_real_test_acc"] >= 0.75,
                        "full_60min": bool(best) and full["full_minutes"] <= 60},
        "note": "one fixed model per row (default: a 'small'-space SincConv architecture) trained from scratch, "
                "no search or quantization, last epoch evaluated; demo_minutes and full_minutes = cold synthesis + "
                "training (teacher included) of that one model on this shared 2-core machine, not a whole `make "
                "demo`; accuracies are means over the seeds run",
    }
    result = {"verdict": verdict, "quick": args.quick, "lr": args.lr, "arch": ARCH,
              "preset": PRESET, "threads": 1, "wall_minutes": round(seconds / 60, 1),
              "machine": platform.platform(), **({"notes": notes} if notes else {}), "runs": runs}
    out.write_text(json.dumps(result, indent=1) + "\n")
    out.with_suffix(".md").write_text("Per configuration (mean ± std over seeds):\n\n" + _summary(runs)
                                      + "\nEvery run:\n\n" + _table(runs))
    return verdict


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", default=",".join(INGREDIENTS),
                   help=f"comma-separated subset of {list(CONFIGS)} (default: the data-engine ingredients)")
    p.add_argument("--seeds", default="0", help="comma-separated seeds (default: 0)")
    p.add_argument("--epochs", type=int, default=12, help="training epochs per run (default: 12)")
    p.add_argument("--lr", type=float, default=0.2, help="SGD learning rate (the pipeline's default)")
    p.add_argument("--demo-config", default="demo", help="the configuration reported as the demo's "
                   "(default: 'demo', the 'demo' synthesis preset with the default training augmentation)")
    p.add_argument("--demo-epochs", type=int, default=10, help="the epochs of the demo's reported runs")
    p.add_argument("--full-config", default=FULL_CONFIG, help="the configuration reported as the longer offline "
                   "one when it was run (else: the best student on dev among those run)")
    p.add_argument("--full-epochs", type=int, default=FULL_EPOCHS, help="the epochs of --full-config's reported runs")
    p.add_argument("--cache", default=str(Path.home() / ".cache" / "nni-kws" / "sim_to_real"),
                   help="folder of the synthesized datasets (kept between runs)")
    p.add_argument("--out", default=str(RESULTS / "sim_to_real.json"))
    p.add_argument("--save-models", default="", help="folder to store each trained student's weights in")
    p.add_argument("--quick", action="store_true", help="tiny data and 1 epoch: a smoke test in seconds")
    p.add_argument("--append", action="store_true", help="keep the runs already in --out and add these")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    for name in ("lightning", "pytorch_lightning", "nni"):
        logging.getLogger(name).setLevel(logging.ERROR)
    torch.set_num_threads(1)
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    if unknown := [c for c in configs if c not in CONFIGS]:
        p.error(f"unknown configurations {unknown}; choose from {list(CONFIGS)}")
    if args.quick:
        args.epochs = 1
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) if args.quick else Path(args.cache)
        real = _real_sets(args.quick, Path(tmp))
        start, runs, notes = time.monotonic(), [], []
        if args.append and out.is_file():
            old = json.loads(out.read_text())
            runs = [{"epochs": old.get("epochs"), **r} for r in old["runs"]]
            notes = old.get("notes", [])  # hand-written remarks on earlier runs stay
            start -= 60 * old.get("wall_minutes", 0)
        for seed in (int(s) for s in args.seeds.split(",")):
            for name in configs:
                runs.append(run_config(name, seed, args, real, cache))
                # after each run: partial results last
                verdict = _write(out, runs, args, time.monotonic() - start, notes)
    print(json.dumps(verdict, indent=1))
    print(_table(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
