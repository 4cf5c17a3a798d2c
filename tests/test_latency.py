"""The latency table ``nni-kws run`` builds (:data:`~nni_kws.cost.latency.RUN_TABLE`) ranks
architectures as measured whole models rank them; the benchmark's quick mode runs."""
from __future__ import annotations

import json
import random
import sys
from pathlib import Path

from scipy.stats import spearmanr

from nni_kws.cost import CostModel, LatencyTable
from nni_kws.cost.latency import RUN_TABLE, make_runner
from nni_kws.search.sandwich import extreme_arch
from nni_kws.space import build_space, random_arch, space_choices

REPO = Path(__file__).resolve().parents[1]


def spread_archs(space, cm: CostModel, n: int, pool: int = 200) -> list[dict]:
    """``n`` distinct archs at evenly spaced MACs from the smallest to the largest path (each the
    nearest of ``pool`` random ones, not the table's calibration archs), so the ranking is over the
    space's whole range, not among the near-ties that random archs cluster in (and whose order a
    loaded machine shuffles)."""
    calibration = [random_arch(space, 10**6 + i) for i in range(RUN_TABLE["calibration"])]
    choices = space_choices(space)
    random.seed(0)  # the extreme paths' front end
    smallest, largest = extreme_arch(choices, False), extreme_arch(choices, True)
    candidates = [a for a in (random_arch(space, seed) for seed in range(pool)) if a not in calibration]
    macs = lambda a: cm.exact(a)["macs"]  # noqa: E731
    lo, hi = macs(smallest), macs(largest)
    archs = [smallest]
    for i in range(1, n - 1):
        target = lo + i * (hi - lo) / (n - 1)
        archs.append(min((a for a in candidates if a not in archs), key=lambda a: abs(macs(a) - target)))
    return archs + [largest]


def test_run_table_predictions_rank_measured_latencies():
    """Spearman > 0.8 between predicted and measured batch-1 latency on 8 'small' archs. The whole
    models are timed in the table's own interleaved passes (``extra``), with the thread's CPU clock,
    so that a stretch of load from other processes (which slows even CPU time on a shared core)
    falls on entries and models alike instead of on a few models timed one after another (what
    made this test fail on a loaded CI machine). ('small', not 'tiny': the tiny space's latencies
    fall in two tight clusters, whose inner order is noise.)

    Even so, a burst of load on a shared machine can reorder a few models in one pass (rho 0.79 once in
    CI, 0.93-1.0 otherwise), so a pass that misses is measured again, up to three passes in all. A table that
    does not rank (random predictions) still fails: a random order of 8 gives rho > 0.8 with probability
    1.1 % (counted over all 40,320), so 3.2 % over three passes.
    """
    space = build_space("small")
    archs = spread_archs(space, CostModel(space), 8)
    models = {str(i): make_runner(space.freeze(a), (1, 16000)) for i, a in enumerate(archs)}
    attempts = []
    for _ in range(3):
        lut = LatencyTable.measure(space, **RUN_TABLE, progress=False, extra=models)
        cm = CostModel(space, lut)
        predicted = [cm.exact(a)["latency_ms"] for a in archs]
        measured = [lut.meta["extra_ms"][str(i)] for i in range(len(archs))]
        attempts.append((spearmanr(predicted, measured).statistic, list(zip(predicted, measured))))
        if attempts[-1][0] > 0.8:
            break
    assert attempts[-1][0] > 0.8, attempts


def test_cost_model_benchmark_quick_mode_measures_the_run_table(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    import cost_model
    out = tmp_path / "run_table.json"
    assert cost_model.main(["--run-table", "--quick", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["run_table"] == RUN_TABLE and result["repeats"] == RUN_TABLE["repeats"]
    assert set(result["verdict"]) >= {"within_10pct", "met"}
    sys.modules.pop("cost_model", None)
