# Fresh machine: `make quickstart` (set up + main job) and `make test` (set up + tests).
VENV ?= .venv
PYTHON ?= python3
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
# CI runs the slow tests too, and lists the slowest (its run has a time limit); locally they are opt-in
# (make test PYTEST_ARGS=).
PYTEST_ARGS ?= $(if $(filter true,$(CI)),-m "not gpu" --durations=30,-m "not slow and not gpu")

.PHONY: install quickstart test lint clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

install: $(BIN)/.installed

quickstart: install
	$(BIN)/ablate sweep study=quickstart

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# pytest exits 5 when it collected nothing: that is a failure, never a pass.
test: lint
	@$(BIN)/pytest $(PYTEST_ARGS); status=$$?; \
	if [ $$status -eq 5 ]; then echo "make test: pytest collected no tests" >&2; fi; exit $$status

clean:
	rm -rf $(VENV) .cache runs multirun outputs
