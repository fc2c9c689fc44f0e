# Two commands do all the set-up on a fresh machine:  make demo  (the main job),  make test.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
export ATTNLAB_DATA ?= $(abspath $(CURDIR)/../shared/data)

.PHONY: install demo test test-fast bench lint clean

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# constraints.txt pins torch==2.13.0, whose CPU wheel is on disk (no CUDA download)
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev,pretrained,serve]'
	touch $@

install: $(VENV)/.installed

# One torch thread, as for the tests (with another job on the machine, two threads per process
# were slower than one). Each model of the demo trains in about 105 s; the whole demo, install
# included, took 4.5 minutes on a fresh clone here.
demo: install  ## the main job: the single-head vs multi-head experiment on SST-2, one seed
	OMP_NUM_THREADS=1 $(VENV)/bin/attnlab experiment heads --data sst2 --seeds 1 --out runs/demo

# Tests run one torch thread per process: small models gain nothing from a second thread, and
# on a busy machine two threads per process can be many times slower.
test: install  ## everything, slow tests (full training, browser) included
	OMP_NUM_THREADS=1 $(PY) -m pytest -q

test-fast: install
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -m "not slow"

bench: install
	$(PY) benchmarks/attention.py

lint: install
	$(VENV)/bin/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) runs .pytest_cache
