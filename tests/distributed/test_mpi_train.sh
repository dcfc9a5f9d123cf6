#!/usr/bin/env bash
# `mpirun minimoe train` against one process, end to end: 2 and 4 ranks take the losses of one
# process over 20 steps (within the tolerance of docs/distributed.md), data-parallel and with
# the experts split (--expert-parallel: 2 ranks as 1 x 2, 4 ranks as 1 x 4 and 2 x 2), only rank
# 0 logs and writes, checkpoints move both ways between one process and several (a run
# interrupted in one is resumed in the other, expert-parallel too), bad input is refused, and a
# rank that dies (kill -9) or hangs (SIGSTOP) makes the run stop with an error instead of
# hanging.
#
#   tests/distributed/test_mpi_train.sh path/to/minimoe path/to/mpirun [mpirun flags...]
set -euo pipefail
minimoe=$(realpath "$1")
mpirun=$2
shift 2
mpi_flags=("$@")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=passive

failures=0
fail() {
  echo "FAIL: $*" >&2
  failures=$((failures + 1))
}

mkdir corpus
for i in $(seq 1 400); do echo "The cat number $i sat on the mat and looked at the moon."; done >corpus/story.txt
for i in $(seq 1 400); do echo "int value_$i = compute($i, $((i * 7 % 13)));"; done >corpus/code.txt
steps=20
base=(--preset tiny --data corpus --tokenizer bytes --context 32 --threads 1 --warmup 5
      --eval-batches 2 --sample-tokens 0)
small=("${base[@]}" --batch-size 4 --eval-every 10 --checkpoint-every 5)
tolerance=1e-5  # relative, docs/distributed.md

ranks() { "$mpirun" "${mpi_flags[@]}" -np "$@"; }
# start_ranks LOG N ARGS...: mpirun in the background (its pid in $pid), stderr to LOG.
start_ranks() {
  "$mpirun" "${mpi_flags[@]}" -np "$2" "${@:3}" >/dev/null 2>"$1" &
  pid=$!
}
# "STEP LOSS AUX_LOSS" of every train record; "STEP VAL_LOSS" of every eval record.
losses() {
  grep '"type":"train"' "$1" |
    sed -E 's/.*"aux_loss":([^,]*),.*"loss":([^,]*),.*"step":([0-9]+),.*/\3 \2 \1/'
}
evals() { grep '"type":"eval"' "$1" | sed -E 's/.*"step":([0-9]+),.*"val_loss":([^,]*),.*/\1 \2/'; }
# same_numbers WHAT A B: the same rows, every number within the relative tolerance.
same_numbers() {
  if [[ $(wc -l <<<"$2") -ne $(wc -l <<<"$3") ]] ||
     ! paste -d' ' <(echo "$2") <(echo "$3") | awk -v tol="$tolerance" '
         { n = NF / 2
           if ($1 != $(n + 1)) bad = 1
           for (i = 2; i <= n; ++i) { d = $i - $(n + i); if (d < 0) d = -d
             a = $i < 0 ? -$i : $i; if (d > tol * a) bad = 1 } }
         END { exit bad }'; then
    fail "$1 differ:"$'\n'"$(paste <(echo "$2") <(echo "$3"))"
  fi
}
# The processes mpirun $1 started (the ranks), and the one of rank $2 (Open MPI's variable).
children() { pgrep -P "$1" || true; }
rank_pid() {
  for child in $(children "$1"); do
    if tr '\0' '\n' <"/proc/$child/environ" | grep -qx "OMPI_COMM_WORLD_RANK=$2"; then echo "$child"; fi
  done
}
# Whether process $1 runs (a zombie that nobody reaps does not).
alive() { [[ -n "$(ps -o stat= -p "$1" | grep -v Z)" ]]; }
# Waits until run $2's metrics have a record of step $1 (or the process $3 has exited).
wait_for_step() {
  while kill -0 "$3" 2>/dev/null && ! grep -qs "\"step\":$1," "$2/metrics.jsonl"; do sleep 0.05; done
}

