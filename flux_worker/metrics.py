"""Prometheus metrics: requests, generations, upstream latency and stored images.

Under gunicorn every worker is its own process with its own counters, so a scrape that reached
one worker would see only its share. When PROMETHEUS_MULTIPROC_DIR is set (gunicorn.conf.py
sets it before any worker starts), prometheus_client keeps the values in files there and
`render` adds up every process's files; otherwise (Flask's test client, `flask run`) the values
live in this process and the default registry serves them.

Label values are bounded on purpose: the route is the URL rule, never the raw path, the model
comes from the catalog and the outcome from the project's error codes, so a client cannot grow
the number of series. This module does not import Flask: the web layer calls these functions.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from typing import Iterator

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from .errors import APIError

# Read once, as prometheus_client itself does at import: its storage is chosen then, so
# rendering must follow the same choice even if the variable changes later.
MULTIPROC_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None

# Any other method (a client may send any token) is counted as "other" to bound the label.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

# Requests range from a health check (ms) to a whole generation (up to the upstream timeout).
_REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0,
                    60.0, 120.0)
# Image models answer in a fraction of a second (schnell) to a couple of minutes (UPSTREAM_TIMEOUT).
_UPSTREAM_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0,
                     90.0, 120.0)

HTTP_REQUESTS = Counter(
    "flux_worker_http_requests_total", "HTTP requests answered, by method, route and status.",
    ["method", "route", "status"])
HTTP_DURATION = Histogram(
    "flux_worker_http_request_duration_seconds",
    "Time from the request's start to the end of its response (whole stream for SSE).",
    ["route"], buckets=_REQUEST_BUCKETS)
GENERATIONS = Counter(
    "flux_worker_generations_total",
    'Image generations by model and outcome ("ok" or the error code the client got).',
    ["model", "outcome"])
UPSTREAM_LATENCY = Histogram(
    "flux_worker_upstream_latency_seconds", "Time spent waiting on the image backend, by model.",
    ["model"], buckets=_UPSTREAM_BUCKETS)
IMAGES_STORED = Counter("flux_worker_images_stored_total", "Images written to storage.")
IMAGE_BYTES_STORED = Counter("flux_worker_image_bytes_stored_total",
                             "Bytes of images written to storage.")
# By model only: /metrics is open, and which Cloudflare accounts there are and what each spends
# is ADMIN_API_KEY's to see (GET /v1/usage), so no label carries an account.
NEURONS = Counter(
    "flux_worker_neurons",
    "Workers AI neurons spent (Cloudflare's figure when it reports one, else the estimate), "
    "by model.", ["model"])
USD = Counter(
    "flux_worker_usd",
    "US dollars spent, by model: the provider's dollar price, or Workers AI neurons at the paid "
    "rate ($0.011 per 1,000; an upper bound while the free daily neurons last).", ["model"])
CANCELLED_NEURONS = Counter(
    "flux_worker_cancelled_neurons",
    "Neurons billed for images whose client had gone before they were stored (also counted in "
    "flux_worker_neurons_total): the upstream call was already made.", ["model"])
# livesum: the sum over live processes only, so a dead worker's generations stop counting.
IN_FLIGHT = Gauge("flux_worker_generations_in_flight", "Generations running right now.",
                  multiprocess_mode="livesum")
# Set from the shared provider health at each scrape, so every process reports the same value.
PROVIDER_UP = Gauge("flux_worker_provider_up",
                    "1 when the provider is tried, 0 while it is skipped after failures in a row.",
                    ["provider"], multiprocess_mode="mostrecent")
FALLBACKS = Counter(
    "flux_worker_fallbacks",
    "Images another model drew because the first failed, by from-model, to-model and reason "
    '("capacity", "quota", "rate_limit", "upstream_error", "timeout", "provider_skipped").',
    ["from_model", "to_model", "reason"])
MODERATION = Counter(
    "flux_worker_moderation_total",
    'Prompts judged by MODERATION, by outcome ("passed", "refused", "relaxed": let through by '
    '`moderation: low`, "error_refused", "error_allowed") and category ("-" when none).',
    ["outcome", "category"])

HISTORY_FAILURES = Counter(
    "flux_worker_history_write_failures_total",
    "Images kept but not recorded in the image history (its store failed; the answer went out).")


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    """Count one answered request and its duration under its route template."""
    method = method.upper()
    HTTP_REQUESTS.labels(method if method in _METHODS else "other", route, str(status)).inc()
    HTTP_DURATION.labels(route).observe(max(seconds, 0.0))


class Generation:
    """One tracked generation; call `upstream_done` when the backend has answered."""

    def __init__(self, model_id: str):
        self.model_id = model_id
        self.started = time.monotonic()
        self.upstream_seconds: float | None = None

    def upstream_done(self) -> None:
        """Stop the upstream clock: what follows (fitting, checks) is this server's own work."""
        if self.upstream_seconds is None:
            self.upstream_seconds = time.monotonic() - self.started


@contextmanager
def track_generation(model_id: str) -> Iterator[Generation]:
    """Time the upstream call and count the generation's outcome; exceptions propagate.

    The outcome is "ok", the APIError's code (such as "content_policy_violation" or
    "upstream_error") or "server_error" for anything unexpected, as the client is told.
    """
    generation = Generation(model_id)
    outcome = "server_error"
    IN_FLIGHT.inc()
    try:
        yield generation
        outcome = "ok"
    except APIError as exc:
        outcome = exc.code or exc.type
        raise
    finally:
        IN_FLIGHT.dec()
        # A failed call still spent that long upstream (a timeout shows in the top bucket).
        generation.upstream_done()
        UPSTREAM_LATENCY.labels(model_id).observe(generation.upstream_seconds or 0.0)
        GENERATIONS.labels(model_id, outcome).inc()


def observe_stored(nbytes: int) -> None:
    """Count one image of `nbytes` bytes written to storage."""
    IMAGES_STORED.inc()
    IMAGE_BYTES_STORED.inc(nbytes)


def observe_neurons(model_id: str, neurons: float) -> None:
    """Count the neurons one image cost, under its model."""
    NEURONS.labels(model_id).inc(max(0.0, neurons))


def observe_usd(model_id: str, usd: float) -> None:
    """Count the US dollars one image cost, under its model."""
    USD.labels(model_id).inc(max(0.0, usd))


def observe_cancelled_neurons(model_id: str, neurons: float) -> None:
    """Count the neurons of an image billed upstream whose client had gone."""
    CANCELLED_NEURONS.labels(model_id).inc(max(0.0, neurons))


def observe_fallback(from_model: str, to_model: str, reason: str) -> None:
    """Count one move from a failed (or skipped) model to its next alternative."""
    FALLBACKS.labels(from_model, to_model, reason).inc()


def observe_history_failure() -> None:
    """Count an image the history could not record."""
    HISTORY_FAILURES.inc()


def set_provider_up(provider: str, up: bool) -> None:
    """Report whether `provider` is tried (1) or skipped (0)."""
    PROVIDER_UP.labels(provider).set(1 if up else 0)


def render() -> tuple[bytes, str]:
    """The metrics in Prometheus text format, added up over all processes, and their type."""
    if MULTIPROC_DIR:
        # A fresh registry per scrape: the collector reads every process's files each time.
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=MULTIPROC_DIR)
    else:
        registry = REGISTRY
    return generate_latest(registry), CONTENT_TYPE_LATEST
