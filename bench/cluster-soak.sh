#!/usr/bin/env bash
# The cluster end-to-end test (crates/rollover/tests/it/cluster.rs) again and
# again, each run with another seed: which node is killed, which is paused,
# which NATS server dies, which node restarts gracefully, and the pauses
# between, and the load's records. Not part of CI.
#
#   bench/cluster-soak.sh [RUNS] [FIRST_SEED]
#
# Prints one line per run and a summary; the logs of failed runs are kept in
# target/cluster-soak/, and their nodes' logs in the test's scratch folder
# (/tmp/rollover-cluster-*, named in the run's log).
set -u
runs=${1:-20}
first=${2:-1}
cd "$(dirname "$0")/.."
mkdir -p target/cluster-soak
cargo build -q -p rollover --tests || exit 1
passed=0
failed=0
for seed in $(seq "$first" $((first + runs - 1))); do
  out=target/cluster-soak/seed-$seed.log
  before=$(ls -d /tmp/rollover-cluster-* 2>/dev/null)
  ok=0
  KEEP_SCRATCH=1 CLUSTER_TEST_SEED=$seed cargo nextest run -p rollover --test it cluster::a_cluster --no-capture >"$out" 2>&1 && ok=1
  rm -rf /tmp/rollover-gy-*
  if [ "$ok" -eq 1 ]; then
    passed=$((passed + 1))
    echo "seed $seed: passed: $(grep -h '^cluster' "$out" | tr '\n' ' ')"
    rm -f "$out"
    for dir in $(ls -d /tmp/rollover-cluster-* 2>/dev/null); do
      echo "$before" | grep -qx "$dir" || rm -rf "$dir"
    done
  else
    failed=$((failed + 1))
    kept=$(for dir in $(ls -d /tmp/rollover-cluster-* 2>/dev/null); do echo "$before" | grep -qx "$dir" || echo "$dir"; done | tr '\n' ' ')
    echo "nodes' logs: $kept" >>"$out"
    echo "seed $seed: FAILED (log: $out; nodes' logs: $kept)"
  fi
done
echo "cluster soak: $passed passed, $failed failed, of $runs runs (seeds $first to $((first + runs - 1)))"
[ "$failed" -eq 0 ]
