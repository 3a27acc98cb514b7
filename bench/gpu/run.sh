#!/bin/bash
# The prepared GPU run (docs/experiments.md, "GPU run"): three training jobs side by side on one lent
# GPU machine, each through bench/gpu/train_job.py, stopped by a deadline, checkpoints stripped and
# packed into $OUT. Run from the repo root with .gpu/data.tar.xz (bench/gpu/pack.py) and .whl carried:
#   bash bench/gpu/run.sh HOURS DEADLINE_S        (env: DEVICE=0, FRACTION=1.0, PY=python3)
set -u
T0=$(date +%s)
H=$1; DEADLINE=$2
OUT=${OUT:-/tmp/gpu_out}; PY=${PY:-python3}; DEVICE=${DEVICE:-0}; FRACTION=${FRACTION:-1.0}
export YOLO_OFFLINE=1 PYTHONUNBUFFERED=1
if [ -d .whl ] && [ "$PY" = python3 ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site || exit 3
fi
rm -rf /tmp/ds /tmp/runs /tmp/logs; mkdir -p /tmp/ds /tmp/runs /tmp/logs "$OUT"
$PY -c "import tarfile; tarfile.open('.gpu/data.tar.xz').extractall('/tmp/ds')" || exit 4
for j in a b c; do cp -al /tmp/ds/dataset /tmp/ds/$j; done  # each job its own label cache
echo "setup $(( $(date +%s) - T0 )) s"; nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null
(while true; do nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader 2>/dev/null; uptime; sleep 20; done) > /tmp/logs/gpu.log 2>&1 &
MON=$!
job() {  # name data-copy init model extra-args...
  local name=$1 ds=$2 init=$3 model=$4; shift 4
  $PY bench/gpu/train_job.py --data /tmp/ds/$ds/data.yaml --run-dir /tmp/runs/$name --init "$init" --model "$model" \
    --hours "$H" --device "$DEVICE" --fraction "$FRACTION" "$@" > /tmp/logs/$name.log 2>&1 &
}
if [ "${JOBSET:-1}" = 1 ]; then
job yolo11n-512-20261204ga a models/current yolo11n.yaml --set lr0=0.002 --set warmup_epochs=1 --set close_mosaic=5 --set seed=21 --set save_period=1
job yolo11n-512-20261204gb b models/current yolo11n.yaml --set lr0=0.001 --set warmup_epochs=0 --set close_mosaic=5 --set seed=22 --set copy_paste=0.0 --set save_period=1
job yolo11s-512-20261204gc c scratch yolo11s.yaml --set lr0=0.002 --set warmup_epochs=2 --set close_mosaic=5 --set seed=23
else  # the second, shorter round: more fine-tunes of the shipped model for the soup
job yolo11n-512-20261204gd a models/current yolo11n.yaml --set lr0=0.001 --set warmup_epochs=0 --set close_mosaic=3 --set seed=31 --set copy_paste=0.0 --set save_period=1
job yolo11n-512-20261204ge b models/current yolo11n.yaml --set lr0=0.001 --set warmup_epochs=0 --set close_mosaic=3 --set seed=32 --set copy_paste=0.0 --set save_period=1
job yolo11n-512-20261204gf c models/current yolo11n.yaml --set lr0=0.002 --set warmup_epochs=1 --set close_mosaic=3 --set seed=33 --set save_period=1
fi
while [ "$(jobs -rp | grep -vc "^$MON$")" -gt 0 ] && [ $(( $(date +%s) - T0 )) -lt "$DEADLINE" ]; do sleep 5; done
echo "jobs ended or deadline at $(( $(date +%s) - T0 )) s"
kill -INT $(jobs -rp) 2>/dev/null; sleep 8; kill -9 $(jobs -rp) 2>/dev/null
$PY bench/gpu/collect.py /tmp/runs "$OUT"
for r in /tmp/runs/*/; do n=$(basename $r); echo "== $n"; grep -h "JOB DONE\|Error\|error" /tmp/logs/$n.log | tail -3
  [ -f $r/results.csv ] && cut -d, -f1,2,8,9 $r/results.csv | tail -4; done
tail -3 /tmp/logs/gpu.log
tar czf "$OUT/logs.tgz" -C /tmp logs $(cd /tmp && ls runs/*/results.csv runs/*/args.yaml runs/*/sampling.json runs/*/init.json 2>/dev/null)
ls -la "$OUT"; echo "total $(( $(date +%s) - T0 )) s"
