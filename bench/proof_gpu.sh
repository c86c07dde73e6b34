#!/usr/bin/env bash
# Several of issue 10's proofs at once on one machine, one process each, GPUs shared out by hand:
#   bash bench/proof_gpu.sh sim:0:11 sim:1:12 hh:0:baseline hh:1:top8 tiny:-:21
# sim:GPU:SEED     the SmolLM2 simulated loop (bench/simulated_loop.py, no DPO) with that labeler seed
# hh:GPU:RECIPE[@SEED]  bench/hh_reward.py, one recipe, one seed (default 0), 5-fold cross-validation
# tiny:-:SEED      the tiny simulated loop on the CPU (bench/simulated_loop.py --tiny), 2 threads
# Needs GGUF=/path/SmolLM2-135M-Instruct.Q4_1.gguf and HH=/path/hh-rlhf-harmless-sample.jsonl for sim
# and hh. Each job has its own time limit (LIMIT_S, default 540); every job's JSON and log end up in
# $OUT/proof.tgz (the device tool returns at most 8 files) and the logs, one after another, in $OUT/jobs.log.
set -u
OUT=${OUT:-/tmp/proof-out}
WORK=$(mktemp -d /tmp/proof.XXXX)
LIMIT_S=${LIMIT_S:-540}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false NCCL_NVLS_ENABLE=0
export TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
names=()
for job in "$@"; do
  IFS=: read -r kind gpu arg <<< "$job"
  seed=0
  if [ "$kind" = hh ] && [[ "$arg" == *@* ]]; then seed=${arg#*@}; arg=${arg%@*}; fi
  name="${kind}_${arg}"
  [ "$kind" = hh ] && [ "$seed" != 0 ] && name="${name}_seed${seed}"
  case "$kind" in
    sim) command=(python3 bench/simulated_loop.py --hh "$HH" --base-gguf "$GGUF" --no-dpo --seed "$arg"
                  --timeout $((LIMIT_S - 60)) --out "$WORK/$name.json") ;;
    hh) command=(python3 bench/hh_reward.py --gguf "$GGUF" --hh "$HH" --recipes "$arg" --seeds "$seed" --folds 5
                 --out "$WORK/$name.json") ;;
    tiny) command=(python3 bench/simulated_loop.py --tiny --seed "$arg" --out "$WORK/$name.json") ;;
    *) echo "unknown job $job"; exit 2 ;;
  esac
  if [ "$gpu" = "-" ]; then
    env CUDA_VISIBLE_DEVICES= OMP_NUM_THREADS=2 MKL_NUM_THREADS=2 \
      timeout -s TERM -k 20 "$LIMIT_S" "${command[@]}" > "$WORK/$name.log" 2>&1 &
  else
    env CUDA_VISIBLE_DEVICES="$gpu" OMP_NUM_THREADS=${JOB_THREADS:-3} timeout -s TERM -k 20 "$LIMIT_S" "${command[@]}" > "$WORK/$name.log" 2>&1 &
  fi
  echo "started $name (pid $!, gpu ${gpu}): ${command[*]}"
  names+=("$name")
  sleep 2  # the platforms pick free ports; don't let two pick the same one at once
done
start=$SECONDS
wait
for name in "${names[@]}"; do
  { echo "=== $name"; cat "$WORK/$name.log"; } >> "$OUT/jobs.log"
  echo "=== $name: last lines"; tail -n 4 "$WORK/$name.log"
done
echo "all jobs done after $((SECONDS - start)) s"
tar -czf "$OUT/proof.tgz" -C "$WORK" .
