"""Benchmark of the one-shot search: supernet step time vs the derived child's, and search wall time.

1. Step time on the ``--preset`` space (default 'small') with ``--batch`` random 16,000-sample clips:
   - the DARTS supernet (every kernel/width a 1-D mixed op, both front ends, all depths), one
     weight step (forward, cross-entropy, backward, SGD; no gradients of the architecture weights, as in
     the search) at the initial architecture weights;
   - one full DARTS iteration (architecture step with a MACs penalty + weight step), and its
     average with one architecture step per 5 weight steps (``arch_every=5``, the ICPR schedule);
   - the same weight step on plain children from :func:`derive_model`: the DARTS argmax child at
     initialisation and the largest child (every maximum option), the fair reference for weight
     sharing, which always computes the largest kernels and widths.
   Wall-clock and CPU time, min and median over ``--steps`` rounds after ``--warmup`` (the steps take
   turns within a round), with ``--threads`` torch threads. On a shared CPU the process CPU time is
   the stable measure (the load average is recorded); on a GPU the wall clock is. Target: supernet
   weight step and full iteration <= 4x the derived child's step.
2. One sandwich step (largest, smallest and one random path on a batch: forward, loss, backward) on the
   ``--preset`` space with the SincConv front end, with the front end run once for all paths (the default,
   :func:`~nni_kws.search.sandwich.front_end_once`) and once per path.
3. The derived child's weight step with the SincConv front end's ``log(1 + |x|)`` written as
   :class:`~nni_kws.space.blocks.LogCompression` does (``log``) and as ``torch.log1p``.
4. Wall time of a short ``run_search`` (``--search-epochs`` epochs, ``--search-clips`` random clips
   for training and as many for the architecture step, batch ``--batch``) with a MACs penalty.

    python benchmarks/search.py [--preset small] [--batch 32] [--out benchmarks/results/search.json]
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import random
import statistics
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from nni_kws.cost import CostModel
from nni_kws.search import ResourceDARTS, ResourcePenalty, arch_probs, argmax_arch, penalized_loss, run_search
from nni_kws.search.sandwich import SandwichOneShot
from nni_kws.search.strategy import ResourceDartsModule
from nni_kws.space import FRONTEND_LABEL, build_model, build_space, space_choices
from nni_kws.space.blocks import LogCompression
from nni_kws.space.mixed_ops import derive_model
from nni_kws.training import KwsModule, seed_everything

WHY_FULL_ITERATION = (
    "an architecture step is a second forward+backward pass through the supernet: the plain layers skip their weights' "
    "gradients (and the weight step the alphas'), but a mixed layer's masked kernel depends on the alphas, so its "
    "gradient is computed anyway; with --arch-every 5 (the ICPR schedule) one runs per 5 weight steps")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(steps: dict[str, Callable[[], None]], device: torch.device, warmup: int,
               rounds: int) -> dict[str, dict[str, float]]:
    """Wall-clock and process CPU seconds of each named step (min and median over ``rounds`` after
    ``warmup``). The steps take turns, one of each per round, so that a change in the machine's load
    falls on all of them alike and their ratios hold. On a shared CPU the CPU time is the stable
    figure: other processes stretch the wall clock, not the work done."""
    for _ in range(warmup):
        for step in steps.values():
            step()
    wall: dict[str, list[float]] = {name: [] for name in steps}
    cpu: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            _sync(device)
            start, start_cpu = time.perf_counter(), time.process_time()
            step()
            _sync(device)
            wall[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    return {name: {"wall_min_s": min(wall[name]), "wall_median_s": statistics.median(wall[name]),
                   "cpu_min_s": min(cpu[name]), "cpu_median_s": statistics.median(cpu[name])} for name in steps}


def add_ratios(result: dict[str, Any], numerator: str, denominator: str, name: str,
               stats: tuple[str, ...] = ("cpu_median_s", "wall_median_s")) -> None:
    """``result["ratio_<name>_<stat>"]``: the time of step ``numerator`` over that of ``denominator``, per statistic."""
    for stat in stats:
        result[f"ratio_{name}_{stat[:-2]}"] = result[numerator][stat] / result[denominator][stat]


def random_batch(batch: int, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """``batch`` random 1 s clips and labels of the 12 classes (timing needs no real audio)."""
    return torch.randn(batch, 1, 16000, device=device), torch.randint(0, 12, (batch,), device=device)


def weight_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, params: list[nn.Parameter]) -> Callable[[], None]:
    opt = torch.optim.SGD(params, lr=0.01, momentum=0.9)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return step


def bench_steps(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    seed_everything(args.seed)
    space = build_space(args.preset)
    cost_model = CostModel(space)
    choices = space_choices(space)
    strategy = ResourceDARTS(penalties=[ResourcePenalty("macs", 1e6, 1.0)], cost_model=cost_model)
    supernet = strategy.mutate_model(space).to(device).train()
    module = ResourceDartsModule(KwsModule(), penalties=strategy.penalties, cost_model=cost_model)
    module.set_model(supernet)
    alphas = module.arch_parameters()
    weights = [p for p in supernet.parameters() if all(p is not a for a in alphas)]

    x, y = random_batch(args.batch, device)
    xv, yv = random_batch(args.batch, device)

    supernet_weight_step = weight_step(supernet, x, y, weights)

    def sup_step() -> None:  # as in ResourceDartsModule.training_step: no gradients of the alphas
        with module.alphas_frozen():
            supernet_weight_step()
    arc_opt = torch.optim.Adam(alphas, 3e-3, betas=(0.5, 0.999), weight_decay=1e-3)

    def arch_step() -> None:  # as in ResourceDartsModule.training_step: no weight gradients
        arc_opt.zero_grad(set_to_none=True)
        with module.weights_frozen():
            loss, _ = penalized_loss(F.cross_entropy(supernet(xv), yv), module.expected_costs(), module.penalties)
            loss.backward()
        arc_opt.step()

    def darts_iteration() -> None:  # ResourceDartsModule.training_step without Lightning's bookkeeping
        arch_step()
        sup_step()

    counter = [0]

    def every_5th() -> None:  # arch_every=5 (ICPR): one architecture step per 5 weight steps
        if counter[0] % 5 == 0:
            arch_step()
        counter[0] += 1
        sup_step()

    with torch.no_grad():
        derived_arch = argmax_arch(arch_probs(module))
    largest_arch = {label: (max(values) if label != FRONTEND_LABEL else "sinc") for label, values in choices.items()}
    if FRONTEND_LABEL in choices and "sinc" not in choices[FRONTEND_LABEL]:
        largest_arch[FRONTEND_LABEL] = choices[FRONTEND_LABEL][0]

    child_archs = {"derived_child": derived_arch, "largest_child": largest_arch}
    children = {name: derive_model(build_space(args.preset), arch, supernet).to(device).train()
                for name, arch in child_archs.items()}
    result: dict[str, Any] = time_steps({
        "supernet_weight_step": sup_step, "supernet_darts_iteration": darts_iteration,
        # per-iteration medians of a cycle are misleading here; time whole cycles of 5 and divide
        "supernet_darts_iteration_arch_every_5": lambda: [every_5th() for _ in range(5)],
        **{name: weight_step(child, x, y, list(child.parameters())) for name, child in children.items()}},
        device, args.warmup, args.steps)
    result["supernet_darts_iteration_arch_every_5"] = {
        k: v / 5 for k, v in result["supernet_darts_iteration_arch_every_5"].items()}
    for name, arch in child_archs.items():
        costs = cost_model.exact(arch)
        result[name].update(arch=arch, macs=costs["macs"], params=costs["params"])
    for step, child in (("weight_step", "derived_child"), ("weight_step", "largest_child"),
                        ("darts_iteration", "derived_child"), ("darts_iteration_arch_every_5", "derived_child")):
        add_ratios(result, f"supernet_{step}", child, f"{step}_vs_{child}",
                   ("cpu_median_s", "wall_min_s", "wall_median_s"))
    result["supernet_params"] = sum(p.numel() for p in weights)
    return result


def bench_sandwich(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """A sandwich step with the front end run once per step vs once per path (the same random paths)."""
    seed_everything(args.seed)
    x, y = random_batch(args.batch)
    loader = DataLoader(TensorDataset(x, y), batch_size=args.batch)
    strategy = SandwichOneShot(n_random=1)
    run_search(build_space(args.preset, frontend="sinc"), loader, loader, strategy=strategy, epochs=0,
               progress=False, evolution={"population": 1, "sample": 1, "cycles": 0})
    module = strategy.oneshot_module.to(device).train()
    module.trainer = module.training_module.trainer = None  # steps outside the fit loop: no logging
    x, y = x.to(device), y.to(device)

    def step(shared: bool) -> Callable[[], None]:
        def run() -> None:
            module.shares_front_end = shared  # overrides the cached property
            random.seed(args.seed)  # the same random path in every step of both
            module.zero_grad(set_to_none=True)
            module.training_step((x, y), 0).backward()
        return run

    result: dict[str, Any] = time_steps({"front_end_once": step(True), "front_end_per_path": step(False)}, device,
                                        args.warmup, args.steps)
    add_ratios(result, "front_end_once", "front_end_per_path", "once_vs_per_path")
    return result


class Log1pCompression(nn.Module):
    """``LogCompression`` as it was written before: ``torch.log1p(|x|)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log1p(x.abs())


