"""``run_sweep``: search + retrain (+ quantize) over λ or a budget and over front ends; the Pareto front."""
from __future__ import annotations

import dataclasses
import shutil
import time
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path
from typing import Any, Sequence

from tqdm.auto import tqdm

from nni_kws.cost.budgets import BUDGETS, budget_option
from nni_kws.files import write_json
from nni_kws.report import pareto_front, write_sweep_report
from nni_kws.search.oneshot import WEIGHTS_ONLY
from nni_kws.training import torch_threads

from .config import CONFIG, PipelineConfig, check_inputs, stage_options
from .lock import run_folder_lock
from .results import device_name
from .rundir import check_stage_options, stage_done
from .stages import Pipeline

__all__ = ["SweepPlan", "SWEEP_KNOBS", "run_sweep"]

#: What a sweep may vary: λ, or one budget's ``max_<name>`` option.
SWEEP_KNOBS: tuple[str, ...] = ("lam", *(budget_option(name) for name in BUDGETS))


@dataclass
class SweepPlan:
    """What a sweep varies: ``knob`` ('lam' or a budget option such as 'max_macs') over ``values``."""
    knob: str = "lam"
    values: Sequence[float] = (0.0, 0.3, 1.0, 3.0)
    frontends: Sequence[str] = ("raw",)
    quantize: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def _point_dir(out: Path, frontend: str, knob: str, value: float) -> Path:
    return out / frontend / f"{knob}-{value:g}"


def run_sweep(cfg: PipelineConfig, plan: SweepPlan, *, resume: bool = False, overwrite: bool = False) -> dict[str, Any]:
    """Search + retrain (+ quantize) for every front end × knob value; writes sweep.json/.md and pareto.png.

    Every point is an ordinary run folder ``<out>/<frontend>/<knob>-<value>/``, so an interrupted
    sweep resumes point by point and stage by stage. Data is loaded once and shared.
    """
    if plan.knob not in SWEEP_KNOBS:
        raise ValueError(f"a sweep varies one of {', '.join(SWEEP_KNOBS)}, not {plan.knob!r}")
    for frontend, value in product(plan.frontends, plan.values):  # every point valid before anything runs
        check_inputs(dataclasses.replace(cfg, frontend=frontend, **{plan.knob: value}))
    if plan.knob == "lam" and cfg.strategy in WEIGHTS_ONLY:
        raise ValueError(f"a λ sweep needs a strategy with an architecture step that λ weighs; --strategy "
                         f"{cfg.strategy} picks by evolution within the budget: sweep --budgets, or give --strategy "
                         "darts (or gumbel, gumbel-hard, proxyless)")
    if plan.knob == "lam" and not cfg.budgets():
        raise ValueError("a λ sweep needs a budget to weigh: give one of --max-macs, --max-params, --max-peak-act-kb, "
                         "--max-latency-ms (or sweep a budget with --budgets)")
    out = Path(cfg.out)
    with run_folder_lock(out):  # the whole sweep; each point's folder is locked too
        if overwrite:
            for frontend in plan.frontends:
                shutil.rmtree(out / frontend, ignore_errors=True)
        stages = ["search", "train"] + (["quantize"] if plan.quantize else [])
        jobs = [(fe, v) for fe in plan.frontends for v in plan.values]
        if resume:  # a point made with other options is refused before any record is rewritten
            for frontend, value in jobs:
                point = _point_config(cfg, plan, out, frontend, value)
                for stage in stages:
                    check_stage_options(Path(point.out), stage, stage_options(point, stage))
        write_json(out / CONFIG, {**cfg.to_json(), "sweep": dataclasses.asdict(plan)})
        start = time.perf_counter()
        with torch_threads(cfg.threads):
            points = _sweep_points(cfg, plan, jobs, out, stages, resume)
        return _finish_sweep(cfg, plan, points, out, start)


def _point_config(cfg: PipelineConfig, plan: "SweepPlan", out: Path, frontend: str, value: float) -> PipelineConfig:
    """The options of one point: its folder, front end and knob value, and one latency table per front end
    (``cfg.latency_lut``, else the sweep's own), so the points' latencies compare. A sweep maps the accuracy-cost
    trade-off: points over budget (small λ) are results, not errors."""
    return dataclasses.replace(cfg, out=str(_point_dir(out, frontend, plan.knob, value)), frontend=frontend,
                               latency_lut=cfg.latency_lut or str(out / frontend / "profile" / "latency.json"),
                               allow_over_budget=True, **{plan.knob: value}, **plan.extra)


def _sweep_points(cfg: PipelineConfig, plan: "SweepPlan", jobs: list[tuple[str, float]], out: Path,
                  stages: list[str], resume: bool) -> list[dict[str, Any]]:
    """Run (or, resuming, read back) every point of a sweep; returns the points' records."""
    dm = None
    points: list[dict[str, Any]] = []
    for frontend, value in tqdm(jobs, desc="sweep", unit="point", disable=not cfg.progress):
        sub = _point_config(cfg, plan, out, frontend, value)
        if not Path(sub.latency_lut).is_file():  # measured once per front end (the sweep's own table)
            Pipeline(dataclasses.replace(cfg, out=str(out / frontend), frontend=frontend)).latency_table()
        pipe = Pipeline(sub, data_module=dm)
        if dm is None:
            dm = pipe.data_module
        point_done = all(stage_done(sub.out, s) for s in stages)
        if not (resume and point_done):
            with run_folder_lock(sub.out):
                pipe.prepare(stages, resume=resume, overwrite=False)
                pipe.search(resume=resume)
                pipe.train(resume=resume)
                if plan.quantize:
                    pipe.quantize(resume=resume)
        searched, trained = stage_done(sub.out, "search"), stage_done(sub.out, "train")
        quant = stage_done(sub.out, "quantize") if plan.quantize else None
        points.append({"frontend": frontend, plan.knob: value, "label": f"{value:g}", "arch": trained["arch"],
                       "costs": trained["costs"], "val_acc": trained.get("val_acc"),
                       "test_acc": trained.get("test_acc"),
                       "real_test_acc": trained.get("real_test_acc"), "searched_test_acc": searched.get("test_acc"),
                       "quant": quant and {k: quant.get(k) for k in ("test_acc", "real_test_acc", "bits_weight",
                                                                     "bits_act", "costs")},
                       "seconds": searched["seconds"] + trained["seconds"] + (quant or {}).get("seconds", 0.0),
                       "dir": sub.out})
    return points


def _finish_sweep(cfg: PipelineConfig, plan: "SweepPlan", points: list[dict[str, Any]], out: Path,
                  start: float) -> dict[str, Any]:
    """Mark each front end's Pareto points; write sweep.json, sweep.md and pareto.png."""
    for frontend in plan.frontends:
        sub_idx = [i for i, p in enumerate(points) if p["frontend"] == frontend]
        for cost in ("macs", "params", "latency_ms"):
            front = {sub_idx[j] for j in pareto_front([points[i] for i in sub_idx], cost)}
            for i in sub_idx:
                points[i].setdefault("pareto", {})[cost] = i in front
    sweep = {"knob": plan.knob, "values": list(plan.values), "frontends": list(plan.frontends),
             "config": cfg.to_json(), "device": device_name(), "points": points,
             "seconds": time.perf_counter() - start}
    write_json(out / "sweep.json", sweep)
    write_sweep_report(sweep, out)
    return sweep
