# Two commands do all the set-up on a fresh machine with Python 3.11:
#   make demo   - create .venv, install, generate the demo data, run the demo reports
#   make test   - create .venv, install, run the whole test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# the JupyterLab kernel "funnelkit": registered whenever its spec is missing, not only when pyproject.toml changes
KERNEL := $(VENV)/share/jupyter/kernels/funnelkit/kernel.json

.PHONY: demo test lint format benchmark benchmark-memory benchmark-scale benchmark-calibration clean install reports lesson

install: $(STAMP) $(KERNEL)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

$(KERNEL): | $(STAMP)
	$(PY) -m ipykernel install --sys-prefix --name funnelkit --display-name "Python 3 (funnelkit)" >/dev/null

demo: $(STAMP) $(KERNEL)
	$(VENV)/bin/funnelkit demo

test: $(STAMP) $(KERNEL)
	$(PY) -m ruff check .
	MPLBACKEND=Agg $(PY) -m pytest -n auto --dist loadfile

lint: $(STAMP)
	$(PY) -m ruff check .

format: $(STAMP)
	$(PY) -m ruff format funnelkit tests benchmarks

# re-run the teaching notebooks after the package's output changed (nbval compares it), then commit them
LESSONS := pipeline_vs_funnel.ipynb planning_and_forecasting.ipynb
lesson: $(STAMP) $(KERNEL)
	$(PY) tests/test_lesson.py $(addprefix notebooks/,$(LESSONS))

# make reports PLAN=params/my_plan.yaml MONTH=2025-09
PLAN ?= params/demo_monthly.yaml
reports: $(STAMP) $(KERNEL)
	$(VENV)/bin/funnelkit report $(PLAN) $(if $(MONTH),--month $(MONTH))

# the documentation site, as tests/test_docs.py checks it (warnings are errors): docs/_build/html/index.html
.PHONY: docs
docs: $(STAMP)
	MPLBACKEND=Agg $(PY) -m sphinx -b html -W --keep-going -n docs docs/_build/html
	@echo "open docs/_build/html/index.html"

benchmark: $(STAMP)
	$(PY) benchmarks/bench_funnel.py
	$(PY) benchmarks/bench_backtest.py
	$(PY) benchmarks/bench_reports.py

# peak memory of the report runner on a 5M-event CSV (one report vs --jobs 2; several minutes)
benchmark-memory: $(STAMP)
	$(PY) benchmarks/bench_reports.py --memory

# the scale targets of issue #14 (1M-20M leads against DuckDB, chdb and Dask; tens of minutes) and
# read_events' memory on a 5M-event CSV
benchmark-scale: $(STAMP)
	$(PY) benchmarks/bench_read.py
	$(PY) benchmarks/bench_scale.py

# forecast calibration under drift on simulated and real logs (about 20 minutes)
benchmark-calibration: $(STAMP)
	$(PY) benchmarks/bench_calibration.py

clean:
	rm -rf $(VENV) reports/*/ data/demo .pytest_cache
