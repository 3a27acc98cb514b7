"""The flight report: one self-contained HTML file (and a PDF of the same content) made from a
list of :class:`detector.results.ImageResult`.

``build_html(results, images=...)`` returns the HTML: the summary by priority (counts by class
and asset), an SVG map of the image footprints / camera positions with the findings coloured by
priority, and a sortable, filterable, paged table of the findings with a thumbnail crop of each
and a link to its annotated image. Everything is inline (no CDN, tile server or font): it opens
from a file with the network off. ``build_pdf`` prints the same content with WeasyPrint.

Used by ``pvwind report`` (an inspect output folder or a re-scorer store) and by the service
(``GET /v1/jobs/{id}/report``). Imports only :mod:`detector` and :mod:`configs`.
"""

from __future__ import annotations

from report.build import ImageSource, ReportOptions, build_html, build_pdf, pdf_available, report_data

__all__ = ["ImageSource", "ReportOptions", "build_html", "build_pdf", "pdf_available", "report_data"]
