# The two commands a newcomer needs are `make serve` and `make test`; every target
# builds the virtualenv on first use, so nothing is installed by hand.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
FACEGATE_TEST_FACES ?= $(abspath ../shared/faces)
export FACEGATE_TEST_FACES

.PHONY: serve test quick fuzz bench lint clean browser

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev,postgres]'
	touch $(STAMP)

# `make serve PORT=9000 DATA_DIR=/srv/facegate` (HOST=0.0.0.0 to listen beyond this machine).
HOST ?= 127.0.0.1
PORT ?= 8000
DATA_DIR ?= $(or $(FACEGATE_DATA_DIR),./data)
serve: $(STAMP)
	$(BIN)/facegate serve --host $(HOST) --port $(PORT) --data-dir "$(DATA_DIR)"

# The console's browser tests drive Debian's chromium through Playwright (whose own browser
# download is not reachable, so `playwright install` is never run); installed once, as root.
browser:
	@command -v chromium >/dev/null || (apt-get update && apt-get install -y --no-install-recommends chromium)

# Everything, slow suites included; this is what CI runs.
test: $(STAMP) browser
	$(BIN)/python -m pytest -n 2 --dist loadfile

# The edit loop: skips suites marked slow.
quick: $(STAMP) browser
	$(BIN)/python -m pytest -n 2 --dist loadfile -m "not slow"

# The long fuzz run of tests/test_fuzz.py (CI runs 2,000 requests of seed 9 in `make test`).
# A new seed each time; it is printed first, and `make fuzz FACEGATE_FUZZ_SEED=N` replays it.
FACEGATE_FUZZ_REQUESTS ?= 50000
FACEGATE_FUZZ_SEED ?= $(shell date +%s)
fuzz: $(STAMP)
	FACEGATE_FUZZ_REQUESTS=$(FACEGATE_FUZZ_REQUESTS) FACEGATE_FUZZ_SEED=$(FACEGATE_FUZZ_SEED) \
		$(BIN)/python -m pytest tests/test_fuzz.py -s

# The peer pipeline (face_recognition) is a bench-only dependency; --no-deps because
# dlib-bin already provides dlib and face_recognition would otherwise build dlib from source.
bench: $(STAMP)
	$(BIN)/python -m pip install --quiet --no-deps -c constraints.txt face_recognition
	$(BIN)/facegate bench engine --out benchmarks/results
	$(BIN)/facegate bench server --out benchmarks/results
	$(BIN)/facegate bench images --out benchmarks/results
	$(BIN)/facegate bench load --out benchmarks/results
	$(BIN)/facegate bench scale --backend sqlite --backend pgvector --out benchmarks/results
	$(BIN)/facegate bench console --out benchmarks/results
	OPENBLAS_NUM_THREADS=1 $(BIN)/facegate bench index --out benchmarks/results
	OPENBLAS_NUM_THREADS=1 $(BIN)/facegate bench ann --out benchmarks/results

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
