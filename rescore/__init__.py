"""Re-scoring image archives with a new model: ``pvwind rescore`` (see docs/rescore.md).
Imports ``detector`` and ``storage``, nothing of the service.

- :mod:`rescore.scan`: find images in folder trees, .zip and .tar files; read their bytes
- :mod:`rescore.plan`: what is left to score (archive index, content already scored, copies)
- :mod:`rescore.worker`: score a chunk of images (one ONNX Runtime session per worker)
- :mod:`rescore.outcome`: what happened to one image, as a worker hands it over
- :mod:`rescore.writer`: the single batch writer and the run's statistics
- :mod:`rescore.local_runner`: local worker processes
- :mod:`rescore.ray_runner`: the same on Ray (Ray Data + an actor pool)
- :mod:`rescore.report`: reads the run back from the store and writes
  :mod:`rescore.exports` (GeoJSON, CSV, Parquet), :mod:`rescore.summary` (per site and
  flight, unreadable files) and :mod:`rescore.changes` (against a previous model)

The file index and run log live in the shared store: :mod:`storage.archive`.
"""
