"""The inspection service: FastAPI app (``serving.app.create_app``), run by ``pvwind serve``.

All calls into ``detector/`` go through ``serving.engine``; storage is ``serving.db`` +
``serving.store``. See docs/serving.md.
"""
