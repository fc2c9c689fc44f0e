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

# The main job: 1 head vs 8 heads at the same size (579,202 parameters each), three seeds, paired
# differences and a verdict. A small, fast setting: d_model 64, two layers, 400 steps on 30,000
# SST-2 phrases, [CLS] pooling (with mean pooling the two were level: docs/classification.md).
# One torch thread: with another job on the machine, two threads per process were slower.
DEMO_OPTIONS := --d-model 64 --d-ff 128 --heads 8 --vocab-size 8000 --train-limit 30000 \
	--batch-size 64 --max-steps 400 --eval-steps 50 --lr 2e-3 --ema-decay 0.98 --pooling cls
demo: install  ## the main job: single- vs multi-head on SST-2, three seeds, with a verdict
	OMP_NUM_THREADS=1 $(VENV)/bin/attnlab experiment heads --data sst2 --seeds 3 \
		--out runs/demo $(DEMO_OPTIONS)

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
