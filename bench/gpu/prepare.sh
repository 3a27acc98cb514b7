#!/bin/bash
# Prepare a GPU run on a lent machine that cannot fetch anything (docs/experiments.md, "The first GPU run"):
#   bash bench/gpu/prepare.sh [QUALITY] [--lean]     (from the repo root, after `make .venv/.all` and a data build)
# 1. wheels the machine lacks -> .whl/ (the versions of this checkout's .venv, for CPython 3.12 x86-64);
# 2. the train and val splits packed -> .gpu/data.tar.xz (bench/gpu/pack.py, WebP at QUALITY, default 60);
# 3. both folders ignored through .git/info/exclude; the shipped model's ONNX files and docs/img/ (and with
#    --lean all of models/, for jobs that start from a checkpoint in .gpu/ or from scratch) left out of the
#    index, so the travelling tree stays under 64 MiB. `bash bench/gpu/prepare.sh --restore` puts them back.
set -eu
cd "$(git rev-parse --show-toplevel)"
EXCL=.git/info/exclude; mkdir -p .git/info; touch $EXCL
LEFT=$(git ls-files 'models/*/model.onnx' 'models/*/model_int8.onnx' docs/img)
BEGIN='# bench/gpu: left out for a GPU run'; END='# bench/gpu: end'
if [ "${1:-}" = --restore ]; then
  git reset -q -- models docs/img
  sed -i "\|^$BEGIN|,\|^$END|d" $EXCL
  echo "index restored"; git status --short | head; exit 0
fi
Q=60; LEAN=0
for a in "$@"; do case $a in --lean) LEAN=1;; *) Q=$a;; esac; done
[ $LEAN = 1 ] && LEFT=$(git ls-files models docs/img)
grep -qx '/.whl/' $EXCL || echo /.whl/ >> $EXCL
grep -qx '/.gpu/' $EXCL || echo /.gpu/ >> $EXCL
mkdir -p .whl .gpu
for pkg in ultralytics ultralytics-thop ultralytics-platform pydantic pydantic-core annotated-types typing-inspection typing-extensions; do
  v=$(.venv/bin/python -c "import importlib.metadata as m; print(m.version('$pkg'))")
  ls .whl | grep -qi "^$(echo $pkg | tr - _)-$v-" && continue
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl "$pkg==$v" 2>&1 | grep -v "^WARNING: Location" || true
done
# pack again when the build is newer or the quality differs
[ -f .gpu/data.tar.xz ] && [ .gpu/data.tar.xz -nt build/dataset/data.yaml ] && [ "$(cat .gpu/quality 2>/dev/null)" = "$Q" ] || {
  .venv/bin/python bench/gpu/pack.py --data build/dataset --out .gpu --quality "$Q"
  xz -T0 -1 -f .gpu/data.tar && echo "$Q" > .gpu/quality
}
if ! grep -qx "$BEGIN" $EXCL; then
  { echo "$BEGIN"; for f in $LEFT; do echo "/$f"; done; echo "$END"; } >> $EXCL
  for f in $LEFT; do git rm -q --cached "$f"; done
fi
size=$( (git ls-files -z --cached --others --exclude-standard; find .whl .gpu -type f -print0) | du -cb --files0-from=- | tail -1 | cut -f1)
echo "travels: $((size / 1048576)) MiB of 64 (carry .whl and .gpu); restore: bash bench/gpu/prepare.sh --restore"
