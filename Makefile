# tamperscope: `make demo` runs the main job on the built-in lab, `make test` the suite.
.PHONY: setup demo test bench lab-down
SHELL := /bin/bash

setup:
	@bash scripts/setup.sh

demo: setup
	.venv/bin/tamperscope demo $(DEMO_ARGS)

test: setup
	bash scripts/test.sh $(TEST_ARGS)

bench: setup
	.venv/bin/python -m bench.bridge
	.venv/bin/python -m bench.probe_speed
	.venv/bin/python -m bench.remote
	.venv/bin/python -m bench.fingerprints
	.venv/bin/python -m bench.verdict
	.venv/bin/python -m bench.analyze
	.venv/bin/python -m bench.flush
	.venv/bin/python -m bench.lists
	.venv/bin/python -m bench.scrub
	.venv/bin/python -m bench.resume

lab-down:
	-.venv/bin/tamperscope lab down
