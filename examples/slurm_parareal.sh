#!/bin/bash
# Parareal as a Slurm job: one task per rank, one GPU per rank when torch states are used.
# Submit with:  sbatch examples/slurm_parareal.sh
# Restart after a wall-time limit: submit the same script again; --resume picks up the
# checkpoint written after the last complete iteration (see docs/mpi.md).
#SBATCH --job-name=parareal
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=4
#SBATCH --cpus-per-task=1
#SBATCH --time=00:30:00

set -euo pipefail
export OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}
CHECKPOINT=${CHECKPOINT:-$PWD/parareal-heat.ckpt.npz}

# mpi4py built against the cluster's MPI (not the mpich wheel):
#   module load openmpi && pip install --no-binary=mpi4py mpi4py
RESUME=()
if [ -f "$CHECKPOINT" ]; then
    RESUME=(--resume "$CHECKPOINT")
fi
srun python -m parareal solve heat --param points=400 --slices 64 --fine scipy:BDF \
    --backend mpi --checkpoint "$CHECKPOINT" ${RESUME[@]+"${RESUME[@]}"} --json
