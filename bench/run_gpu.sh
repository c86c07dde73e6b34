#!/usr/bin/env bash
# Run the GPU benchmarks and write JSON + logs to $OUT (the device tool's output folder) or /tmp/bench-out.
#   bash bench/run_gpu.sh sft reward eager   # one H200: SFT and reward throughput / MFU
#   bash bench/run_gpu.sh rollout            # one H200: rollout vs model.generate, PPO step time split
#   bash bench/run_gpu.sh ppo_compile        # one H200: PPO eager vs torch_compile, then `sample`
#   bash bench/run_gpu.sh x2                 # two H200s: reward and PPO under torchrun --nproc_per_node 2
# Each benchmark is its own process with its own time limit, so one failure does not hide the rest.
set -u
OUT=${OUT:-/tmp/bench-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false NCCL_NVLS_ENABLE=0
export TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
PPO_DIR=/tmp/ppo-bench

step() {  # step NAME LIMIT_S COMMAND...
  local name=$1 limit=$2; shift 2
  echo "=== $name: $*"
  local start=$SECONDS
  # one log for all steps: the device tool returns at most 8 files
  echo "=== $name: $*" >> "$OUT/steps.log"
  timeout "$limit" "$@" > "/tmp/$name.log" 2>&1
  echo "=== $name: exit $? after $((SECONDS - start)) s"
  cat "/tmp/$name.log" >> "$OUT/steps.log"
  tail -n 3 "/tmp/$name.log"
}

for part in "$@"; do
case "$part" in
  sft)
    nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,power.draw,temperature.gpu --format=csv
    step sft 170 python3 bench/train_throughput.py --task sft --micro-batch 16 --out "$OUT/sft.json"
    step sft_mb32 120 python3 bench/train_throughput.py --task sft --micro-batch 32 --out "$OUT/sft_mb32.json"
    ;;
  reward)
    step reward 200 python3 bench/train_throughput.py --task reward --micro-batch 8 --out "$OUT/reward.json"
    ;;
  eager)
    step sft_eager 100 python3 bench/train_throughput.py --task sft --micro-batch 16 --no-compile \
      --out "$OUT/sft_eager.json"
    ;;
  rollout)
    step rollout 150 python3 bench/rollout_speed.py --batch 64 256 --prompt-len 512 --new-tokens 256 \
      --repeat 3 --out "$OUT/rollout.json"
    step ppo_setup 60 python3 bench/ppo_setup.py --run-dir $PPO_DIR
    step ppo 200 python3 -m training.engine ppo --run-dir $PPO_DIR
    step ppo_summary 30 python3 bench/ppo_summary.py --run-dir $PPO_DIR --gpus 1 --out "$OUT/ppo_1gpu.json"
    ;;
  ppo_compile)  # PPO eager and with torch_compile (the decoder layers) in one call, then `sample`
    step ppo_setup 60 python3 bench/ppo_setup.py --run-dir $PPO_DIR
    step ppo 150 python3 -m training.engine ppo --run-dir $PPO_DIR
    step ppo_summary 30 python3 bench/ppo_summary.py --run-dir $PPO_DIR --gpus 1 --out "$OUT/ppo_1gpu.json"
    step ppo_setup_compiled 60 python3 bench/ppo_setup.py --run-dir ${PPO_DIR}-compiled --compile
    TORCH_LOGS=recompiles step ppo_compiled 200 python3 -m training.engine ppo --run-dir ${PPO_DIR}-compiled
    step ppo_summary_compiled 30 python3 bench/ppo_summary.py --run-dir ${PPO_DIR}-compiled --gpus 1 \
      --out "$OUT/ppo_1gpu_compiled.json"
    step sample 120 python3 bench/sample_check.py --policy $PPO_DIR/policy --prompts $PPO_DIR/prompts.jsonl \
      --out "$OUT/sample.json"
    ;;
  x2)
    nvidia-smi --query-gpu=name --format=csv
    step reward_x2 240 torchrun --nproc_per_node 2 bench/train_throughput.py --task reward --micro-batch 8 \
      --out "$OUT/reward_x2.json"
    step ppo_setup 60 python3 bench/ppo_setup.py --run-dir $PPO_DIR
    step ppo_x2 220 torchrun --nproc_per_node 2 -m training.engine ppo --run-dir $PPO_DIR
    step ppo_summary 30 python3 bench/ppo_summary.py --run-dir $PPO_DIR --gpus 2 --out "$OUT/ppo_2gpu.json"
    step sft_mb32 120 python3 bench/train_throughput.py --task sft --micro-batch 32 --out "$OUT/sft_mb32.json"
    ;;
  *) echo "usage: $0 PART... (sft reward eager rollout ppo_compile x2)"; exit 2 ;;
esac
done
