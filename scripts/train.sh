#!/usr/bin/env bash
# Multi-GPU fine-tuning with memory.
#
#   scripts/train.sh CONFIG.yaml [NUM_GPUS] [ZERO] [more vl3mem train options...]
#
# ZERO: 0 = plain DDP, 2 = DeepSpeed ZeRO-2 (default), 3 = ZeRO-3 (pip install 'vl3mem[deepspeed]').
# Examples:
#   scripts/train.sh configs/2b.yaml 8 2 --output-dir runs/2b-hier
#   scripts/train.sh configs/2b.yaml 8 2 --output-dir runs/2b-hier --resume
#   scripts/train.sh train/configs/tiny.yaml 2 0 --output-dir runs/tiny-ddp   # also on a CPU machine (gloo)
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIG=${1:?usage: scripts/train.sh CONFIG.yaml [NUM_GPUS] [ZERO] [options]}
GPUS=${2:-$(python -c "import torch; print(max(torch.cuda.device_count(), 1))")}
ZERO=${3:-2}
shift $(( $# < 3 ? $# : 3 ))
case "$ZERO" in
  0) LAUNCH=(--config_file scripts/accelerate/multi_gpu.yaml) ;;
  2|3) LAUNCH=(--config_file scripts/accelerate/deepspeed.yaml --deepspeed_config_file "scripts/deepspeed/zero${ZERO}.json") ;;
  *) echo "ZERO must be 0, 2 or 3, got $ZERO" >&2; exit 2 ;;
esac
exec accelerate launch "${LAUNCH[@]}" --num_processes "$GPUS" -m train --config "$CONFIG" "$@"
