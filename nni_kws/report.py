"""Human-readable outputs of a run or a sweep: ``report.md`` and ``pareto.png``.

Everything here reads the machine-readable results (``results.json`` / ``sweep.json`` dicts written by
:mod:`nni_kws.pipeline`), so a report can be re-rendered from a finished run without retraining.
Plots use matplotlib's Agg backend (no display needed).
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from nni_kws.cost.budgets import BUDGETS, budget_option, describe_budgets, describe_over_budget, with_kb
from nni_kws.data.paths import REAL_TEST_DIR
from nni_kws.space import describe_arch

__all__ = ["COST_AXES", "SEARCH_QUALITY_JSONS", "benchmark_points", "test_labels", "pareto_front", "plot_pareto",
           "render_report", "render_sweep", "write_report", "write_sweep_report"]

#: Results of ``benchmarks/search_quality.py``: random architectures and peers drawn next to a run's points.
_RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
#: The search-quality benchmark's results on the real-speech protocol, one per space it searched (compact, wide).
SEARCH_QUALITY_JSONS = (_RESULTS / "search_quality.json", _RESULTS / "search_quality_wide_folds.json")

#: Cost axes of the Pareto plot: key in a point's ``costs`` -> (axis label, scale to display units).
COST_AXES: dict[str, tuple[str, float]] = {
    "macs": ("MACs per inference [M]", 1e-6),
    "params": ("parameters [k]", 1e-3),
    "weight_kb": ("weight memory [kB]", 1.0),
    "latency_ms": ("estimated latency [ms]", 1.0),
}

# Marker style per point kind (run report) so searched / retrained / quantized read at a glance.
# (decreasing sizes: when costs coincide, every marker stays visible)
_KIND_STYLE = {
    "searched": dict(marker="o", color="tab:gray", s=130),
    "retrained": dict(marker="s", color="tab:blue", s=70),
    "quantized": dict(marker="D", color="tab:red", s=32),
    "random (benchmark)": dict(marker="v", color="0.45", s=30),
    "peer (benchmark)": dict(marker="^", color="tab:purple", s=50),
    "searched (benchmark)": dict(marker="o", color="tab:green", s=40),
}
_FRONTEND_COLORS = ["tab:blue", "tab:orange", "tab:green", "tab:purple", "tab:brown"]


def _num(value: Any) -> float:
    """``value`` as a float, NaN for None/missing (so plots and fronts skip it)."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def pareto_front(points: Sequence[Mapping[str, Any]], cost: str, metric: str = "test_acc") -> list[int]:
    """Indices of the points not dominated in (lower ``costs[cost]``, higher ``metric``), by cost.

    A point is dominated when another one costs no more and is at least as accurate, and is strictly
    better in one of the two. Points missing either value are ignored.
    """
    valid = [(i, _num(p.get("costs", {}).get(cost)), _num(p.get(metric))) for i, p in enumerate(points)]
    valid = [v for v in valid if not (math.isnan(v[1]) or math.isnan(v[2]))]
    front, best = [], -math.inf
    for i, c, acc in sorted(valid, key=lambda v: (v[1], -v[2])):
        if acc > best:
            front.append(i)
            best = acc
    return front


def _fmt(value: Any, digits: int = 2, scale: float = 1.0, pct: bool = False) -> str:
    v = _num(value)
    if math.isnan(v):
        return "–"
    return f"{100 * v:.{digits}f}" if pct else f"{v * scale:,.{digits}f}"


