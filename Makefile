# The two commands of the README. Both create and fill the virtual environment on first use (scripts/install.sh),
# then skip straight to work: the stamp is rebuilt only when the install inputs change.
VENV ?= .venv
STAMP := $(VENV)/.installed
INSTALL_INPUTS := scripts/install.sh scripts/constraints.txt $(wildcard scripts/requirements*.txt) pyproject.toml

# No model hub here: without this every hub call retries for ~23 s and importing laion_clap hangs.
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1

.PHONY: demo test install install-ray clean-results

demo: $(STAMP)  ## materialise the demo data, run and score every weightless model, print the table
	$(VENV)/bin/vm-eval demo

test: $(STAMP)  ## the test suite
	$(VENV)/bin/python -m pytest

install: $(STAMP)

install-ray: $(STAMP)  ## the optional Ray executor (scripts/install.sh already adds it to this environment)
	$(VENV)/bin/python -m pip install -c scripts/constraints.txt -e '.[ray]'

$(STAMP): $(INSTALL_INPUTS)
	bash scripts/install.sh $(VENV)
	touch $@

clean-results:
	rm -rf results data/demo
