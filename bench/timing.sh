# Sourced by the benches that time whole commands (jobs, sweep, gpu_ledger).
# now: bash's own clock. Starting a python3 to read one took 0.2 s on the CI box, which every
# timing carried (it made xargs' 0.83 s read 1.09 s, and flattered every ratio).
now() { echo "$EPOCHREALTIME"; }
# median of the arguments (alternating rounds on a shared 2-core box: one round is noise).
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
