"""The inspection service: FastAPI app (``serving.app.create_app``), run by ``pvwind serve``.

Calls into ``detector/`` go through ``serving.detectors`` (the model's detector pool);
results, images and jobs are stored by the shared ``storage`` package. Every image of a
response is a :class:`detector.results.ImageResult`. See docs/serving.md.
"""
