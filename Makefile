# The two commands a newcomer needs are `make serve` and `make test`; every target
# builds the virtualenv on first use, so nothing is installed by hand.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
FACEGATE_TEST_FACES ?= $(abspath ../shared/faces)
export FACEGATE_TEST_FACES

.PHONY: serve test quick bench lint clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev,postgres]'
	touch $(STAMP)

serve: $(STAMP)
	$(BIN)/facegate serve

# Everything, slow suites included; this is what CI runs.
test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadfile

# The edit loop: skips suites marked slow.
quick: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadfile -m "not slow"

# The peer pipeline (face_recognition) is a bench-only dependency; --no-deps because
# dlib-bin already provides dlib and face_recognition would otherwise build dlib from source.
bench: $(STAMP)
	$(BIN)/python -m pip install --quiet --no-deps -c constraints.txt face_recognition
	$(BIN)/facegate bench engine --out benchmarks/results
	$(BIN)/facegate bench server --out benchmarks/results

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
