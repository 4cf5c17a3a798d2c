"""Does the search find good keyword spotters? Searched vs random in-budget architectures vs peers,
and how well the supernet ranks architectures, on the real-speech dev/heldout protocol.

Protocol (``../shared/data/README.md``): train and tune on ``gsc-v2-test-splits/dev.txt`` (its
training part; a speaker-disjoint validation part is split off it), report on ``heldout.txt`` only.
Every model (searched, random, peer) is trained from scratch with the same recipe and epochs
(:func:`nni_kws.training.fit`). Per MAC budget:

- one-shot search with each of ``--strategies``, the first one giving the verdict (``sandwich``: the
  largest, smallest and a random path per step, one supernet per front end (``--split``, each trained
  ``--sandwich-epochs``) for every budget, then evolution within the budget and ``--finalists`` short
  standalone trainings (``--finalist-seeds`` each; plus the best candidate of each front end they miss,
  ``--finalist-cover``) picked on dev-val; ``gumbel-hard``: straight-through
  single paths after ``--warmup-epochs`` of uniform single paths; ``darts``: the softmax mixture), the
  penalty target or evolution budget = the budget; the verdict strategy's model is also trained with
  ``--retrain-seeds`` (the run-to-run spread);
- ``evolution``: RandomOneShot (uniform single-path supernet, SPOS) + regularized evolution over
  candidates within the budget, scored on the validation part with inherited, recalibrated weights;
- ``--random`` random architectures within the budget, each also trained with ``--ranking-seeds``;
- the peers of ``nni_kws.baselines`` (when that module exists), each trained with seed 0 and ``--retrain-seeds``
  (like the searched models) and its mean, with its trainings in the ``--companion`` files, compared with the
  searched model of the largest budget at or under its MACs, also from those files (another preset whose MAC
  range reaches a larger peer, e.g. ``paper`` or ``wide`` at SincConv+DSConv's 25M; of several spaces searched at
  that budget, the one whose searched models have the better mean dev-val accuracy). That space's random
  baseline at that budget also counts in ``searched_minus_random_median_pts`` (the smallest over all budgets).

``--data synthesized``: the same comparison trained on synthesized speech only (the default dataset's training
split; its validation split stands in for dev-val), still reported on ``heldout``.

Ranking check: Kendall tau between the validation accuracy of each random architecture with
inherited, recalibrated weights (every supernet above) and after standalone training, averaged over its
training seeds (0 and ``--ranking-seeds``; ``kendall_tau_seed0_reference``: against seed 0 alone).

Results are written to the JSON after every model and reused on a rerun with the same settings
(``--fresh`` starts over), so an interrupted run resumes; a larger ``--random`` keeps everything and trains only
the new random architectures (the draw's first ones are the stored ones); under other settings, standalone trainings
with the same recipe (random architectures, peers) are still reused; supernet searches resume from their
per-epoch checkpoints under ``--work`` (a folder per setting they depend on). ``--quick`` runs
everything on a tiny synthesized list-defined dataset in seconds (the test suite runs it).

The sandwich supernet's length is chosen per space on dev-val, by the searched models' mean dev-val accuracy
over their 9 trainings: 8 epochs of one shared supernet for ``compact`` (16: ``search_quality_e16.json``), now
4 for each of its two front-end supernets (the same compute); 16 shared for the larger ``paper`` space (8:
``search_quality_paper_e8.json``) and, untried at 8, for ``wide`` (the ``paper`` space with the SincConv+DSConv
peer's kernel sizes and widths), whose split run (8 epochs each, ``search_quality_wide_split.json``) ranks better but
selected models that validate worse::

    python benchmarks/search_quality.py --preset paper --budgets 2.49e7 --strategies sandwich --no-spos \
        --random 6 --sandwich-epochs 16 --split none --out benchmarks/results/search_quality_paper.json
    python benchmarks/search_quality.py --preset wide --budgets 2.49e7 --strategies sandwich --no-spos \
        --random 20 --sandwich-epochs 16 --split none --finalists 6 --finalist-seeds 3 --finalist-folds \
        --out benchmarks/results/search_quality_wide_folds.json
    python benchmarks/search_quality.py --preset widestride --budgets 2.49e7 --strategies sandwich --no-spos \
        --random 10 --sandwich-epochs 16 --split none --out benchmarks/results/search_quality_widestride.json
    python benchmarks/search_quality.py --random 20 --companion benchmarks/results/search_quality_paper.json \
        --companion benchmarks/results/search_quality_wide_folds.json \
        --companion benchmarks/results/search_quality_widestride.json

(``wide`` at 25M: 6 finalists, each trained on 3 validation folds of dev's speakers, since its finalists differ by
less than one 416-clip split's chance errors; the run before it, 3 finalists × 2 trainings on fold 0, is
``search_quality_wide.json``, the same command without the finalist options. Each seed ran
in its own process (``--seeds s``, from a copy of that file for its random architectures' and peers' trainings, one
``--work``), and the three files were merged before the command above ran once more to write the verdict.)

(The verdict's runs, ``wide`` at 25M and the ``compact`` run above, first ran with ``--random 10``; the same commands
with ``--random 20`` then added 10 random architectures per budget: a median of 10 moved by several points with
the draw's mix of front ends. ``paper`` and ``widestride``, not the verdict's 25M space, keep their 6 and 10.)

(``widestride``, the ``wide`` space with a stride choice per stage over 250 front-end frames, started from a copy of
``search_quality_wide.json`` for its peers' trainings; its seed-1 and seed-2 supernets were trained beside the run
by two more processes of the same command with ``--seeds 1 --finalists 0`` and ``--seeds 2 --finalists 0``,
stopped after their supernets, whose checkpoints the run then resumed (one ``--work`` for all); and half of the
random architectures' trainings ran in one more process (the run's own functions, from the last architecture back),
whose records were copied into the run's file before it resumed.)

At DS-CNN-S's MACs with the 9-epoch recipe, raw audio and the MFCC front end (``--preset`` takes a space name:
``compact-mfcc``, ``paper-mfcc``, ``onestride-mfcc``; with no front-end choice there is nothing to split or
cover); the later runs started from a copy of the first's file, so that they reuse its peers' trainings::

    python benchmarks/search_quality.py --preset paper-mfcc --budgets 3.49e6 --strategies sandwich --no-spos \
        --split none --finalist-cover '' --epochs 9 --ranking-seeds '' \
        --out benchmarks/results/search_quality_paper_mfcc.json
    python benchmarks/search_quality.py --preset compact --budgets 3.49e6 --strategies sandwich --no-spos \
        --epochs 9 --ranking-seeds '' --out benchmarks/results/search_quality_compact_raw_e9.json
    python benchmarks/search_quality.py --preset compact-mfcc --budgets 3.49e6 --strategies sandwich --no-spos \
        --split none --finalist-cover '' --epochs 9 --ranking-seeds '' \
        --out benchmarks/results/search_quality_compact_mfcc.json
    python benchmarks/search_quality.py --preset onestride-mfcc --budgets 3.49e6 --strategies sandwich --no-spos \
        --split none --finalist-cover '' --epochs 9 --ranking-seeds '' \
        --out benchmarks/results/search_quality_onestride_mfcc.json
    # and at 3.28M / 4.14M from copies of that file, with its --work (its supernets) and the default ranking seeds:
    python benchmarks/search_quality.py --preset onestride-mfcc --budgets 3.28e6 --strategies sandwich --no-spos \
        --split none --finalist-cover '' --epochs 9 --out benchmarks/results/search_quality_onestride_mfcc_3.3m.json
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import math
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from scipy.stats import kendalltau

from nni_kws.cost import CostModel
from nni_kws.data.datamodule import SpeechCommandsDataModule
from nni_kws.data.labels import KEYWORDS, SAMPLE_RATE
from nni_kws.files import write_json
from nni_kws.search import ResourcePenalty, calibration_batches, random_archs, run_search
from nni_kws.search.evolution import CandidateScorer, arch_key
from nni_kws.search.finalists import COVERED_CHOICES
from nni_kws.search.split import SPLIT_CHOICE
from nni_kws.signals import StopRequested, exit_code, stop_on_signals
from nni_kws.space import FRONTEND_LABEL, build_model, space_by_name, space_choices
from nni_kws.training import accuracy, train_from_scratch

RESULTS = Path(__file__).parent / "results"
#: ``Settings.data`` of the synthesized-only protocol, and its results file.
SYNTHESIZED, SYNTHESIZED_JSON = "synthesized", RESULTS / "search_quality_synth.json"
log = logging.getLogger("search_quality")


@dataclass
class Settings:
    """Everything that defines a run (a stored result is reused only with equal settings)."""

    preset: str = "compact"  # a space name, preset or preset-frontend (paper-mfcc); compact spans small peers' MACs
    budgets: tuple[float, ...] = (3.28e6, 4.14e6)  # at or under TC-ResNet8's and BC-ResNet-1's MACs
    strategies: tuple[str, ...] = ("sandwich", "gumbel-hard")  # the first is the verdict's
    darts_budgets: str = "first"  # 'first' or 'all': where the other strategies' comparison runs
    search_epochs: int = 4
    warmup_epochs: int = 1
    spos_epochs: int = 4
    sandwich_epochs: int = 4  # per supernet; one sandwich search (budget-free) serves every budget
    split: str = SPLIT_CHOICE  # sandwich: one supernet per value of this choice, 'none' for one shared supernet
    finalists: int = 3  # sandwich: the evolution's best k are trained for `epochs` and picked on dev-val (0: none)
    finalist_seeds: int = 2  # ...each trained this many times, picked by the mean
    finalist_cover: tuple[str, ...] = COVERED_CHOICES  # ...and the best of each front end the k miss
    finalist_folds: bool = False  # ...training i of each validating on fold i of dev's speakers (not all on fold 0)
    epochs: int = 3  # standalone training of every model
    random: int = 10  # random architectures per budget
    seeds: tuple[int, ...] = (0, 1, 2)  # search seeds
    retrain_seeds: tuple[int, ...] = (1, 2)  # the verdict strategy's model is also retrained with these seeds
    ranking_seeds: tuple[int, ...] = (1, 2)  # the random architectures too: kendall_tau's reference is their mean
    spos: bool = True  # also RandomOneShot (uniform single paths) + evolution at every budget
    lam: float = 10.0
    lr: float = 0.2
    arc_lr: float = 0.03
    batch_size: int = 64
    calib_batches: int = 16
    evolution: dict[str, int] = field(default_factory=lambda: {"population": 8, "sample": 3, "cycles": 16})
    val_fraction: float = 0.15
    threads: int = 1
    data: str = "real dev/heldout"  # or "synthesized" (SYNTHESIZED)


def peers() -> list[tuple[str, Callable[[], torch.nn.Module], dict[str, float]]]:
    """``(name, build, costs)`` of the hand-designed peers of :mod:`nni_kws.baselines`, costed by the
    generic counter (same definitions as the space's cost model, front end included)."""
    try:
        from nni_kws.baselines import BASELINES, build_baseline
        from nni_kws.cost.counter import count_costs
    except ImportError:  # an older checkout without peers
        return []
    return [(name, lambda n=name: build_baseline(n),
             {k: float(v) for k, v in count_costs(build_baseline(name)).items() if v is not None})
            for name in BASELINES]


def chosen_preset(models: Mapping[str, Any], budget: float, strategy: str) -> str | None:
    """The space searched at ``budget`` whose searched models have the best mean dev-val accuracy, as a user
    would choose between spaces (heldout selects nothing); None when none was searched there."""
    groups: dict[str | None, list[float]] = {}
    for m in models.values():
        if m["kind"] == strategy and m["budget_macs"] == budget:
            groups.setdefault(m.get("preset"), []).append(m["val_acc"])
    return max(groups, key=lambda preset: statistics.mean(groups[preset])) if groups else None


def peer_margin(models: Mapping[str, Any], peer_macs: float, strategy: str,
                metric: str = "heldout_acc") -> tuple[float | None, str | None, float | None]:
    """``(budget, preset, searched accuracy)``: the searched model(s) of the largest budget at or below the peer's
    MACs (mean ``metric`` over seeds; ``preset`` tells which space, :func:`chosen_preset` where several were
    searched there); ``(None, None, None)`` when none is that low."""
    budgets = [m["budget_macs"] for m in models.values() if m["kind"] == strategy and m["budget_macs"] <= peer_macs]
    if not budgets:
        return None, None, None
    budget = max(budgets)
    preset = chosen_preset(models, budget, strategy)
    return budget, preset, statistics.mean(m[metric] for m in models.values() if m["kind"] == strategy
                                           and (m["budget_macs"], m.get("preset")) == (budget, preset))


# ---- data ----------------------------------------------------------------------------------------

def real_data(settings: Settings, shared: Path | None = None) -> SpeechCommandsDataModule:
    """The dev/heldout protocol of the shared data folder ``shared`` (default: found as the package finds it)."""
    return SpeechCommandsDataModule.real_protocol(shared, batch_size=settings.batch_size, seed=0, cache=True,
                                                  val_fraction=settings.val_fraction)


class SynthesizedTraining(SpeechCommandsDataModule):
    """The default synthesized dataset (training and validation splits) with the real heldout clips as its test
    split: train and select on synthesized speech only, report on real speech."""

    def __init__(self, heldout: torch.utils.data.Dataset, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.heldout = heldout

    def dataset(self, subset: str) -> torch.utils.data.Dataset:
        return self.heldout if subset == "testing" else super().dataset(subset)


def synthesized_data(settings: Settings, shared: Path) -> SpeechCommandsDataModule:
    from nni_kws.data.synth import ensure_default_dataset

    real = real_data(settings, shared)
    return SynthesizedTraining(real.dataset("testing"), root=ensure_default_dataset(), batch_size=settings.batch_size,
                               seed=0, cache=True, noise_dir=real.noise_dir)


def quick_data(root: Path, settings: Settings) -> SpeechCommandsDataModule:
    """A tiny list-defined dataset (tones, one frequency per keyword) in the real protocol's layout."""
    import soundfile as sf

    rng = np.random.default_rng(0)
    t = np.arange(SAMPLE_RATE // 2) / SAMPLE_RATE
    lists: dict[str, list[str]] = {"dev": [], "heldout": []}
    for w, word in enumerate(KEYWORDS):  # every keyword class needs clips in every split
        (root / word).mkdir(parents=True, exist_ok=True)
        for s in range(5):
            rel = f"{word}/{s:08x}_nohash_0.wav"
            x = rng.normal(0, 0.01, SAMPLE_RATE)
            start = int(rng.integers(0, SAMPLE_RATE // 2))
            x[start:start + t.size] += 0.5 * np.sin(2 * np.pi * 300 * 1.2 ** w * t) * np.hanning(t.size)
            sf.write(root / rel, x.astype(np.float32), SAMPLE_RATE, subtype="PCM_16")
            lists["dev" if s < 4 else "heldout"].append(rel)
    for name, rels in lists.items():
        (root / f"{name}.txt").write_text("".join(r + "\n" for r in rels))
    return SpeechCommandsDataModule(root, batch_size=settings.batch_size, seed=0, cache=True,
                                    train_list=root / "dev.txt", test_list=root / "heldout.txt",
                                    val_fraction=0.25)


# ---- the run -------------------------------------------------------------------------------------

class Run:
    """The result file: settings, one record per model, the verdict; rewritten after every model."""

    def __init__(self, path: Path, settings: Settings, fresh: bool) -> None:
        self.path, self.settings = path, settings
        self.data: dict[str, Any] = {}
        if path.is_file() and not fresh:
            old = json.loads(path.read_text())
            new = json.loads(json.dumps(dataclasses.asdict(settings)))
            old["settings"] = stored_settings(old)
            # more random architectures than the file's: the first ones are the same draw, so all else stands
            grown = {**old["settings"], "random": new["random"]} == new and new["random"] > old["settings"]["random"]
            if old.get("settings") == new or grown:
                self.data = old
                log.info("resuming %s: %d models done%s", path, len(old.get("models", {})),
                         f"; random architectures {old['settings']['random']} -> {new['random']}" if grown else "")
            else:  # other search settings: standalone trainings with the same recipe are still valid
                kept = {k: m for k, m in old.get("models", {}).items() if _same_recipe(old.get("settings", {}), new, m)}
                self.data = {"models": kept, "reused_from_other_settings": sorted(kept)}
                # and the demo's figures, which come from demo runs, not from these settings
                demo = {k: old[k] for k in DEMO_KEYS if k in old}
                if "demo_run" in old.get("verdict", {}):
                    demo["verdict"] = {"demo_run": old["verdict"]["demo_run"]}
                self.data.update(demo)
                log.info("other settings in %s: reusing %d standalone trainings with the same recipe", path, len(kept))
        self.data.setdefault("benchmark", "search_quality")
        self.data["settings"] = dataclasses.asdict(settings)
        self.data.setdefault("models", {})
        self.data.setdefault("supernets", {})
        self.started = time.perf_counter()

    @property
    def models(self) -> dict[str, Any]:
        return self.data["models"]

    def save(self) -> None:
        self.data["wall_s_this_session"] = round(time.perf_counter() - self.started, 1)
        write_json(self.path, self.data)


#: Settings added after result files were written, with the value those files ran.
RAN_BEFORE_ADDED: dict[str, Any] = {"finalist_seeds": 1, "finalist_cover": [], "split": "none",
                                    "finalist_folds": False}


def stored_settings(result: Mapping[str, Any]) -> dict[str, Any]:
    """The settings a result file ran, as JSON: a setting added later counts as what files written before it
    existed ran (:data:`RAN_BEFORE_ADDED`)."""
    return {**json.loads(json.dumps(dataclasses.asdict(Settings()))), **RAN_BEFORE_ADDED, **result.get("settings", {})}


#: Results of demo runs (``--demo-run``, the demo-length sweep), kept when the benchmark's settings change.
DEMO_KEYS = ("demo_gap_by_search_epochs",)


#: What a standalone training depends on (besides the architecture and its seed); a random architecture
#: also on the preset (its key names the architecture of that space), a peer not.
RECIPE = ("epochs", "lr", "batch_size", "val_fraction", "data")


#: What a supernet's checkpoint depends on (besides strategy, budget and seed, which name its folder).
SUPERNET_SETTINGS = ("preset", "search_epochs", "warmup_epochs", "spos_epochs", "sandwich_epochs", "split", "lam",
                     "lr", "arc_lr", "batch_size", "val_fraction", "data")


def _same_recipe(old: Mapping[str, Any], new: Mapping[str, Any], model: Mapping[str, Any]) -> bool:
    if model.get("kind") not in ("random", "random-seed", "peer", "peer-seed") \
            or any(old.get(k) != new.get(k) for k in RECIPE):
        return False
    return not model["kind"].startswith("random") or old.get("preset") == new.get("preset")


def _training_id(model: Mapping[str, Any]) -> str:
    """One standalone training's identity: a record one result file reused from another is a copy of it."""
    return json.dumps([model["seed"], model["val_acc"], model["heldout_acc"], model["train_s"]])


def int_list(text: str) -> tuple[int, ...]:
    """A comma-separated list of seeds from the command line ('' is none)."""
    return tuple(int(x) for x in text.split(",") if x)


def _short(arch: Mapping[str, Any]) -> str:
    """A short stable id of an architecture (for result keys)."""
    return hashlib.md5(arch_key(arch).encode()).hexdigest()[:8]


def _costs(cost_model: CostModel, arch: Mapping[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in cost_model.exact(dict(arch)).items() if v is not None}


def fit_and_score(build: Callable[[], torch.nn.Module], seed: int, dm: Any, epochs: int, lr: float) -> dict[str, float]:
    """Seed, build and train one model from scratch; its val (dev) and heldout accuracy and training seconds."""
    start = time.perf_counter()
    model = train_from_scratch(build, seed, dm.train_dataloader(), dm.val_dataloader(), epochs=epochs, learning_rate=lr)
    return {"val_acc": accuracy(model, dm.val_dataloader()), "heldout_acc": accuracy(model, dm.test_dataloader()),
            "train_s": round(time.perf_counter() - start, 1)}


def train_standalone(run: Run, key: str, kind: str, budget: float | None, dm: Any, build: Callable[[], torch.nn.Module],
                     costs: Mapping[str, float], seed: int, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Train one model from scratch with the shared recipe; record val (dev) and heldout accuracy."""
    if key in run.models:
        return run.models[key]
    record = {"kind": kind, "budget_macs": budget, "seed": seed, "costs": dict(costs),
              **fit_and_score(build, seed, dm, run.settings.epochs, run.settings.lr), **dict(extra or {})}
    run.models[key] = record
    run.save()
    log.info("%s: val %.3f heldout %.3f (%.0f s)", key, record["val_acc"], record["heldout_acc"], record["train_s"])
    return record


def search_supernet(run: Run, name: str, strategy: str, budget: float, seed: int, dm: Any, cost_model: CostModel,
                    ranking: Sequence[Mapping[str, Any]], work: Path) -> dict[str, Any]:
    """One search (resumable); records the chosen architecture, the inherited (recalibrated) val
    accuracy of every ranking architecture and of the chosen one (val and heldout)."""
    if name in run.data["supernets"]:
        return run.data["supernets"][name]
    s = run.settings
    penalties = [ResourcePenalty("macs", budget, s.lam)]
    kwargs: dict[str, Any] = {}
    if strategy not in ("random", "sandwich"):
        kwargs["strategy_kwargs"] = {"warmup_epochs": s.warmup_epochs}
    else:
        kwargs["evolution"] = s.evolution
    if strategy == "sandwich" and s.split != "none":
        kwargs["split"] = s.split
    if strategy == "sandwich" and s.finalists:
        kwargs["finalists"] = {"k": s.finalists, "epochs": s.epochs, "seeds": s.finalist_seeds,
                               "cover": s.finalist_cover}
        if s.finalist_folds:
            kwargs["finalists"]["folds"] = [(fold.train_dataloader(), fold.val_dataloader())
                                            for fold in dm.val_folds(s.finalist_seeds)]
    epochs = {"random": s.spos_epochs, "sandwich": s.sandwich_epochs}.get(strategy, s.search_epochs)
    # the sandwich supernet does not depend on the budget: later budgets resume its finished checkpoint
    out_dir = work / f"sandwich/s{seed}" if strategy == "sandwich" else work / name
    start = time.perf_counter()
    result = run_search(space_by_name(s.preset), dm.train_dataloader(), dm.val_dataloader(), strategy=strategy,
                        epochs=epochs, penalties=penalties,
                        cost_model=cost_model, learning_rate=s.lr, arc_learning_rate=s.arc_lr, out_dir=out_dir,
                        seed=seed, resume=True, progress=False, calib_batches=s.calib_batches, **kwargs)
    search_s = time.perf_counter() - start
    scorer = CandidateScorer(space_by_name(s.preset), result.supernet,
                             calibration_batches(dm.train_dataloader(), s.calib_batches), dm.val_dataloader())
    inherited = {arch_key(a): scorer(a) for a in ranking}
    chosen = scorer.model(result.arch)
    record = {"strategy": strategy, "budget_macs": budget, "seed": seed, "arch": result.arch,
              "costs": _costs(cost_model, result.arch), "search_s": round(search_s, 1),
              "within_budget": _costs(cost_model, result.arch)["macs"] <= budget,
              "inherited_val_acc": accuracy(chosen, dm.val_dataloader()),
              "inherited_heldout_acc": accuracy(chosen, dm.test_dataloader()),
              "ranking_inherited_val_acc": inherited,
              "meta": {k: v for k, v in result.meta.items() if k != "penalties"}}
    run.data["supernets"][name] = record
    run.save()
    log.info("%s: %s, %.0f MACs, inherited val %.3f (%.0f s)", name, strategy, record["costs"]["macs"],
             record["inherited_val_acc"], search_s)
    return record


def _pts(x: float | None) -> float | None:
    return None if x is None else round(100 * x, 2)


def searched_front_ends(models: Mapping[str, Any], strategy: str, budget: float | None) -> set[str | None]:
    """The front ends of ``strategy``'s models at ``budget`` (None: a space that does not search its front end)."""
    return {m["arch"].get(FRONTEND_LABEL) for m in models.values()
            if m["kind"] == strategy and m["budget_macs"] == budget}


def arch_spread(models: Mapping[str, Any], metric: str, strategy: str) -> dict[str, dict[str, float]]:
    """At each budget, how far apart the searched and random architectures that share the searched models' front
    end are, beyond the noise of their trainings (is there anything left to find among them?), in points:
    ``means_std_pts``, the std of the architectures' mean ``metric``; ``training_std_pts``, the mean std of one
    architecture's trainings; ``between_std_pts``, the spread of the means less their sampling noise,
    ``sqrt(max(0, var(means) - mean(var(trainings) / n)))``. Architectures with one training are left out."""
    runs: dict[float, dict[str, list[Any]]] = {}
    for m in models.values():
        if m["kind"] in ("random", "random-seed", strategy):
            runs.setdefault(m["budget_macs"], {}).setdefault(arch_key(m["arch"]), []).append(m)
    result = {}
    for budget, archs in runs.items():
        front_ends = searched_front_ends(models, strategy, budget)
        accs = [[m[metric] for m in ms] for ms in archs.values()
                if len(ms) > 1 and ms[0]["arch"].get(FRONTEND_LABEL) in front_ends]
        if len(accs) < 2:
            continue
        means = [statistics.fmean(a) for a in accs]
        training_std = statistics.fmean(statistics.stdev(a) for a in accs)
        noise = statistics.fmean(statistics.variance(a) / len(a) for a in accs)
        result[f"{budget:g}"] = {"n_architectures": len(accs),
                                 "means_std_pts": round(100 * statistics.stdev(means), 2),
                                 "training_std_pts": round(100 * training_std, 2),
                                 "between_std_pts": round(100 * max(0.0, statistics.variance(means) - noise) ** 0.5, 2)}
    return result


def verdict(run: Run, ranking_keys: Sequence[str], main_strategy: str) -> dict[str, Any]:
    """Kendall tau per supernet, per-budget comparisons, and the verdict keys of issue 9."""
    models, supernets, s = run.models, run.data["supernets"], run.settings
    standalone = {arch_key(m["arch"]): m for m in models.values() if m["kind"] == "random"}
    # kendall_tau's reference: each ranking architecture's val accuracy averaged over its training seeds (seed 0
    # and ranking_seeds); one training's noise (training_seed_std_pts) is of the order of the architectures' gaps
    seed_accs: dict[str, list[float]] = {}
    for m in models.values():
        if m["kind"] in ("random", "random-seed"):
            seed_accs.setdefault(arch_key(m["arch"]), []).append(m["val_acc"])
    references = {"mean": {a: statistics.mean(v) for a, v in seed_accs.items()},
                  "seed0": {a: m["val_acc"] for a, m in standalone.items()}}
    taus = {}
    for name, sup in supernets.items():
        inherited = sup["ranking_inherited_val_acc"]
        keys = [a for a in ranking_keys if a in standalone and a in inherited]
        if len(keys) >= 3:
            row = {}
            for ref, accs in references.items():
                tau = kendalltau([inherited[a] for a in keys], [accs[a] for a in keys]).statistic
                row["tau" if ref == "mean" else f"tau_{ref}"] = None if math.isnan(tau) else round(float(tau), 3)
            taus[name] = {**row, "n": len(keys), "reference_seeds": len(seed_accs[keys[0]])}
    per_budget = {}
    spread = arch_spread(models, "heldout_acc", main_strategy)
    for budget in s.budgets:
        rand = [m for m in standalone.values() if m["budget_macs"] == budget]
        # the random architectures with a front end of the verdict strategy's models: how much of the margin is
        # more than the front-end choice
        front_ends = searched_front_ends(models, main_strategy, budget)
        same = [m["heldout_acc"] for m in rand if m["arch"].get(FRONTEND_LABEL) in front_ends]
        row: dict[str, Any] = {"random_n": len(rand),
                               "random_median_heldout": statistics.median(m["heldout_acc"] for m in rand)
                               if rand else None,
                               "random_best_heldout": max(m["heldout_acc"] for m in rand) if rand else None,
                               "random_n_same_front_end": len(same),
                               "random_median_heldout_same_front_end": statistics.median(same) if same else None,
                               "same_front_end_spread": spread.get(f"{budget:g}")}
        for method in (*s.strategies, "evolution", f"{main_strategy}-top1"):
            accs = [m["heldout_acc"] for k, m in models.items() if m["kind"] == method and m["budget_macs"] == budget]
            if accs:
                mean = statistics.mean(accs)
                row[method] = {"heldout_mean": mean,
                               "heldout_std": statistics.stdev(accs) if len(accs) > 1 else 0.0, "n": len(accs),
                               "minus_random_median_pts": _pts(mean - row["random_median_heldout"]) if rand else None}
                if method == main_strategy and same:
                    row[method]["minus_same_front_end_median_pts"] = _pts(mean - statistics.median(same))
        per_budget[f"{budget:g}"] = row
        if main_strategy in row and f"{main_strategy}-top1" not in row:  # the finalist stage kept the evolution's pick
            row[f"{main_strategy}-top1"] = {"same_as": main_strategy}
    diffs = [row[main_strategy]["minus_random_median_pts"] for row in per_budget.values()
             if main_strategy in row and row[main_strategy]["minus_random_median_pts"] is not None]
    main_taus = {ref: [t[ref] for n, t in taus.items() if supernets[n]["strategy"] == main_strategy
                       and t[ref] is not None] for ref in ("tau", "tau_seed0")}
    gaps = [100 * (models[f"{n}/retrained"]["heldout_acc"] - sup["inherited_heldout_acc"])
            for n, sup in supernets.items() if sup["strategy"] == main_strategy and f"{n}/retrained" in models]
    peer_margins = [m["margin_pts"] for m in models.values() if m["kind"] == "peer" and m.get("margin_pts") is not None]
    seed_stds = []  # the same searched architecture trained with several seeds: the noise of one standalone result
    for n, sup in supernets.items():
        accs = [m["heldout_acc"] for k, m in models.items() if k.startswith(f"{n}/retrained")]
        if sup["strategy"] == main_strategy and len(accs) > 1:
            seed_stds.append(100 * statistics.stdev(accs))
    return {
        "strategy": main_strategy,
        "kendall_tau": round(statistics.mean(main_taus["tau"]), 3) if main_taus["tau"] else None,
        "kendall_tau_seed0_reference": round(statistics.mean(main_taus["tau_seed0"]), 3)
        if main_taus["tau_seed0"] else None,
        "searched_minus_random_median_pts": min(diffs) if diffs else None,
        "worst_margin_vs_peers_pts": min(peer_margins) if peer_margins else None,
        "inherited_vs_retrained_pts": round(max(gaps), 2) if gaps else None,  # retrained minus inherited, worst
        "kendall_tau_by_supernet": taus,
        "training_seed_std_pts": {"mean": round(statistics.mean(seed_stds), 2), "min": round(min(seed_stds), 2),
                                  "max": round(max(seed_stds), 2), "n_architectures": len(seed_stds)}
        if seed_stds else None,
        "per_budget": per_budget,
        "notes": [],
    }


def companion_vs_random(run: Run, searched: Mapping[str, Any],
                        companion_budgets: Mapping[tuple[float, str], Mapping[str, Any]], strategy: str) -> None:
    """The companions' budgets count in ``searched_minus_random_median_pts`` too: the issue's budgets run from
    the smallest peer to the largest. At each budget the space is the one the peer comparison takes there
    (:func:`chosen_preset`), so that one space answers both questions. The key becomes the smallest difference
    over every budget; ``searched_minus_random_median_by_budget`` lists them (None: no random baseline there), with
    what a search could find at each budget."""
    result = run.data["verdict"]
    rows = {**companion_budgets,
            **{(b, run.settings.preset): result["per_budget"][f"{b:g}"] for b in run.settings.budgets}}
    by_budget: dict[str, dict[str, Any]] = {}
    for budget in sorted({b for b, _ in rows}):
        preset = chosen_preset(searched, budget, strategy)
        row = rows.get((budget, preset), {})
        best, median = row.get("random_best_heldout"), row.get("random_median_heldout")
        by_budget[f"{budget:g}"] = {
            "preset": preset, "minus_random_median_pts": row.get(strategy, {}).get("minus_random_median_pts"),
            # what a search could find there: the best random architecture's lead, and the spread between the
            # architectures of the searched front end beyond their trainings' noise
            "best_random_minus_median_pts": _pts(best - median) if best is not None and median is not None else None,
            "random_n": row.get("random_n"),
            # the same margin against the random architectures of the searched models' front end only
            "minus_same_front_end_median_pts": row.get(strategy, {}).get("minus_same_front_end_median_pts"),
            "same_front_end_between_std_pts": (row.get("same_front_end_spread") or {}).get("between_std_pts")}
    diffs = [r["minus_random_median_pts"] for r in by_budget.values() if r["minus_random_median_pts"] is not None]
    result["searched_minus_random_median_by_budget"] = by_budget
    result["searched_minus_random_median_pts"] = min(diffs) if diffs else None


def markdown(run: Run) -> str:
    v = run.data.get("verdict", {})
    lines = ["# Search quality (heldout accuracy, %)", "",
             f"Settings: `{json.dumps(run.data['settings'])}`", "",
             "| model | kind | budget MACs | MACs | params | latency ms | val % | heldout % |",
             "|---|---|---|---|---|---|---|---|"]
    for key, m in sorted(run.models.items(), key=lambda kv: (kv[1].get("budget_macs") or 0, kv[1]["kind"])):
        lines.append(f"| {key} | {m['kind']} | {m.get('budget_macs') or '-'} | {m['costs'].get('macs', 0):,.0f} | "
                     f"{m['costs'].get('params', 0):,.0f} | {m.get('latency_ms', '-')} | {100 * m['val_acc']:.1f} | "
                     f"{100 * m['heldout_acc']:.1f} |")
    lines += ["", "Verdict: `" + json.dumps({k: v.get(k) for k in ("kendall_tau", "searched_minus_random_median_pts",
                                                                     "worst_margin_vs_peers_pts",
                                                                     "inherited_vs_retrained_pts")}) + "`"]
    return "\n".join(lines) + "\n"


def plot(run: Run, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    styles = {"random": ("x", "tab:gray"), "evolution": ("s", "tab:green"), "peer": ("^", "tab:red")}
    fig, ax = plt.subplots(figsize=(6, 4))
    for kind in sorted({m["kind"] for m in run.models.values()} - {"peer-seed"}):  # a peer is one point
        pts = [m for m in run.models.values() if m["kind"] == kind]
        marker, color = styles.get(kind, ("v", "tab:olive") if kind.endswith("-top1") else ("o", None))
        ax.scatter([m["costs"]["macs"] / 1e6 for m in pts], [100 * m["heldout_acc"] for m in pts], marker=marker,
                   color=color, label=kind)
    for budget in run.settings.budgets:
        ax.axvline(budget / 1e6, ls="--", color="k", lw=0.7)
    ax.set_xlabel("MACs [M]")
    ax.set_ylabel("heldout accuracy [%]")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, Settings]:
    """The command line, and the run's :class:`Settings` (``--quick``'s, then every option given)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny synthesized data, tiny space, 1 epoch (seconds)")
    p.add_argument("--out", type=Path, default=RESULTS / "search_quality.json")
    p.add_argument("--work", type=Path, help="supernet checkpoints (default: runs/search_quality next to --out)")
    p.add_argument("--shared", type=Path,
                   help="shared data folder (default: $NNI_KWS_SHARED_DATA or <repo>/../shared/data)")
    p.add_argument("--fresh", action="store_true", help="ignore a stored result with the same settings")
    p.add_argument("--demo-run", type=Path, help="a finished `nni-kws search` + `train` folder with the demo's "
                   "settings: inherited_vs_retrained_pts is taken from it (else from this benchmark's settings)")
    for f in dataclasses.fields(Settings):
        if f.type in ("int", "float", "str"):
            p.add_argument("--" + f.name.replace("_", "-"), type={"int": int, "float": float, "str": str}[f.type])
    p.add_argument("--budgets", type=lambda t: tuple(float(x) for x in t.split(",")))
    p.add_argument("--strategies", type=lambda t: tuple(t.split(",")))
    p.add_argument("--finalist-cover", type=lambda t: tuple(x for x in t.split(",") if x),
                   help="choices whose every value gets a finalist (comma-separated; '' for none)")
    p.add_argument("--seeds", type=int_list)
    p.add_argument("--retrain-seeds", type=int_list)
    p.add_argument("--ranking-seeds", type=int_list)
    p.add_argument("--finalist-folds", action="store_const", const=True,
                   help="each finalist's training i validates on fold i of dev's speakers (cross-validation)")
    p.add_argument("--no-spos", dest="spos", action="store_const", const=False, help="skip RandomOneShot + evolution")
    p.add_argument("--companion", type=Path, action="append", default=[],
                   help="another result file of this benchmark (e.g. another preset reaching a larger peer's MACs): "
                   "its searched models (same verdict strategy) also count in the peer comparison")
    args = p.parse_args(argv)

    settings = Settings()
    if args.quick:
        settings = Settings(preset="tiny", budgets=(3.3e5, 3.6e5), search_epochs=2, warmup_epochs=1, spos_epochs=1,
                            sandwich_epochs=1, finalists=2, finalist_seeds=1, retrain_seeds=(1,), ranking_seeds=(1,),
                            seeds=(0,), epochs=1, random=3, batch_size=16, calib_batches=2,
                            evolution={"population": 3, "sample": 2, "cycles": 2}, data="quick synthesized tones")
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(Settings)
                 if getattr(args, f.name, None) is not None}
    settings = dataclasses.replace(settings, **overrides)
    if not args.quick and settings.data not in (Settings.data, SYNTHESIZED):
        raise SystemExit(f"--data must be {Settings.data!r} or {SYNTHESIZED!r}, got {settings.data!r}")
    if settings.finalist_folds and settings.data == SYNTHESIZED:
        raise SystemExit("--finalist-folds needs list-defined data (the real dev list), not synthesized speech")
    if not settings.seeds:  # int_list accepts '' (no retrain or ranking seeds); a run needs a search seed
        raise SystemExit("--seeds: give at least one search seed")
    return args, settings


def train_arch(run: Run, key: str, kind: str, budget: float, dm: Any, arch: Mapping[str, Any],
               cost_model: CostModel, seed: int) -> dict[str, Any]:
    """:func:`train_standalone` of an architecture of the run's space."""
    def build() -> torch.nn.Module:
        return build_model(dict(arch), space_by_name(run.settings.preset))

    return train_standalone(run, key, kind, budget, dm, build, _costs(cost_model, arch), seed, {"arch": dict(arch)})


def random_key(arch: Mapping[str, Any], seed: int) -> str:
    """The record key of a random architecture's training with ``seed`` (seed 0 is the baseline's own)."""
    return f"random/{_short(arch)}" + (f"/s{seed}" if seed else "")


def train_random(run: Run, arch: Mapping[str, Any], seed: int, budget: float, dm: Any,
                 cost_model: CostModel) -> dict[str, Any]:
    """:func:`train_arch` of a random in-budget architecture under :func:`random_key`."""
    return train_arch(run, random_key(arch, seed), "random-seed" if seed else "random", budget, dm, arch, cost_model,
                      seed)


def random_in_budget(preset: str, cost_model: CostModel, n: int, index: int, lower: float, budget: float
                     ) -> list[dict[str, Any]]:
    """The ``n`` random architectures of space ``preset`` drawn for the ``index``-th budget: MACs in
    ``(lower, budget]``, the draw seeded by the index (so every run of one space and budgets draws the same)."""
    return random_archs(space_choices(space_by_name(preset)), n, seed=100 + index,
                        accept=lambda a: lower < cost_model.exact(dict(a))["macs"] <= budget)


def random_baseline(run: Run, cost_model: CostModel) -> dict[str, float]:
    """The random in-budget architectures (the random baseline and the ranking set): arch key -> its budget.

    Each budget draws between the previous budget and itself. Stored random models (reused from other settings)
    that are none of these are dropped; those that are take the budget they are drawn for here.
    """
    budget_of: dict[str, float] = {}
    ranking: list[dict[str, Any]] = []
    for i, (lower, budget) in enumerate(zip((0.0, *run.settings.budgets), run.settings.budgets)):
        archs = random_in_budget(run.settings.preset, cost_model, run.settings.random, i, lower, budget)
        budget_of.update((arch_key(a), budget) for a in archs)
        ranking += archs
    run.data["ranking_archs"] = ranking
    for key, model in list(run.models.items()):
        if model["kind"].startswith("random"):
            if arch_key(model["arch"]) in budget_of:
                model["budget_macs"] = budget_of[arch_key(model["arch"])]
            else:
                del run.models[key]
    return budget_of


def search_and_retrain(run: Run, dm: Any, cost_model: CostModel, budget_of: Mapping[str, float], work: Path) -> None:
    """Every supernet of the plan (the verdict strategy's first), each followed by the standalone training of its
    pick (and of the evolution's own pick where the finalists chose another); after the verdict strategy's model
    of a budget, the random architectures of that budget."""
    settings, ranking = run.settings, run.data["ranking_archs"]
    main_strategy = settings.strategies[0]
    plans = []
    for seed in settings.seeds:
        for i, budget in enumerate(settings.budgets):
            for strategy in settings.strategies:
                if strategy == main_strategy or settings.darts_budgets == "all" or i == 0:
                    plans.append((f"{strategy}/{budget:g}/s{seed}", strategy, budget, seed))
            if settings.spos:
                plans.append((f"evolution/{budget:g}/s{seed}", "random", budget, seed))
    plans.sort(key=lambda plan: plan[1] != main_strategy)  # the verdict's models first (stable sort)

    for name, strategy, budget, seed in plans:
        sup = search_supernet(run, name, strategy, budget, seed, dm, cost_model, ranking, work)
        kind = "evolution" if strategy == "random" else strategy
        train_arch(run, f"{name}/retrained", kind, budget, dm, sup["arch"], cost_model, seed)
        if strategy == main_strategy:  # seed-to-seed spread of standalone training: the same model, other seeds
            for extra in settings.retrain_seeds:
                train_arch(run, f"{name}/retrained_s{extra}", kind, budget, dm, sup["arch"], cost_model, extra)
        finalists = sup["meta"].get("evolution", {}).get("finalists")
        if finalists and finalists[0]["arch"] != sup["arch"]:  # ablation: the evolution's pick, no finalist stage
            train_arch(run, f"{name}/evolution_top1", f"{kind}-top1", budget, dm, finalists[0]["arch"], cost_model,
                       seed)
        if strategy == main_strategy:  # the random baseline of this budget right after its searched model
            for a in (r for r in ranking if budget_of[arch_key(r)] == budget):
                for s in (0, *settings.ranking_seeds):
                    train_random(run, a, s, budget, dm, cost_model)


def read_companions(run: Run, paths: Sequence[Path], searched: dict[str, Any]
                    ) -> tuple[dict[str, list[Mapping[str, Any]]], dict[tuple[float, str], Mapping[str, Any]]]:
    """Add the companions' searched models (same recipe and verdict strategy) to ``searched``; return their
    trainings of each peer (a peer's mean over every training is less noisy than over this run's alone) and
    their verdict rows by ``(budget, preset)``."""
    main_strategy = run.settings.strategies[0]
    peers_trained: dict[str, list[Mapping[str, Any]]] = {}
    budgets: dict[tuple[float, str], Mapping[str, Any]] = {}
    run.data["companions"] = {}
    for path in paths:
        other = json.loads(path.read_text())
        mismatch = [k for k in (*RECIPE, "strategies") if other["settings"].get(k) != run.data["settings"].get(k)
                    and not (k == "strategies" and other["settings"][k][0] == main_strategy)]
        if mismatch:
            raise SystemExit(f"{path}: another recipe or verdict strategy ({', '.join(mismatch)}); not comparable")
        if "verdict" not in other:
            raise SystemExit(f"{path}: no verdict yet (a run still going, or interrupted): finish it first")
        run.data["companions"][path.name] = {k: other["settings"][k] for k in ("preset", "budgets", "sandwich_epochs")}
        searched.update({f"{path.name}:{k}": {**m, "preset": other["settings"]["preset"]}
                         for k, m in other["models"].items() if m["kind"] == main_strategy})
        spread = arch_spread(other["models"], "heldout_acc", main_strategy)  # for files written before it counted
        for budget in other["settings"]["budgets"]:
            budgets[budget, other["settings"]["preset"]] = {"same_front_end_spread": spread.get(f"{budget:g}"),
                                                            **other["verdict"]["per_budget"][f"{budget:g}"]}
        for k, m in other["models"].items():
            if m["kind"] in ("peer", "peer-seed"):
                peers_trained.setdefault(k.split("/")[1], []).append(m)
    return peers_trained, budgets


def train_peers(run: Run, dm: Any, searched: Mapping[str, Any],
                companion_peers: Mapping[str, list[Mapping[str, Any]]]) -> None:
    """Train every peer with the training seeds the searched models get; record its mean (pooled with the
    companions' trainings) and its margin against the searched models found under its MACs."""
    peer_seeds = sorted({0, *run.settings.retrain_seeds})
    for name, build, costs in peers():
        record = train_standalone(run, f"peer/{name}", "peer", None, dm, build, costs, 0)
        own = [record] + [train_standalone(run, f"peer/{name}/s{seed}", "peer-seed", None, dm, build, costs, seed)
                          for seed in peer_seeds[1:]]
        accs = [m["heldout_acc"] for m in own]
        record["costs"] = costs  # (re)computed every run: cheap, and a record from an older counter is refreshed
        record["heldout_mean"], record["seeds"] = statistics.mean(accs), peer_seeds
        record["heldout_std"] = statistics.stdev(accs) if len(accs) > 1 else 0.0
        pooled = {_training_id(m): m["heldout_acc"] for m in own + list(companion_peers.get(name, []))}
        record["compared_heldout_mean"], record["compared_trainings"] = statistics.mean(pooled.values()), len(pooled)
        budget, preset, searched_acc = peer_margin(searched, costs["macs"], run.settings.strategies[0])
        record["compared_budget_macs"], record["compared_preset"] = budget, preset
        record["margin_pts"] = None if searched_acc is None else _pts(searched_acc - record["compared_heldout_mean"])
        run.save()


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args, settings = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    for name in ("pytorch_lightning", "lightning", "nni"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(settings.threads)

    tmp = tempfile.TemporaryDirectory() if args.quick else None
    try:
        with stop_on_signals():  # Ctrl-C / SIGTERM stop between batches, so the --quick folder is removed too
            return benchmark(args, settings, tmp)
    finally:
        if tmp is not None:
            tmp.cleanup()


def benchmark(args: argparse.Namespace, settings: Settings, tmp: tempfile.TemporaryDirectory | None) -> dict[str, Any]:
    """The whole benchmark (``tmp``: the --quick mode's data and work folder)."""
    if tmp:
        dm = quick_data(Path(tmp.name), settings)
    else:
        dm = (synthesized_data if settings.data == SYNTHESIZED else real_data)(settings, args.shared)
    work = args.work or (Path(tmp.name) / "work" if tmp else Path("runs") / "search_quality")
    # supernet checkpoints resume only under the settings they were trained with (another epoch count would
    # continue a finished schedule)
    work = work / _short({k: getattr(settings, k) for k in SUPERNET_SETTINGS})
    run = Run(args.out, settings, args.fresh)
    run.data["data"] = {"train": len(dm.dataset("training")), "val": len(dm.dataset("validation")),
                        "heldout": len(dm.dataset("testing")), "source": settings.data}
    run.data["environment"] = {"torch": torch.__version__, "threads": settings.threads, "cpus": os.cpu_count(),
                               "machine": platform.machine(), "loadavg_1min_start": os.getloadavg()[0]}
    cost_model = CostModel(space_by_name(settings.preset))

    budget_of = random_baseline(run, cost_model)
    search_and_retrain(run, dm, cost_model, budget_of, work)
    main_strategy = settings.strategies[0]
    searched = {k: {**m, "preset": settings.preset} for k, m in run.models.items() if m["kind"] == main_strategy}
    companion_peers, companion_budgets = read_companions(run, args.companion, searched)
    train_peers(run, dm, searched, companion_peers)

    measure_latencies(run)
    run.data["compute_s"] = {"searches": round(sum(x["search_s"] for x in run.data["supernets"].values()), 1),
                             "standalone_training": round(sum(m["train_s"] for m in run.models.values()), 1),
                             "note": "wall seconds on the shared machine, excluding evaluation and data loading"}
    # the demo's figures: from --demo-run, else those of the stored verdict (the demo folder need not be kept)
    demo = read_demo_run(args.demo_run) if args.demo_run else run.data.get("verdict", {}).get("demo_run")
    run.data["verdict"] = verdict(run, [arch_key(a) for a in run.data["ranking_archs"]], main_strategy)
    companion_vs_random(run, searched, companion_budgets, main_strategy)
    run.data["verdict"]["notes"] = notes(run)
    if demo:
        demo_gap(run, demo)
    run.save()
    md, png = args.out.with_suffix(".md"), args.out.with_suffix(".png")
    md.write_text(markdown(run))
    plot(run, png)
    return run.data


def measure_latencies(run: Run) -> None:
    """Batch-1 CPU latency (ms; median, one thread) of every model of ``run``, all timed together in
    interleaved rounds so that the machine's load hits them alike: the column compares within one run only."""
    from nni_kws.baselines import build_baseline
    from nni_kws.cost.latency import make_runner, time_runners

    if run.models and all("latency_ms" in m for m in run.models.values()):
        return  # a resumed run whose models were all timed together keeps those timings

    def ident(key: str, m: Mapping[str, Any]) -> str:  # one timing per distinct network
        return "/".join(key.split("/")[:2]) if m["kind"].startswith("peer") else arch_key(m["arch"])

    builders: dict[str, Callable[[], torch.nn.Module]] = {}
    for key, m in run.models.items():
        peer = m["kind"].startswith("peer")
        builders.setdefault(ident(key, m), (lambda n=key.split("/")[1]: build_baseline(n)) if peer
                            else (lambda a=m["arch"]: build_model(a, space_by_name(run.settings.preset))))
    times = time_runners({k: make_runner(build(), (1, SAMPLE_RATE)) for k, build in builders.items()}, repeats=30,
                         clock="cpu")  # the thread's CPU time: what other processes' preemption does not inflate
    for key, m in run.models.items():
        m["latency_ms"] = round(times[ident(key, m)], 3)
    run.data["latency"] = {"what": "batch-1 forward of one 1 s clip, torch CPU, 1 thread, median CPU time of 30 "
                           "in 3 interleaved rounds, measured together in this run (compare within it only)",
                           "loadavg_1min": os.getloadavg()[0]}


def read_demo_run(folder: Path) -> dict[str, Any]:
    """The numbers of a finished demo run (``nni-kws run`` folder) that ``inherited_vs_retrained_pts`` needs."""
    search, train = (json.loads((folder / stage / "result.json").read_text()) for stage in ("search", "train"))
    config = json.loads((folder / "config.json").read_text())
    return {"inherited_test_acc": search["test_acc"], "retrained_test_acc": train["test_acc"],
            "retrained_real_test_acc": train.get("real_test_acc"), "arch_macs": search["costs"]["macs"],
            "search_s": search["seconds"], "train_s": train["seconds"],
            **{k: config.get(k) for k in ("preset", "frontend", "strategy", "warmup_epochs", "search_epochs", "split",
                                          "train_epochs", "calib_batches", "max_macs", "lam")},
            "warmup_epochs_used": search.get("warmup_epochs"), "data": "synthesized (demo default)"}


def demo_gap(run: Run, demo: Mapping[str, Any]) -> None:
    """Set ``inherited_vs_retrained_pts`` from a demo run (:func:`read_demo_run`): retrained minus searched
    (inherited, recalibrated) accuracy on its test split; the benchmark-settings value is kept under another key."""
    v = run.data["verdict"]
    v["inherited_vs_retrained_pts_benchmark_settings"] = v["inherited_vs_retrained_pts"]
    v["inherited_vs_retrained_pts"] = _pts(demo["retrained_test_acc"] - demo["inherited_test_acc"])
    v["demo_run"] = dict(demo)
    v["notes"] = [n for n in v["notes"] if "not the demo's" not in n]
    v["notes"].append(f"inherited_vs_retrained_pts: demo settings with --strategy {demo.get('strategy')} "
                      "(synthesized test split); the value at this benchmark's settings (heldout) is "
                      "inherited_vs_retrained_pts_benchmark_settings")


def notes(run: Run) -> list[str]:
    s = run.settings
    val = "synthesized validation split" if s.data == SYNTHESIZED else "dev validation part"
    out = [f"scaled down for a shared 2-core CPU: preset {s.preset}, {s.epochs} standalone epochs, "
           f"{s.search_epochs} search epochs ({s.warmup_epochs} warm-up) for the DARTS family, {s.spos_epochs} SPOS "
           "and "
           f"{s.sandwich_epochs} sandwich epochs, {s.random} random architectures per budget, search seeds "
           f"{list(s.seeds)}, {s.threads} thread(s)",
           f"the verdict strategy's model of search seed s is trained with seed s and again with seeds "
           f"{list(s.retrain_seeds)} (so a seed can repeat; two trainings with one seed still differ, since the "
           "data order is drawn from the loader's own generator): training_seed_std_pts is the run-to-run spread",
           f"{s.strategies[0]}: "
           + (f"one supernet per {s.split} (each {s.sandwich_epochs} epochs)" if s.split != "none" else "one supernet")
           + " for every budget; the budget applies in the evolution"
           + (f" and then {s.finalists} finalists (the evolution's best by inherited dev-val accuracy) trained "
              f"{s.epochs} epochs on dev-train, picked by dev-val; '{s.strategies[0]}-top1' is the evolution's pick "
              "without that stage" if s.finalists else ""),
           f"ranking (kendall_tau) uses the {val}; every accuracy reported as heldout_* is on heldout, "
           "which selected nothing",
           "inherited_vs_retrained_pts is measured at these benchmark settings, not the demo's",
           "searched_minus_random_median_by_budget: minus_same_front_end_median_pts is the margin against the "
           "random architectures of the searched models' front end alone (how much of it is more than the front-end "
           "choice)"]
    scored = [t["n"] for t in run.data.get("verdict", {}).get("kendall_tau_by_supernet", {}).values()]
    if scored and max(scored) < len(run.data["ranking_archs"]):  # --random grew after the supernets scored theirs
        out.append(f"kendall_tau: over the {max(scored)} random architectures the supernets scored when they ran, "
                   f"of the {len(run.data['ranking_archs'])} drawn now")
    peer_rows = {k: m for k, m in run.models.items() if m["kind"] == "peer"}
    if not peer_rows:
        out.append("peers missing (no nni_kws.baselines): worst_margin_vs_peers_pts is null")
    cheapest = f"{CostModel(space_by_name(s.preset)).cheapest('macs')[1]:,.0f} MACs"
    for key, m in peer_rows.items():
        if m.get("margin_pts") is None:
            out.append(f"{key}: {m['costs'].get('macs', 0):,.0f} MACs is below every budget (the {s.preset} space's "
                       f"cheapest architecture: {cheapest}); no searched model to compare at its cost")
    for key, m in peer_rows.items():
        budget = m.get("compared_budget_macs")
        if budget is not None and budget < 0.5 * m["costs"].get("macs", 0):
            out.append(f"{key}: {m['costs']['macs']:,.0f} MACs, compared with the searched model of the largest budget "
                       f"({budget:,.0f}, preset {m.get('compared_preset')}), far cheaper: no searched model near its "
                       "cost (see --companion)")
    if s.data == SYNTHESIZED:
        out.append("trained on synthesized speech only (the default dataset; finalists and rankings on its "
                   "validation split), reported on real heldout clips")
    elif SYNTHESIZED_JSON.is_file():
        out.append(f"the same comparison trained on synthesized speech only: {SYNTHESIZED_JSON.name}")
    else:
        out.append("not run (CPU time): the synthesized-only training comparison")
    return out


if __name__ == "__main__":
    try:
        main()
    except StopRequested as stop:  # every finished model is kept in --out: the same command resumes
        print(f"search_quality: {stop}; the same command resumes", file=sys.stderr)
        sys.exit(exit_code(stop))