echo "--- one process, 2 ranks and 4 ranks: the same losses over $steps steps"
"$minimoe" train "${small[@]}" --steps "$steps" --out one 2>log-one.txt ||
  fail "one process: $(cat log-one.txt)"
reference=$(losses one/metrics.jsonl)
[[ $(wc -l <<<"$reference") -eq $steps ]] || fail "one process did not log $steps steps"
for n in 2 4; do
  ranks "$n" "$minimoe" train "${small[@]}" --steps "$steps" --out "ranks$n" 2>"log-$n.txt" ||
    fail "$n ranks: $(cat "log-$n.txt")"
  same_numbers "the losses of 1 process and $n ranks" "$reference" "$(losses "ranks$n/metrics.jsonl")"
  same_numbers "the evaluations of 1 process and $n ranks" "$(evals one/metrics.jsonl)" \
    "$(evals "ranks$n/metrics.jsonl")"
  [[ $(grep -c '^model: .* layers' "log-$n.txt") -eq 1 ]] || fail "$n ranks: more than rank 0 logged"
  grep -q "^data parallel: $n ranks x $((4 / n)) sequences of each batch" "log-$n.txt" ||
    fail "$n ranks: no data-parallel line in the log"
  [[ -f "ranks$n/model.safetensors" ]] || fail "$n ranks: no model.safetensors"
  ls "ranks$n"/*.tmp.* >/dev/null 2>&1 && fail "$n ranks: temporaries left"
done

echo "--- expert parallel: the same losses on 2 ranks (1 x 2) and 4 ranks (1 x 4, 2 x 2)"
for layout in "2 2" "4 4" "4 2"; do
  read -r n g <<<"$layout"
  ranks "$n" "$minimoe" train "${small[@]}" --steps "$steps" --expert-parallel "$g" \
    --out "ep$n-$g" 2>"log-ep$n-$g.txt" || fail "$n ranks, expert parallel $g: $(cat "log-ep$n-$g.txt")"
  same_numbers "the losses of 1 process and $n ranks (expert parallel $g)" "$reference" \
    "$(losses "ep$n-$g/metrics.jsonl")"
  same_numbers "the evaluations of 1 process and $n ranks (expert parallel $g)" \
    "$(evals one/metrics.jsonl)" "$(evals "ep$n-$g/metrics.jsonl")"
  grep -q "^expert parallel: $n ranks = $((n / g)) data x $g expert, each holding $((4 / g)) of the 4" \
    "log-ep$n-$g.txt" || fail "$n ranks, expert parallel $g: no expert-parallel line in the log"
  grep -q "^expert parallel: rank 0 sent .* MB per step" "log-ep$n-$g.txt" ||
    fail "$n ranks, expert parallel $g: no all-to-all volume in the log"
  [[ -f "ep$n-$g/model.safetensors" ]] || fail "$n ranks, expert parallel $g: no model.safetensors"
done
if ranks 2 "$minimoe" train "${base[@]}" --batch-size 4 --expert-parallel 3 --out ep-bad \
  >/dev/null 2>log-ep-bad.txt; then
  fail "2 ranks took --expert-parallel 3"
fi
grep -q "expert parallel: 2 ranks do not form groups of 3" log-ep-bad.txt ||
  fail "no message for --expert-parallel 3 on 2 ranks: $(cat log-ep-bad.txt)"

echo "--- checkpoints: one process interrupted, resumed on 2 ranks, and the other way round"
"$minimoe" train "${small[@]}" --steps "$steps" --out to-ranks 2>log-a.txt &
pid=$!
wait_for_step 7 to-ranks "$pid"
kill -INT "$pid"
status=0
wait "$pid" || status=$?
((status == 130)) || fail "one process interrupted exited with $status, not 130: $(cat log-a.txt)"
grep -q "^interrupted: saved step" log-a.txt || fail "one process was not interrupted: $(cat log-a.txt)"
cp -r to-ranks to-ep
ranks 2 "$minimoe" train --out to-ranks --resume --sample-tokens 0 2>log-b.txt ||
  fail "2 ranks resuming one process's checkpoint: $(cat log-b.txt)"
same_numbers "the losses of one process resumed on 2 ranks" "$reference" "$(losses to-ranks/metrics.jsonl)"
ranks 4 "$minimoe" train --out to-ep --resume --sample-tokens 0 --expert-parallel 2 2>log-b-ep.txt ||
  fail "4 ranks (2 x 2) resuming one process's checkpoint: $(cat log-b-ep.txt)"
same_numbers "the losses of one process resumed on 4 ranks (2 x 2)" "$reference" \
  "$(losses to-ep/metrics.jsonl)"

start_ranks log-c.txt 2 "$minimoe" train "${small[@]}" --steps "$steps" --expert-parallel 2 \
  --out to-one
wait_for_step 7 to-one "$pid"
# One rank gets the signal; the ranks agree to stop after the same step.
kill -INT "$(rank_pid "$pid" 1)"
status=0
wait "$pid" || status=$?
((status == 130)) || fail "2 ranks interrupted exited with $status, not 130: $(cat log-c.txt)"
grep -q "^interrupted: saved step" log-c.txt || fail "2 ranks (expert parallel) were not interrupted: $(cat log-c.txt)"
"$minimoe" train --out to-one --resume --threads 1 --sample-tokens 0 2>log-d.txt ||
  fail "one process resuming 2 expert-parallel ranks' checkpoint: $(cat log-d.txt)"
same_numbers "the losses of 2 expert-parallel ranks resumed in one process" "$reference" \
  "$(losses to-one/metrics.jsonl)"

echo "--- a batch that does not split over the ranks"
if ranks 2 "$minimoe" train "${base[@]}" --batch-size 3 --out odd >/dev/null 2>log-odd.txt; then
  fail "2 ranks took a batch of 3"
fi
grep -q "a batch of 3 sequences does not split evenly over 2 ranks" log-odd.txt ||
  fail "no message for a batch of 3 on 2 ranks: $(cat log-odd.txt)"

# dead_rank SIGNAL [FLAGS...]: a long run on 2 ranks whose rank 1 gets SIGNAL after a few steps
# must end, nonzero and with no rank left, within a few seconds of the --mpi-timeout of 3 s.
dead_rank() {
  local pid start
  start_ranks "log-dead-$1.txt" 2 "$minimoe" train "${base[@]}" --batch-size 4 --steps 100000 \
    --eval-every 0 --checkpoint-every 0 --mpi-timeout 3 --out "dead-$1" "${@:2}"
  wait_for_step 3 "dead-$1" "$pid"
  local victims
  victims=$(children "$pid")
  kill "-$1" "$(rank_pid "$pid" 1)"
  start=$SECONDS
  while kill -0 "$pid" 2>/dev/null && ((SECONDS - start < 30)); do sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    fail "SIG$1 to a rank: the run still hangs after 30 s"
    for victim in $victims; do kill -KILL "$victim" 2>/dev/null || true; done
    kill -KILL "$pid" || true
  fi
  local status=0
  wait "$pid" || status=$?
  ((status != 0)) || fail "SIG$1 to a rank: the run exited with 0"
  # mpirun may return while its ranks are still being torn down: give them 5 s.
  for victim in $victims; do
    local grace=$SECONDS
    while alive "$victim" && ((SECONDS - grace < 5)); do sleep 0.1; done
    if alive "$victim"; then
      fail "SIG$1 to a rank: rank process $victim survived"
      kill -KILL "$victim" || true
    fi
  done
  echo "SIG$1 to rank 1: the run stopped after $((SECONDS - start)) s with exit code $status"
}
echo "--- a rank that dies, a rank that hangs"
dead_rank KILL
dead_rank STOP --expert-parallel 2  # rank 0 waits in the experts' all-to-alls too
grep -q "minimoe: rank 0 of 2: no answer from the other ranks for 3 s in " log-dead-STOP.txt ||
  fail "SIGSTOP to a rank: no message from rank 0: $(cat log-dead-STOP.txt)"

if ((failures > 0)); then
  echo "$failures checks failed"
  exit 1
fi
echo "all distributed training checks passed"
