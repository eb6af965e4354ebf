# The README's two commands: `make demo` and `make test`. Both install what they need.
SHELL := /bin/bash
export PATH := $(PATH):/usr/local/go/bin:$(HOME)/.cargo/bin

.PHONY: test demo demo-incluster deps lint unit crds chart testbed-up testbed-down testbed-node bench install-plugin image

## make test: lint, unit tests, then the integration suite against the real testbed
test:
	scripts/test

## make demo: bring up the testbed and show what the operator does with it
demo:
	scripts/demo

## the same, with the operator in the cluster: its image on the testbed's node, the chart
demo-incluster:
	DEMO_IN_CLUSTER=1 scripts/demo

deps:
	scripts/install-deps

## make image: the operator's OCI image, FROM scratch, as an archive in
## target/image/ (under CARGO_TARGET_DIR when set; scripts/image); `ctr images import` it
image:
	scripts/image

lint:
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings

## unit tests only (no servers)
unit:
	cargo test --lib --bins --test api_offline --test chart

## regenerate crds/ from the Rust types
crds:
	cargo run --quiet -- crdgen --out-dir crds
	scripts/sync-chart

## copy crds/ and manifests/ into the Helm chart (tests/chart.rs checks they agree)
chart:
	scripts/sync-chart

testbed-up:
	scripts/testbed up

testbed-down:
	scripts/testbed down

## the testbed plus a real node (kubelet, containerd, kube-proxy), checked from a pod;
## `scripts/testbed node down` removes the node only
testbed-node:
	scripts/install-deps --node
	scripts/testbed up
	scripts/testbed node up
	scripts/testbed node smoke

bench:
	scripts/bench

## make install-plugin [PREFIX=~/.local]: `kubectl ganeti`, the binary and its kubectl-ganeti
## symlink in $(PREFIX)/bin (which must be on PATH)
PREFIX ?= /usr/local
install-plugin:
	cargo build --release
	install -D -m 0755 "$${CARGO_TARGET_DIR:-target}/release/ganeti-operator" "$(PREFIX)/bin/ganeti-operator"
	ln -sfn ganeti-operator "$(PREFIX)/bin/kubectl-ganeti"
	@echo "installed $(PREFIX)/bin/kubectl-ganeti; check with: kubectl plugin list"
