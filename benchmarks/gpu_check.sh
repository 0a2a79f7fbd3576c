#!/usr/bin/env bash
# The prepared GPU check (the CUDA path, mixed precision, the GPU slots): at most about 8 minutes on one H100/H200.
#
#     benchmarks/gpu_check.sh [OUTDIR]        # OUTDIR: $OUT if set, else results/gpu_check
#     GPU_CHECK_DRY=1 benchmarks/gpu_check.sh # the same stages on the CPU at toy size (checks the script)
#
# Stages, each under its own time limit (and all under GPU_CHECK_BUDGET seconds, default 450; the
# dry mode triples the limits):
#   0 device    CUDA present and the packages importable, else stop at once (one line says what)
#   1 tests     the CUDA-marked tests (tests/test_cuda.py), with the per-step host-sync record
#   2 epoch     python -m benchmarks.run_all --device cuda --only epoch_cost (s/epoch, images/s)
#   2b precision oLMM-VAE on Health MNIST (N = 20,000) in float32 and bfloat16: s/epoch (benchmarks.precision)
#   3 packing   the same Rotating MNIST training K = 1, 2, 4, 8 times at once on the GPU
#   4 rotating  the Rotating MNIST experiments of config/paper.yaml end to end through Snakemake
#               (--workflow-profile profiles/gpu: 8 trainings share the GPU), REDUCED to
#               GPU_CHECK_EPOCHS epochs (default 10, no early stopping), tables included
#   5 compile   (optional: runs on the time left, skipping it is no failure) the precision stage with
#               `compile: true`, first epoch (compilation) and s/epoch against float32
# then OUTDIR/gpu_check.md: a timing table of the stages, the epoch_cost table for BENCHMARKS.md's
# cuda block, the precision and compile tables, the packing table, the per-model epoch times and the Rotating MNIST tables, and an
# estimate of the wall time. OUTDIR keeps at most 6 files (logs and small results in one tarball).
# Exit status: 0 when every stage passed, 1 when one failed or ran out of time, 2 before any ran.
#
# Python: $PYTHON, else .venv/bin/python, else python3; it needs torch with CUDA, snakemake,
# mlxtend, gpytorch, h5py, pandas, matplotlib, seaborn, jsonschema, statsmodels, pytest. The lent
# H200 image has torch but not snakemake or mlxtend: carry their wheels (see the device README).
set -uo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO"
DRY=${GPU_CHECK_DRY:-0}
OUTDIR=${1:-${OUT:-results/gpu_check}}
# the CPU dry mode is slower than the GPU (and the dev machine is shared): 3x the stage limits
if [ "$DRY" = 1 ]; then SCALE=3; BUDGET=${GPU_CHECK_BUDGET:-1350}; else SCALE=1; BUDGET=${GPU_CHECK_BUDGET:-450}; fi
EPOCHS=${GPU_CHECK_EPOCHS:-10}
if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
case "$PYTHON" in */*) PYTHON=$(cd "$(dirname "$PYTHON")" && pwd)/$(basename "$PYTHON") ;; esac
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
if [ "$DRY" = 1 ]; then DEVICE=cpu; TOY=--toy; EPOCHS=2; KS="1 2"; PACK_EPOCHS=2; QUICK=--quick; PREC=--quick
else DEVICE=cuda; TOY=; KS="1 2 4 8"; PACK_EPOCHS=5; QUICK=; PREC="--sizes 20000 --repeats 3"; fi

mkdir -p "$OUTDIR"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")
mkdir -p "$WORK/logs"
START=$(date +%s)
DEADLINE=$((START + BUDGET))
printf 'stage\tstatus\tseconds\tbudget_s\tcommand\n' > "$WORK/timing.tsv"
FAILED=0

# stage NAME BUDGET_S COMMAND...: run under min(BUDGET_S, time left - 20 s), log to logs/NAME.log
# (OPTIONAL=1 stage ...: skipping it for lack of time is no failure)
stage() {
    local name=$1 budget=$(($2 * SCALE)); shift 2
    local left=$((DEADLINE - $(date +%s) - 20))
    [ "$left" -lt "$budget" ] && budget=$left
    if [ "$budget" -le 5 ]; then
        printf '%s\tskipped (no time left)\t0\t%s\t%s\n' "$name" "$budget" "$*" >> "$WORK/timing.tsv"
        [ "${OPTIONAL:-0}" = 1 ] || FAILED=1; return
    fi
    echo "== $name (at most ${budget} s): $*"
    local t0; t0=$(date +%s.%N)
    timeout --kill-after=10 "$budget" "$@" > "$WORK/logs/$name.log" 2>&1
    local rc=$?
    local dt; dt=$(awk "BEGIN {printf \"%.1f\", $(date +%s.%N) - $t0}")
    local status=ok
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then status="TIMEOUT"; FAILED=1
    elif [ "$rc" -ne 0 ]; then status="FAILED (rc $rc)"; FAILED=1; fi
    printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$status" "$dt" "$budget" "$*" >> "$WORK/timing.tsv"
    echo "   $status in ${dt} s"; tail -n 3 "$WORK/logs/$name.log" | sed 's/^/   | /'
}

# -- 0: fail fast -----------------------------------------------------------------------------
"$PYTHON" - "$DEVICE" > "$WORK/device.txt" 2> "$WORK/logs/device.log" <<'EOF'
import importlib, platform, sys
missing = [m for m in ("torch", "snakemake", "mlxtend", "gpytorch", "h5py", "pandas", "matplotlib",
                       "seaborn", "jsonschema", "statsmodels", "pytest", "yaml", "lmmvae")
           if importlib.util.find_spec(m) is None]
if missing:
    sys.exit(f"gpu_check: {sys.executable} lacks {', '.join(missing)}; set PYTHON or carry the wheels")
import torch
if sys.argv[1] == "cuda" and not torch.cuda.is_available():
    sys.exit(f"gpu_check: torch {torch.__version__} sees no CUDA device (GPU_CHECK_DRY=1 for the CPU dry mode)")
print(f"python {platform.python_version()} ({sys.executable}), torch {torch.__version__}")
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print(f"GPU {p.name}, {p.total_memory / 2**30:.0f} GiB, {p.multi_processor_count} SMs; CUDA {torch.version.cuda}")
else:
    print("no GPU: CPU dry mode (toy sizes; timings say nothing about a GPU)")
EOF
if [ $? -ne 0 ]; then cat "$WORK/logs/device.log" >&2; rm -rf "$WORK"; exit 2; fi
cat "$WORK/device.txt"
nproc_all=$(nproc)
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >> "$WORK/device.txt"

# -- 1: CUDA tests ----------------------------------------------------------------------------
stage tests 90 "$PYTHON" -m pytest -q -s -p no:cacheprovider -m cuda tests/test_cuda.py

# -- 2: epoch cost (BENCHMARKS.md cuda block, written to a copy) --------------------------------
# run in $WORK/bench, so that its CSV and data cache do not replace the checkout's results/benchmarks
mkdir -p "$WORK/bench"
stage epoch_cost 120 env -C "$WORK/bench" "$PYTHON" -m benchmarks.run_all --device "$DEVICE" --only epoch_cost \
    $QUICK --markdown "$WORK/BENCHMARKS.cuda.md"
cp "$WORK"/bench/results/benchmarks/epoch_cost*.csv "$WORK/" 2>/dev/null
# mixed precision (BENCHMARKS.md "On a GPU"), on epoch_cost's cached Health MNIST
stage precision 45 env -C "$WORK/bench" "$PYTHON" -m benchmarks.precision --device "$DEVICE" --models oLMM-VAE \
    --settings fp32 bf16 $PREC --out "$WORK/precision.csv" --markdown "$WORK/precision.md"

# -- 3 and 4: Rotating MNIST (data and model files first, then packing, then the experiments) ---
# (the workflow names a model YAML by its content: `config` prints the packing model's)
PACK_MODEL=$("$PYTHON" -m benchmarks.gpu_check config --out "$WORK/rotating.yaml" --epochs "$EPOCHS" \
    --device "$DEVICE" $TOY 2> "$WORK/logs/config.log" | tail -n 1)
SNAKE=(--directory "$WORK/rotating" --workflow-profile profiles/gpu --configfile "$WORK/rotating.yaml"
       --cores "$nproc_all" --quiet rules)
stage rotating_data 60 "$PYTHON" -m snakemake results/data/rotating_mnist.h5 \
    "$PACK_MODEL" "${SNAKE[@]}"
stage packing 75 "$PYTHON" -m benchmarks.gpu_check packing --device "$DEVICE" --ks $KS --epochs "$PACK_EPOCHS" \
    --data "$WORK/rotating/results/data/rotating_mnist.h5" \
    --model "$WORK/rotating/$PACK_MODEL" \
    --work "$WORK/packing" --out "$WORK/packing.csv"
stage rotating 200 "$PYTHON" -m snakemake "${SNAKE[@]}"

# -- 5: torch.compile, on the time left (first epoch = compilation) -----------------------------
OPTIONAL=1 stage compile 120 env -C "$WORK/bench" "$PYTHON" -m benchmarks.precision --device "$DEVICE" \
    --models oLMM-VAE --settings fp32 fp32+compile bf16+compile $PREC --out "$WORK/compile.csv" \
    --markdown "$WORK/compile.md"

# -- summary ----------------------------------------------------------------------------------
total=$(( $(date +%s) - START ))
printf 'total\t%s\t%s\t%s\t%s\n' "$([ $FAILED = 0 ] && echo ok || echo 'a stage failed')" "$total" "$BUDGET" \
    "benchmarks/gpu_check.sh (dry=$DRY, epochs=$EPOCHS)" >> "$WORK/timing.tsv"
"$PYTHON" -m benchmarks.gpu_check summary --work "$WORK" --out "$OUTDIR/gpu_check.md" > /dev/null \
    || echo "gpu_check: the summary failed; raw files in the tarball" >&2
cp "$WORK/timing.tsv" "$OUTDIR/timing.tsv"
[ -f "$WORK/packing.csv" ] && cp "$WORK/packing.csv" "$OUTDIR/"
ls "$WORK"/epoch_cost*.csv >/dev/null 2>&1 && cp "$WORK"/epoch_cost*.csv "$OUTDIR/"
tar -C "$WORK" -czf "$OUTDIR/gpu_check_files.tar.gz" --exclude='*.pt' --exclude='*.h5' . 2>/dev/null
rm -rf "$WORK"
column -t -s $'\t' "$OUTDIR/timing.tsv" 2>/dev/null || cat "$OUTDIR/timing.tsv"
echo "gpu_check: ${total} s; report in $OUTDIR/gpu_check.md"
exit $FAILED
