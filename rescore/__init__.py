"""Re-scoring image archives with a new model: ``pvwind rescore`` (see docs/rescore.md).

- :mod:`serving.rescore.scan`: find images in folder trees, .zip and .tar files
- :mod:`serving.rescore.worker`: score a chunk of images (one ONNX Runtime session per worker)
- :mod:`serving.rescore.pipeline`: plan what is left, local worker processes, the single batch writer
- :mod:`serving.rescore.ray_runner`: the same on Ray (Ray Data + an actor pool)
- :mod:`serving.rescore.store`: the file index, run log and batch writes to the shared result store
- :mod:`serving.rescore.report`: exports, per-flight summary, unreadable list, change report
"""
