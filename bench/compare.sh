#!/usr/bin/env bash
# Durable ingestion, side by side in one run: rollover (SQLite and PostgreSQL
# stores, over HTTP) against the baselines in ../shared/baselines (Redis + Lua
# and PostgreSQL PL/pgSQL, the quota engines an operator would build
# instead). Prints each figure and rollover's ratio to the better baseline.
#
# usage: bench/compare.sh [runs]     (default 1; figures are per run, quote medians)
# needs: root (the baselines apt-install and start their own servers on
#        ports 6390 and 5433), ~10 minutes per run on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-1}"
baselines="$(cd ../shared/baselines && pwd)"
cargo build --release -p rollover >/dev/null
bin=target/release/rollover

"$baselines/setup.sh" >/dev/null
trap '"$baselines/stop.sh" >/dev/null 2>&1 || true' EXIT

for run in $(seq 1 "$runs"); do
  echo "== run $run"
  sqlite="$($bin bench http --store sqlite --clients 16 --read-seconds 10 2>/dev/null)"
  postgres="$($bin bench http --store postgres --clients 16 --read-seconds 2 2>/dev/null)"
  echo "$sqlite"
  echo "$postgres"
  base="$("$baselines/bench.sh" both 2>/dev/null)"
  echo "$base"
  ours_sqlite="$(echo "$sqlite" | sed -n 's/.*clients: \([0-9]*\) records\/s.*/\1/p')"
  ours_pg="$(echo "$postgres" | sed -n 's/.*clients: \([0-9]*\) records\/s.*/\1/p')"
  # records/s is the first whole number on a summary line
  rate='{v = 0; for (i = 2; i <= NF; i++) if ($i ~ /^[0-9]+$/) { v = $i; break } if (v > m) m = v} END{print m + 0}'
  best_redis="$(echo "$base" | awk "/^redis-lua/$rate")"
  best_pg="$(echo "$base" | awk "/^postgres-plpgsql/$rate")"
  best="$(( best_redis > best_pg ? best_redis : best_pg ))"
  echo "rollover sqlite ${ours_sqlite}/s, rollover postgres ${ours_pg}/s; best redis-lua ${best_redis}/s, best plpgsql ${best_pg}/s"
  awk -v s="$ours_sqlite" -v p="$ours_pg" -v b="$best" 'BEGIN{printf "ratio to the better baseline: sqlite %.1fx, postgres %.1fx (goal 7x)\n", s/b, p/b}'
done
