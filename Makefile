# Two commands do all set-up on a fresh machine (as root): `make lab` and `make test`.
# Both install the Debian packages they lack (.ci/system-deps) and the venv first.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: all venv system-deps lab test lint bench bench-full bench-compare fuzz clean

all: test

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

venv: $(STAMP)

system-deps:
	@bash .ci/system-deps

## The built-in default: the seed's two-hosts lab in namespaces (up, who reaches whom,
## a live migration under a ping, down), then how to explore it by hand.
lab: system-deps venv
	$(BIN)/nvgw check configs/*.yaml
	$(BIN)/nvgw lab run --scenario two-hosts --migrate blue2:host1

## Lint (ruff, the import layering contracts), then every test.
test: system-deps venv lint
	$(BIN)/python -m pytest

lint: venv
	$(BIN)/ruff check gateway tests bench
	$(BIN)/ruff format --check gateway tests bench
	$(BIN)/lint-imports

## Benchmarks write JSON into bench/ and print a table; never run by the tests.
## host_forwarding.py and gateway_forwarding.py need root and 2 CPUs; they install
## netsniff-ng (trafgen), and the gateway's Open vSwitch and nftables, when missing
## (gateway_tunnel.py: wireguard-go, wireguard-tools and iperf3 too).
## bench is the quick profile (fewer repetitions, shorter windows after 1 s of
## warm-up, policies up to 10,000 records, shorter rate sweeps: under ~15 minutes);
## bench-full runs every
## measurement at its defaults (5 repetitions of 5 s, the tunnel's sweeps of 3 s
## windows, api_change and api_batch's import and start at 100,000 records on SQLite
## and etcd, 200 changes followed by 2 other daemons, the file store of 5cdcc4a at
## 1,000 and 10,000 beside them, into bench/results-api.json; the quick profile's
## stop at 10,000 records, 50 changes, the file store at 1,000: 2-3 min at load 5-7,
## into bench/results-api-quick.json) and counts the gateway data plane's
## instructions per frame (callgrind).
bench: venv
	$(BIN)/python bench/snapshot_build.py --repeat 3
	$(BIN)/python bench/api_change.py --records 100 1000 10000 --propagate 10000 --changes 50 \
		--rev 5cdcc4a --rev-records 1000 --out bench/results-api-quick.json
	$(BIN)/python bench/api_batch.py --records 10000 --out bench/results-api-quick.json
	$(BIN)/python bench/host_forwarding.py --reps 3 --dur 3 --warmup 1
	$(BIN)/python bench/gateway_forwarding.py --reps 2 --dur 3 --warmup 1
	$(BIN)/python bench/gateway_nat.py --reps 2 --dur 2.5 --warmup 1
	$(BIN)/python bench/gateway_tunnel.py --reps 2 --dur 1.5 --warmup 0.5 --max-steps 6

bench-full: venv
	$(BIN)/python bench/snapshot_build.py
	$(BIN)/python bench/api_change.py --rev 5cdcc4a
	$(BIN)/python bench/api_batch.py
	$(BIN)/python bench/host_forwarding.py
	$(BIN)/python bench/gateway_forwarding.py
	$(BIN)/python bench/gateway_nat.py
	$(BIN)/python bench/gateway_tunnel.py
	$(BIN)/python bench/gateway_callgrind.py

## Two revisions of the daemon measured interleaved in one run (each from its own
## git archive of gateway/; NEW=worktree for the work tree as it is), with a verdict
## on the median ratios to the bare loop: the host's decapsulation, then the
## gateway's two paths; results in bench/results-compare.json and
## bench/results-compare-gateway.json; exit 1 if either is slower.
NEW ?= HEAD
bench-compare: venv
	@test -n "$(OLD)" || { echo "usage: make bench-compare OLD=REV [NEW=REV|worktree]"; exit 2; }
	$(BIN)/python bench/host_forwarding.py --rev $(OLD) --rev $(NEW) \
		--out bench/results-compare.json; host=$$?; \
	$(BIN)/python bench/gateway_forwarding.py --rev $(OLD) --rev $(NEW) \
		--kinds bare,asyncio,trio --out bench/results-compare-gateway.json; gateway=$$?; \
	exit $$(( host > gateway ? host : gateway ))

## Fuzz every wire parser, every data-plane entry point of every node of every
## policy, and the sans-IO cores (WireGuard, NAPT, the gateway's tunnel path)
## (tests/fuzz): FUZZ_INPUTS inputs, one worker per CPU, a progress line every 5 s;
## the summary goes to tests/fuzz/last-run.json. Exit 1 on any finding.
FUZZ_INPUTS ?= 10000000
FUZZ_SEED   ?= 1
fuzz: venv
	$(BIN)/python -m tests.fuzz --inputs $(FUZZ_INPUTS) --seed $(FUZZ_SEED) \
		--summary tests/fuzz/last-run.json

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis .ruff_cache *.egg-info
