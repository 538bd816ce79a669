# The two commands README promises: `make demo` and `make test`. Both set up first (idempotent).
.PHONY: setup demo test benchmark models

setup:
	bash scripts/setup.sh

demo: setup
	bash examples/demo.sh

test: setup
	.venv/bin/python -m pytest -q

benchmark: setup
	bash benchmarks/run.sh

models: setup
	bash models/train.sh
