"""Strip the checkpoints of finished (or stopped) GPU jobs and pack them for the trip back ($OUT):
at most 8 files of 16 MiB. Per job: ``<job>.tar`` with best.pt, last.pt and the newest epoch
checkpoints that fit in a file of 16 MiB; a checkpoint larger than that alone (YOLO11s) is split in parts."""

from __future__ import annotations

import sys
import tarfile
from pathlib import Path

LIMIT = 16 * 2**20 - 2**16  # room for the tar headers


def main(runs: Path, out: Path) -> None:
    from ultralytics.utils.torch_utils import strip_optimizer

    out.mkdir(parents=True, exist_ok=True)
    for run in sorted(p for p in runs.iterdir() if (p / "weights").is_dir()):
        w = run / "weights"
        epochs = sorted(w.glob("epoch*.pt"), key=lambda p: int(p.stem[5:]), reverse=True)
        if (w / "last.pt").exists():
            epochs = epochs[1:]  # the newest epoch's file is last.pt again
        picks = [p for p in [w / "best.pt", w / "last.pt", *epochs] if p.exists()]
        total, chosen = 0, []
        for p in picks:
            try:
                strip_optimizer(p)
            except Exception as e:  # a checkpoint cut mid-write: skip it, keep the rest
                print(f"skip {p}: {e}")
                continue
            size = p.stat().st_size
            if size > LIMIT:  # alone too big: split it (cat the parts back together)
                data = p.read_bytes()
                half = (len(data) + 1) // 2
                for i in range(2):
                    (out / f"{run.name}_{p.stem}.part{i}").write_bytes(data[i * half : (i + 1) * half])
                print(f"{run.name}/{p.name}: {size} bytes in 2 parts")
                break
            if total + size > LIMIT:
                break
            chosen.append(p)
            total += size
        if chosen:
            with tarfile.open(out / f"{run.name}.tar", "w") as tar:
                for p in chosen:
                    tar.add(p, arcname=p.name)
            print(f"{run.name}.tar: {[p.name for p in chosen]} {total} bytes")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
