#!/bin/bash
# Sweep every unit of BVLC AlexNet with cnnpref's four variants on a Ray cluster started inside a
# SLURM job: the Ray head on the job's first node, one Ray worker per other node, the sweep's
# driver in this script (on the first node). Submit with `sbatch docs/slurm_ray_sweep.sh`.
#
# Resubmitting the same script resumes: finished units are skipped, unfinished ones redone, and
# the dataset ends up byte for byte what one uninterrupted run gives. Only the driver writes to
# $OUT; the workers send their results back through Ray, so they need no shared file system
# (but every node needs the same Python environment with `pip install 'lucent-dgn[ray]'` and
# the weight files).
#
#SBATCH --job-name=lucent-dgn-sweep
#SBATCH --nodes=4
#SBATCH --ntasks-per-node=1
#SBATCH --cpus-per-task=16
#SBATCH --gpus-per-node=4
#SBATCH --time=04:00:00
#SBATCH --output=lucent-dgn-sweep-%j.log
set -euo pipefail

VENV=${VENV:-$HOME/venvs/lucent-dgn}            # lucent-dgn[ray] installed here, same path on every node
OUT=${OUT:-$HOME/sweeps/bvlc_alexnet_all}        # the sweep directory (resumable)
WEIGHTS=${WEIGHTS:-$HOME/weights}                 # bvlc_alexnet.pt and deepsim_fc6.pt (see the README)
GPUS_PER_NODE=${GPUS_PER_NODE:-4}
PORT=6379

source "$VENV/bin/activate"
nodes=($(scontrol show hostnames "$SLURM_JOB_NODELIST"))
head_node=${nodes[0]}
head_ip=$(srun --nodes=1 --ntasks=1 -w "$head_node" hostname --ip-address | awk '{print $1}')

# Ray head and workers, each in the foreground of its own job step (--block), so SLURM stops them
# when the job ends.
srun --nodes=1 --ntasks=1 -w "$head_node" \
    ray start --head --node-ip-address="$head_ip" --port=$PORT --include-dashboard=false \
    --num-cpus="$SLURM_CPUS_PER_TASK" --num-gpus="$GPUS_PER_NODE" --block &
sleep 15
for node in "${nodes[@]:1}"; do
    srun --nodes=1 --ntasks=1 -w "$node" \
        ray start --address="$head_ip:$PORT" --num-cpus="$SLURM_CPUS_PER_TASK" --num-gpus="$GPUS_PER_NODE" --block &
done
sleep 15

# One Ray actor per GPU (--device cuda: each actor reserves one GPU), 64 rows per GD render.
lucent-dgn sweep --ray "$head_ip:$PORT" --device cuda --batch-size 64 \
    --model bvlc_alexnet --weights "$WEIGHTS/bvlc_alexnet.pt" \
    --generator deepsim-fc6 --generator-weights "$WEIGHTS/deepsim_fc6.pt" \
    --layers conv1 conv2 conv3 conv4 conv5 fc6 fc7 fc8 --units all \
    --variants gd lbfgs dgn_gd dgn_lbfgs --preset higher \
    --out "$OUT" --quiet
lucent-dgn atlas "$OUT"
# The Ray processes are job steps: they end with the job when this script exits.
