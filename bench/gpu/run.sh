#!/bin/bash
# The prepared GPU run (docs/experiments.md, "The first GPU run"): the training jobs of a jobs file side by side
# on one lent GPU machine, each through bench/gpu/train_job.py, stopped by a deadline, checkpoints
# stripped and packed into $OUT. Run from the repo root with .gpu/data.tar.xz (bench/gpu/pack.py) and .whl
# carried:  bash bench/gpu/run.sh HOURS DEADLINE_S JOBS_FILE
# (env: DEVICE=0, FRACTION=1.0, PY=python3, WORKERS=dataloader workers per job, default (cores - 1) / jobs)
set -u
T0=$(date +%s)
H=$1; DEADLINE=$2; JOBS=$3
OUT=${OUT:-/tmp/gpu_out}; PY=${PY:-python3}; DEVICE=${DEVICE:-0}; FRACTION=${FRACTION:-1.0}
export YOLO_OFFLINE=1 PYTHONUNBUFFERED=1
if [ -d .whl ] && [ "$PY" = python3 ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site || exit 3
fi
rm -rf /tmp/ds /tmp/runs /tmp/logs; mkdir -p /tmp/ds /tmp/runs /tmp/logs "$OUT"
$PY -c "import tarfile; tarfile.open('.gpu/data.tar.xz').extractall('/tmp/ds')" || exit 4
echo "setup $(( $(date +%s) - T0 )) s"; nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null
(while true; do nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader 2>/dev/null; uptime; sleep 20; done) > /tmp/logs/gpu.log 2>&1 &
MON=$!
job() {  # name init model key=value...
  local name=$1 init=$2 model=$3 sets=(); shift 3
  for kv in "$@"; do sets+=(--set "$kv"); done
  cp -al /tmp/ds/dataset /tmp/ds/$name  # each job its own copy: Ultralytics writes its label cache beside the labels
  $PY bench/gpu/train_job.py --data /tmp/ds/$name/data.yaml --run-dir /tmp/runs/$name --init "$init" --model "$model" \
    --hours "$H" --device "$DEVICE" --fraction "$FRACTION" --workers "$WORKERS" "${sets[@]}" > /tmp/logs/$name.log 2>&1 &
}
NJOBS=$(grep -cv '^\s*\(#\|$\)' "$JOBS")
WORKERS=${WORKERS:-$(( ($(nproc) - 1) / NJOBS > 1 ? ($(nproc) - 1) / NJOBS : 1 ))}
while read -r line; do case "$line" in ''|'#'*) continue;; esac; job $line; done < "$JOBS"
while [ "$(jobs -rp | grep -vc "^$MON$")" -gt 0 ] && [ $(( $(date +%s) - T0 )) -lt "$DEADLINE" ]; do sleep 5; done
echo "jobs ended or deadline at $(( $(date +%s) - T0 )) s"
kill -INT $(jobs -rp) 2>/dev/null; sleep 8; kill -9 $(jobs -rp) 2>/dev/null
$PY bench/gpu/collect.py /tmp/runs "$OUT"
for r in /tmp/runs/*/; do n=$(basename $r); echo "== $n"; grep -h "JOB DONE\|Error\|error" /tmp/logs/$n.log | tail -3
  [ -f $r/results.csv ] && cut -d, -f1,2,8,9 $r/results.csv | tail -4; done
tail -3 /tmp/logs/gpu.log
tar czf "$OUT/logs.tgz" -C /tmp logs $(cd /tmp && ls runs/*/results.csv runs/*/args.yaml runs/*/sampling.json runs/*/init.json 2>/dev/null)
ls -la "$OUT"; echo "total $(( $(date +%s) - T0 )) s"