def plot_pareto(points: Sequence[Mapping[str, Any]], path: str | Path, *, metric: str = "test_acc",
                second_metric: str | None = "real_test_acc", title: str = "",
                axes: Iterable[str] = ("macs", "params", "weight_kb", "latency_ms"), group: str = "kind",
                budgets: Mapping[str, float] | None = None) -> Path:
    """Accuracy against each cost of ``axes`` (one panel each) for ``points``; writes a PNG.

    Each point is ``{"name", "kind" or "frontend", "costs": {...}, metric: float in [0, 1]}``.
    With ``group='kind'`` (a run) points get the searched/retrained/quantized style; with
    ``group='frontend'`` (a sweep) every front end gets a colour and its Pareto front a line.
    ``second_metric`` (the real test accuracy) is drawn as hollow markers of the same style (named in the legend
    by the points' ``second_label``, when they have one, else by the metric);
    ``budgets`` (``{cost key: limit}``, display units as in the costs) as dashed vertical lines.
    """
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    axes = [a for a in axes if any(not math.isnan(_num(p.get("costs", {}).get(a))) for p in points)] or ["macs"]
    has_second = bool(second_metric) and any(not math.isnan(_num(p.get(second_metric))) for p in points)
    ncols = 2 if len(axes) > 1 else 1
    nrows = math.ceil(len(axes) / ncols)
    fig, grid = plt.subplots(nrows, ncols, figsize=(5.4 * ncols, 3.9 * nrows), squeeze=False)
    groups: dict[str, list[int]] = {}
    for i, p in enumerate(points):
        groups.setdefault(str(p.get(group, "point")), []).append(i)
    for ax, cost in zip(grid.flat, axes):
        label, scale = COST_AXES.get(cost, (cost, 1.0))
        for g, (name, idx) in enumerate(groups.items()):
            sub = [points[i] for i in idx]
            style = dict(_KIND_STYLE.get(name, dict(marker="o", color=_FRONTEND_COLORS[g % len(_FRONTEND_COLORS)],
                                                    s=46)))
            color = style.pop("color")
            xs = [_num(p.get("costs", {}).get(cost)) * scale for p in sub]
            for key, filled in ((metric, True), (second_metric, False)):
                if not key or (not filled and not has_second):
                    continue
                ys = [100 * _num(p.get(key)) for p in sub]
                if all(math.isnan(y) for y in ys):
                    continue
                hollow = sub[0].get("second_label") or key.replace("_acc", "").replace("_", " ")
                ax.scatter(xs, ys, label=name if filled else f"{name} ({hollow})",
                           zorder=3, linewidths=0.6 if filled else 1.3, facecolors=color if filled else "none",
                           edgecolors="black" if filled else color, **style)
                if group != "kind" and len(sub) > 1:
                    front = pareto_front(sub, cost, key)
                    ax.plot([xs[i] for i in front], [ys[i] for i in front], color=color, lw=1.2 if filled else 0.8,
                            ls="--" if filled else ":", zorder=2)
                if filled:
                    for p, x, y in zip(sub, xs, ys):
                        if not (math.isnan(x) or math.isnan(y)) and p.get("label"):
                            ax.annotate(str(p["label"]), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
        if group == "kind":  # connect searched -> retrained -> quantized: what each stage bought
            order = [p for k in ("searched", "retrained", "quantized") for p in points if p.get("kind") == k]
            ax.plot([_num(p.get("costs", {}).get(cost)) * scale for p in order],
                    [100 * _num(p.get(metric)) for p in order], color="0.6", lw=0.8, ls=":", zorder=1)
        if budgets and budgets.get(cost):
            ax.axvline(budgets[cost] * scale, color="tab:green", ls="--", lw=1, zorder=1)
            ax.annotate("budget", (budgets[cost] * scale, 1), xycoords=("data", "axes fraction"), xytext=(3, -12),
                        textcoords="offset points", color="tab:green", fontsize=8)
        ax.set_xlabel(label)
        ax.set_ylabel("accuracy [%]")
        ax.grid(True, alpha=0.3)
        if cost in ("macs", "params", "weight_kb") and _spread(points, cost) > 20:
            ax.set_xscale("log")
    for ax in list(grid.flat)[len(axes):]:
        ax.axis("off")
    handles, labels = grid.flat[0].get_legend_handles_labels()
    ncol = len(labels) if len(labels) <= 5 else math.ceil(len(labels) / 2)
    fig.legend(handles, labels, loc="lower center", ncol=max(ncol, 1), frameon=False, fontsize=9)
    if title:
        fig.suptitle(title)
    rows = math.ceil(len(labels) / max(ncol, 1)) if labels else 1
    fig.tight_layout(rect=(0, 0.035 + 0.03 * rows, 1, 1 - 0.05 * (title.count("\n") + 1) if title else 1))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _spread(points: Sequence[Mapping[str, Any]], cost: str) -> float:
    vals = [_num(p.get("costs", {}).get(cost)) for p in points]
    vals = [v for v in vals if v > 0]
    return max(vals) / min(vals) if vals else 1.0


def _cost_cells(costs: Mapping[str, Any]) -> list[str]:
    return [_fmt(costs.get("params"), 1, 1e-3), _fmt(costs.get("macs"), 2, 1e-6),
            _fmt(costs.get("frontend_macs"), 2, 1e-6), _fmt(costs.get("weight_kb"), 1),
            _fmt(costs.get("peak_act_kb"), 1), _fmt(costs.get("latency_ms"), 2)]


# MACs include MFCC extraction; "of which features" is that part on its own (nni_kws.cost.frontend)
_COST_HEADER = "params [k] | MACs [M] | of which features [M] | weights [kB] | peak act. [kB] | latency [ms]"


def test_labels(data: Mapping[str, Any]) -> tuple[str, str, str]:
    """``(test column, real-test column, sentence)`` naming the data a run was really tested on."""
    if data.get("synthetic"):
        test = "synth test"
    elif data.get("test_list"):
        test = f"{Path(data['test_list']).stem} test"
    else:
        test = "test split"
    real_root = data.get("real_test_root")
    if not real_root:
        return test, "real test", "No real test set was used."
    if Path(real_root).name == REAL_TEST_DIR:
        return test, "real test", ("Real test = the official Speech Commands v2 test set "
                                   f"(`{real_root}`), never used for training or tuning.")
    return test, "real test", f"Real test = the clips in `{real_root}`, never used for training or tuning."


def render_report(results: Mapping[str, Any]) -> str:
    """The Markdown report of one ``nni-kws run`` (from its ``results.json`` dict)."""
    cfg, data = results.get("config", {}), results.get("data", {})
    test_col, real_col, real_text = test_labels(data)
    source = (f"synthesized speech, preset `{cfg.get('synth', '?')}`" if data.get("synthetic") else
              f"clips listed in `{data['train_list']}` / `{data['test_list']}`" if data.get("train_list") else
              "local copy")
    over = (results.get("search") or {}).get("over_budget")
    lines = ["# nni-kws run report", ""]
    lines += [f"- data: `{data.get('root', '?')}` ({source}; "
              f"train/val/test = {data.get('n_train', '?')}/{data.get('n_val', '?')}/{data.get('n_test', '?')} clips)",
              f"- real test set: `{data.get('real_test_root') or 'not available'}`"
              + (f" ({data.get('n_real_test')} clips, evaluation only)" if data.get("n_real_test") else ""),
              f"- space preset `{cfg.get('preset')}`, front end `{cfg.get('frontend')}`, strategy "
              f"`{cfg.get('strategy')}`, seed {cfg.get('seed')}, device {results.get('device', '?')}",
              f"- budgets: {describe_budgets(_budgets(cfg))}; "
              f"penalty form `{cfg.get('penalty_form')}`, λ = {cfg.get('lam')}",
              *([f"- **OVER BUDGET**: the searched architecture exceeds {describe_over_budget(over)}"] if over else []),
              ""]
    lines += ["## Accuracy and cost", "",
              f"| model | {test_col} [%] | {real_col} [%] | {_COST_HEADER} | bits w / a |",
              "|---|---|---|" + "---|" * 7]
    for p in results.get("points", []):
        bits = "32 / 32" if p.get("kind") != "quantized" else \
            f"{_fmt(p.get('bits_weight'), 2)} / {_fmt(p.get('bits_act'), 2)}"
        lines.append(f"| {p.get('name')} | {_fmt(p.get('test_acc'), 2, pct=True)} | "
                     f"{_fmt(p.get('real_test_acc'), 2, pct=True)} | "
                     f"{' | '.join(_cost_cells(p.get('costs', {})))} | {bits} |")
    distilled = (results.get("float") or {}).get("distillation")
    start = "the supernet weights" if cfg.get("init") == "supernet" else "scratch"
    if distilled:
        start += (f", distilled from the real-speech teacher's soft labels (weight {distilled['weight']:g}, "
                  f"temperature {distilled['temperature']:g}; the teacher's own validation accuracy "
                  f"{_fmt(distilled['teacher_val_acc'], 2, pct=True)} %)")
    lines += ["", "The *searched* row is the derived sub-network with its supernet weights (before retraining); "
              f"*retrained* is the frozen network trained from {start}; *quantized* has learned "
              f"(or fixed) bit-widths, its weight memory counted at those bits. {real_text}", ""]
    arch = results.get("arch") or {}
    if arch:
        lines += ["## Architecture", "", "| part | choice |", "|---|---|"]
        lines += [f"| {part} | {choice} |" for part, choice in describe_arch(arch)]
        lines += ["", f"Labels as in `search/arch.json`: `{json.dumps(arch, separators=(',', ':'))}`", ""]
    quant = results.get("quant") or {}
    if results.get("quant_curve"):
        lines += ["## Accuracy against bits", "",
                  f"This run: {_fmt(quant.get('bits_weight'), 2)} bits per weight, {_fmt(quant.get('bits_act'), 2)} "
                  f"bits per activation. The curve is `{results.get('quant_curve_from')}` (real-speech dev/heldout "
                  "protocol): learned bit-widths against NNI's fixed LSQ and QAT at the same average bits.", "",
                  f"![accuracy against bits]({results['quant_curve']})", ""]
    if quant.get("layers"):
        lines += ["## Bit-widths per layer", "", "| layer | weight bits | activation bits |", "|---|---|---|"]
        lines += [f"| `{layer.get('name')}` | {layer.get('weight_bits', '–')} | {layer.get('act_bits', '–')} |"
                  for layer in quant["layers"]]
        lines.append("")
    timings = results.get("timings_s", {})
    if timings:
        lines += ["## Time per stage", "", "| stage | seconds |", "|---|---|"]
        lines += [f"| {k} | {_fmt(v, 1)} |" for k, v in timings.items()]
        lines.append("")
    lines += ["![accuracy against cost](pareto.png)", ""]
    return "\n".join(lines)


def _budgets(cfg: Mapping[str, Any]) -> dict[str, float]:
    """``{budget name: limit}`` set in a stored run config (``max_<name>`` fields)."""
    return {name: cfg[budget_option(name)] for name in BUDGETS if cfg.get(budget_option(name))}


def render_sweep(sweep: Mapping[str, Any]) -> str:
    """The Markdown table of a sweep (the paper's NAS table in our format), one block per front end."""
    points = sweep.get("points", [])
    knob = sweep.get("knob", "lam")
    test_col = _sweep_test_label(sweep)
    lines = ["# nni-kws sweep", "",
             f"Sweep over `{knob}` = {sweep.get('values')} for front ends {sweep.get('frontends')} "
             f"(preset `{sweep.get('config', {}).get('preset')}`, "
             f"strategy `{sweep.get('config', {}).get('strategy')}`). "
             f"Rows marked ★ are on the accuracy–MACs Pareto front ({test_col} accuracy) of their front end. "
             "MACs count conv and linear layers plus the MFCC feature extraction (FFT, mel, log, DCT; "
             "`nni_kws.cost.frontend`), so raw-audio and MFCC front ends compare on MACs and on latency.", ""]
    quantized = any(p.get("quant") for p in points)  # sweep --quantize: each point's quantized model too
    q_header = f" quantized {test_col} [%] | quantized real test [%] | bits w / a |" if quantized else ""
    for frontend in sweep.get("frontends", []):
        sub = [p for p in points if p.get("frontend") == frontend]
        front = set(pareto_front(sub, "macs"))
        lines += [f"## Front end `{frontend}`", "",
                  f"| {knob} | {_COST_HEADER} | val [%] | {test_col} [%] | real test [%] | front |{q_header}",
                  "|---|" + "---|" * 6 + "---|---|---|---|" + "---|" * (3 if quantized else 0)]
        for i, p in enumerate(sub):
            q = p.get("quant") or {}
            q_cells = (f" {_fmt(q.get('test_acc'), 2, pct=True)} | {_fmt(q.get('real_test_acc'), 2, pct=True)} | "
                       f"{_fmt(q.get('bits_weight'), 2)} / {_fmt(q.get('bits_act'), 2)} |") if quantized else ""
            lines.append(f"| {p.get(knob)} | {' | '.join(_cost_cells(p.get('costs', {})))} | "
                         f"{_fmt(p.get('val_acc'), 2, pct=True)} | {_fmt(p.get('test_acc'), 2, pct=True)} | "
                         f"{_fmt(p.get('real_test_acc'), 2, pct=True)} | {'★' if i in front else ''} |{q_cells}")
        lines.append("")
    lines += ["![Pareto front](pareto.png)", ""]
    return "\n".join(lines)


def _sweep_test_label(sweep: Mapping[str, Any]) -> str:
    cfg = sweep.get("config", {})
    return test_labels({"synthetic": cfg.get("data") is None, "test_list": cfg.get("test_list")})[0]


def benchmark_points(preset: str, frontend: str, path: str | Path | None = None) -> list[dict[str, Any]]:
    """The peers of a search-quality benchmark, and its random and searched models where they belong to the run's
    space (the benchmark's preset; with one front end, those of that front end), as plot points whose hollow
    marker is their heldout accuracy. ``path``: the benchmark's results, default the one of ``preset`` among
    :data:`SEARCH_QUALITY_JSONS` (else the first, for its peers); ``[]`` without a file."""
    files = [Path(f) for f in ([path] if path is not None else SEARCH_QUALITY_JSONS) if Path(f).is_file()]
    benches = [json.loads(f.read_text()) for f in files]
    bench = next((b for b in benches if b.get("settings", {}).get("preset") == preset), benches[0] if benches else {})
    same_preset = bench.get("settings", {}).get("preset") == preset
    main = bench.get("settings", {}).get("strategies", [None])[0]  # the benchmark's main strategy, as it reads it
    kinds = {"random": "random (benchmark)", "peer": "peer (benchmark)", main: "searched (benchmark)"}

    def in_run_space(model: Mapping[str, Any]) -> bool:
        return same_preset and frontend in ("raw", model.get("arch", {}).get("frontend", "raw"))
    return [{"name": key, "kind": kinds[m["kind"]], "costs": with_kb(m.get("costs", {})), "test_acc": None,
             "real_test_acc": m.get("heldout_acc"), "second_label": "heldout"}
            for key, m in bench.get("models", {}).items()
            if m.get("kind") in kinds and (m["kind"] == "peer" or in_run_space(m))]


def write_report(results: Mapping[str, Any], out_dir: str | Path,
                 benchmark: str | Path | None = None) -> tuple[Path, Path]:
    """Write ``report.md`` and ``pareto.png`` of one run into ``out_dir``; the plot also shows the peers, and the
    random architectures and searched models of the run's space, of the search-quality benchmark
    (:func:`benchmark_points`; ``benchmark``: its results file, default the one of the run's preset)."""
    out_dir = Path(out_dir)
    cfg = results.get("config", {})
    extra = benchmark_points(cfg.get("preset", ""), cfg.get("frontend", ""), benchmark)
    png = plot_pareto([*results.get("points", []), *extra], out_dir / "pareto.png", budgets=_budgets(cfg),
                      title=f"{cfg.get('preset', '')} space, {cfg.get('frontend', '')} front end\naccuracy vs cost: "
                      f"{test_labels(results.get('data', {}))[0]} (filled), real test (hollow)")
    md = out_dir / "report.md"
    md.write_text(render_report(results))
    return md, png


def write_sweep_report(sweep: Mapping[str, Any], out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``sweep.md`` and ``pareto.png`` of a sweep into ``out_dir``."""
    out_dir = Path(out_dir)
    png = plot_pareto(sweep.get("points", []), out_dir / "pareto.png", group="frontend",
                      axes=("macs", "params", "latency_ms"),
                      title=f"Sweep over {sweep.get('knob', 'lam')}: {_sweep_test_label(sweep)} (filled, front dashed) "
                      "and real test (hollow)")
    md = out_dir / "sweep.md"
    md.write_text(render_sweep(sweep))
    return md, png
