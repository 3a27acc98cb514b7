"""The result store shared by the service (``serving``) and the archive re-scorer
(``rescore``): tables (:mod:`storage.tables`), opening a database and idempotent writes
(:mod:`storage.database`), images / results / jobs (:mod:`storage.store`) and the
re-scorer's file index and runs (:mod:`storage.archive`). Imports ``detector`` (the
stored payload is :class:`detector.results.ImageResult`) and nothing of the service.
"""
