# Two commands a newcomer runs on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv demo test bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@# flite (a second speech synthesizer for the offline data) where we may install it; else espeak alone
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && ! command -v flite >/dev/null; then \
		apt-get update -qq && apt-get install -y -qq flite >/dev/null || echo "flite not installed: espeak only"; fi
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade "pip" "setuptools<81" wheel
	$(PY) -m pip install -q -e ".[dev,teacher]"
	touch $(STAMP)

# The main job: synthesize the default data, search, retrain, quantize, report.
demo: venv
	$(VENV)/bin/nni-kws run --out runs/demo

test: venv
	$(PY) -m pytest -q

# Every benchmark (hours on 2 cores); each writes benchmarks/results/<name>.json.
bench: venv
	$(PY) benchmarks/peer_costs.py
	$(PY) benchmarks/cost_model.py
	$(PY) benchmarks/search.py
	$(PY) benchmarks/search_quality.py --preset paper --budgets 2.49e7 --strategies sandwich --no-spos --random 6 \
		--sandwich-epochs 16 --split none --out benchmarks/results/search_quality_paper.json
	$(PY) benchmarks/search_quality.py --preset wide --budgets 2.49e7 --strategies sandwich --no-spos --random 20 \
		--sandwich-epochs 16 --split none --finalists 6 --finalist-seeds 3 --finalist-folds \
		--out benchmarks/results/search_quality_wide_folds.json
	$(PY) benchmarks/search_quality.py --preset widestride --budgets 2.49e7 --strategies sandwich --no-spos \
		--random 10 --sandwich-epochs 16 --split none --out benchmarks/results/search_quality_widestride.json
	$(PY) benchmarks/search_quality.py --random 20 --companion benchmarks/results/search_quality_paper.json \
		--companion benchmarks/results/search_quality_wide_folds.json \
		--companion benchmarks/results/search_quality_widestride.json
	$(PY) benchmarks/space_spread.py --spaces wide-sinc,widekernels-sinc,paper-sinc
	$(PY) benchmarks/recipe_probe.py
	$(PY) benchmarks/search_quality.py --data synthesized --strategies sandwich --no-spos --sandwich-epochs 8 \
		--epochs 6 --out benchmarks/results/search_quality_synth.json
	$(PY) benchmarks/sim_to_real.py
	$(PY) benchmarks/quantize.py --synthesized
	$(PY) benchmarks/assessor.py

clean:
	rm -rf $(VENV) runs