def bench_log_compression(args: argparse.Namespace, device: torch.device, arch: dict[str, Any]) -> dict[str, Any]:
    """Weight step of ``arch`` (with a SincConv front end) with ``LogCompression`` against ``torch.log1p``."""
    seed_everything(args.seed)
    model = build_model({**arch, FRONTEND_LABEL: "sinc"} if FRONTEND_LABEL in arch else arch,
                        build_space(args.preset)).to(device).train()
    x, y = random_batch(args.batch, device)
    train_step = weight_step(model, x, y, list(model.parameters()))
    logs = [(parent, name) for parent in model.modules() for name, m in parent.named_children()
            if isinstance(m, LogCompression)]
    if not logs:
        raise ValueError("the benchmarked architecture has no LogCompression (no SincConv front end)")

    def step(module: type[nn.Module]) -> Callable[[], None]:
        def run() -> None:
            for parent, name in logs:
                setattr(parent, name, module())
            train_step()
        return run

    result: dict[str, Any] = time_steps({"log": step(LogCompression), "log1p": step(Log1pCompression)}, device,
                                        args.warmup, args.steps)
    add_ratios(result, "log", "log1p", "log_vs_log1p")
    return result


def bench_search(args: argparse.Namespace) -> dict[str, Any]:
    seed_everything(args.seed)
    g = torch.Generator().manual_seed(args.seed)

    def loader() -> DataLoader:
        data = TensorDataset(torch.randn(args.search_clips, 1, 16000, generator=g),
                             torch.randint(0, 12, (args.search_clips,), generator=g))
        return DataLoader(data, batch_size=args.batch, shuffle=True)

    space = build_space(args.preset)
    cost_model = CostModel(space)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        result = run_search(space, loader(), loader(), strategy="darts", epochs=args.search_epochs,
                            penalties=[ResourcePenalty("macs", 1e6, 1.0)], cost_model=cost_model, out_dir=tmp,
                            progress=not args.quiet)
        seconds = time.perf_counter() - start
    steps = args.search_epochs * -(-args.search_clips // args.batch)
    return {"strategy": "darts", "epochs": args.search_epochs, "train_clips": args.search_clips,
            "val_clips": args.search_clips, "batch": args.batch, "iterations": steps,
            "wall_s": round(seconds, 2), "s_per_iteration": round(seconds / steps, 3),
            "arch": result.arch, "expected_macs_last_epoch": result.history[-1]["expected"]["macs"]}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=15, help="timed rounds (each times every step once)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--search-epochs", type=int, default=2)
    parser.add_argument("--search-clips", type=int, default=64)
    parser.add_argument("--device", default="auto", help="auto (cuda if available), cpu or cuda")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: stable CPU timings)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--out", default="benchmarks/results/search.json")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=RuntimeWarning, module="nni")
    if args.quiet:
        logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          "cpu" if args.device == "auto" else args.device)

    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    steps = bench_steps(args, device)
    sandwich = bench_sandwich(args, device)
    log_compression = bench_log_compression(args, device, steps["derived_child"]["arch"])
    search = bench_search(args)
    key = f"ratio_weight_step_vs_derived_child_{'cpu_median' if device.type == 'cpu' else 'wall_median'}"
    full_key = key.replace("weight_step", "darts_iteration")
    report = {
        "benchmark": "search", "preset": args.preset, "batch": args.batch, "clip_samples": 16000,
        "target": "supernet weight step and full DARTS iteration (architecture + weight step) <= 4x the derived "
                  "child's step",
        "judged_on": key, "ratio": steps[key], "met": steps[key] <= 4.0,
        "full_iteration": {"judged_on": full_key, "ratio": steps[full_key], "met": steps[full_key] <= 4.0,
                           "amortised_arch_every_5_ratio":
                               steps[full_key.replace("iteration", "iteration_arch_every_5")],
                           "why": WHY_FULL_ITERATION},
        "step_time": steps, "sandwich_step": sandwich, "log_compression_step": log_compression, "search": search,
        "environment": {"device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
                        "torch": torch.__version__, "threads": torch.get_num_threads(),
                        "python": platform.python_version(), "machine": platform.machine(),
                        "cpus": os.cpu_count(), "loadavg_1min_before_after": [load_before[0], os.getloadavg()[0]]},
    }
    out = Path(args.out)
    if out.is_file():  # measured ways to shorten the iteration that did not pay, recorded by hand, stay on record
        tried = json.loads(out.read_text()).get("full_iteration", {}).get("tried")
        if tried:
            report["full_iteration"]["tried"] = tried
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({"judged_on": key, "ratio": round(steps[key], 2), "met": report["met"],
                      **{k: round(v, 2) for k, v in steps.items() if k.startswith("ratio")},
                      "sandwich_once_vs_per_path": round(sandwich["ratio_once_vs_per_path_cpu_median"], 2),
                      "log_vs_log1p": round(log_compression["ratio_log_vs_log1p_cpu_median"], 2),
                      "search_wall_s": search["wall_s"]}))
    return report


if __name__ == "__main__":
    main()
