"""Human review: predictions out to Label Studio / CVAT (and plain YOLO / COCO), corrections
back in as a training source.

- :mod:`review.items`: what a reviewer sees of one image (a :class:`ReviewImage` made from an
  :class:`detector.results.ImageResult`), in review order, loaded from a ``pvwind inspect``
  folder, a re-scorer store or a job;
- :mod:`review.labelstudio`, :mod:`review.cvat`, :mod:`review.plain`: the writers (and, for the
  two tools, the readers of their corrected exports);
- :mod:`review.outcome`: predictions against corrections: confirmed, moved, relabelled, deleted,
  added, and the precision / recall they give;
- :mod:`review.ingest`: a corrected export -> a dataset source (``datasets/<name>.yaml`` plus its
  files in ``build/cache/reviewed/<name>/``) that ``pvwind data build`` reads like the public ones.

Layering: imports ``detector``, ``configs``, ``storage`` (read-only, for a store) and, in
:mod:`review.ingest` only, ``training`` (the manifest model). ``serving`` uses the writers.
"""
