# Somo: `make run` and `make test` are the two commands a new machine needs.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: run test test-long lint typecheck format bench install clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "==> installing Somo and its development tools into $(VENV)"
	@$(BIN)/python -m pip install --upgrade pip > $(VENV)/pip-install.log 2>&1 || { cat $(VENV)/pip-install.log; exit 1; }
	@$(BIN)/python -m pip install -e '.[dev]' >> $(VENV)/pip-install.log 2>&1 || { cat $(VENV)/pip-install.log; exit 1; }
	@$(BIN)/python -c "import server, lms_domain, pytest" && touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	@$(BIN)/somo migrate
	@$(BIN)/somo seed
	@echo ""
	@echo "  Somo is starting on http://127.0.0.1:8080"
	@echo "    console:   http://127.0.0.1:8080/admin  (admin / admin-dev-2026)"
	@echo "    API docs:  http://127.0.0.1:8080/api/docs"
	@echo "    health:    http://127.0.0.1:8080/health"
	@echo "    readiness: http://127.0.0.1:8080/ready"
	@echo "    logins:    admin / admin-dev-2026, teacher / teacher-dev-2026, amina / learner-dev-2026"
	@echo "    phones:    +254700000001 (PIN 1234), +254700000002 (Baraka 2345, Zawadi 3456), +254700000003 (4567)"
	@echo "    USSD:      in another terminal, $(BIN)/somo ussd --phone 0700000001"
	@echo "    SMS:       curl -XPOST localhost:8090/sim/at/inbound -d '{\"from\":\"+254700000001\",\"text\":\"PROGRESS\"}'"
	@echo "    payments:  provider simulators (M-Pesa, Airtel, Africa's Talking SMS) on http://127.0.0.1:8090, log in var/simulator.log"
	@echo "  Press Ctrl-C to stop."
	@echo ""
	@mkdir -p var; $(BIN)/somo simulate > var/simulator.log 2>&1 & sim=$$!; \
	  trap 'kill $$sim 2>/dev/null' EXIT INT TERM; \
	  (sleep 3; $(BIN)/somo register-c2b >> var/simulator.log 2>&1) & $(BIN)/somo serve

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: lint typecheck
	$(BIN)/pytest -n auto --dist loadfile

test-long: $(STAMP)
	HYPOTHESIS_PROFILE=long $(BIN)/pytest -m "slow or not slow"

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache .hypothesis
