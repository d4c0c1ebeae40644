#!/usr/bin/env bash
# Wall and CPU time of the default workflow in two trees, back to back on one machine.
#
#   benchmarks/compare_demo_trees.sh BEFORE_CLONE AFTER_CLONE [ROUNDS]
#
# Each round runs, from empty results and in alternating order:
#   before          BEFORE_CLONE's default workflow;
#   after-same-work AFTER_CLONE with benchmarks/demo_workload_4e77823.yaml (the work the
#                   4e77823 default did: its methods, modalities and budgets);
#   after           AFTER_CLONE's default workflow.
# Both clones run with this checkout's .venv (PYTHON), as `make run` does after
# `compileall`. Prints one tab-separated line per run: label, round, wall s, user s, sys s,
# jobs. Run it on an otherwise idle machine: every figure moves with the host's load.
set -euo pipefail

before=$(realpath "$1")
after=$(realpath "$2")
rounds=${3:-2}
here=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-$here/.venv/bin/python}
overlay=$here/benchmarks/demo_workload_4e77823.yaml
logs=$(mktemp -d)

run() {  # label round clone [snakemake args...]
    local label=$1 round=$2 clone=$3
    shift 3
    (
        cd "$clone"
        rm -rf results resources .snakemake
        "$python" -m compileall -q src
        PYTHONPATH="$clone/src" /usr/bin/time -f "%e %U %S" -o "$logs/time" \
            "$python" -m snakemake -s workflow/Snakefile --workflow-profile profiles/default \
            "$@" >"$logs/$label.$round.log" 2>&1
    )
    read -r wall user sys <"$logs/time"
    jobs=$(grep -c "^Finished jobid" "$logs/$label.$round.log" || true)
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$label" "$round" "$wall" "$user" "$sys" "$jobs"
}

printf 'label\tround\twall_s\tuser_s\tsys_s\tjobs\n'
for round in $(seq 1 "$rounds"); do
    order=(before same after)
    if (( round % 2 == 0 )); then order=(after same before); fi
    for which in "${order[@]}"; do
        case $which in
            before) run before "$round" "$before" ;;
            same) run after-same-work "$round" "$after" --configfile config/config.yaml "$overlay" ;;
            after) run after "$round" "$after" ;;
        esac
    done
done
echo "logs: $logs" >&2
