"""Prometheus metrics, one registry per app (so several apps can live in one process)."""

from __future__ import annotations

import time
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from detector.results import ImageResult

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "pvwind_http_requests",
            "HTTP requests by route template and status",
            ["method", "route", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "pvwind_http_request_seconds",
            "HTTP request latency",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.images = Counter(
            "pvwind_images",
            "Images handled, by path (inspection/job) and outcome (scored/rejected)",
            ["path", "outcome"],
            registry=r,
        )
        self.defects = Counter("pvwind_defects", "Defects found, by class", ["defect_class"], registry=r)
        self.inference = Histogram(
            "pvwind_inference_seconds", "Model time per batch of images", buckets=LATENCY_BUCKETS, registry=r
        )
        self.queue_depth = Gauge("pvwind_queue_depth_images", "Images reserved, waiting or in inference", registry=r)
        self.job_backlog = Gauge("pvwind_job_backlog_images", "Images of active jobs not yet scored", registry=r)
        self.busy = Counter("pvwind_rejected_busy", "Requests refused with 503 because the queue was full", registry=r)
        self.errors = Counter("pvwind_errors", "Errors by kind (client codes and server errors)", ["code"], registry=r)
        self.model_loaded = Gauge("pvwind_model_loaded", "1 when the model is loaded", registry=r)
        self.uploads = Gauge("pvwind_uploads_in_progress", "Request bodies being read (upload slots taken)", registry=r)
        self.large_images = Gauge(
            "pvwind_large_images_in_progress", "Large images held decoded (decode to scored)", registry=r
        )
        self.large_image_waits = Counter(
            "pvwind_large_image_waits", "Times a large image waited for its turn to be decoded", registry=r
        )

    def count_results(self, path: str, results: Iterable[ImageResult]) -> None:
        """images{path, outcome=scored|rejected}, errors by code, defects by class."""
        for r in results:
            if r.ok:
                self.images.labels(path, "scored").inc()
                for f in r.findings:
                    self.defects.labels(f.class_name).inc()
            else:
                self.images.labels(path, "rejected").inc()
                if r.error is not None:
                    self.errors.labels(r.error.code).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Counts requests and their latency by route template (not raw path: job ids would explode the labels)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def _send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, _send)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "")
            self.metrics.requests.labels(method, template, str(status)).inc()
            self.metrics.latency.labels(method, template).observe(time.perf_counter() - start)
            if status >= 500 and status != 503:  # a 503 is "busy" (counted by pvwind_rejected_busy), not a fault
                self.metrics.errors.labels("server_error").inc()
