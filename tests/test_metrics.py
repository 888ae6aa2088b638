"""/metrics through Flask's test client: requests, generations, upstream failures, no secrets.

The test process has no PROMETHEUS_MULTIPROC_DIR, so the default registry serves the metrics and
its counters live as long as the process: every test compares a scrape before and after.
"""

from __future__ import annotations

import base64
import functools
import logging
import re

import pytest
import responses

from tests import support
from tests.support import TEST_KEY, image_url, metric_value

CF_BASE = "http://cf.invalid/client/v4"
CF_TOKEN = "cf-secret-token-metrics"
SCHNELL = "@cf/black-forest-labs/flux-1-schnell"
SCHNELL_URL = f"{CF_BASE}/accounts/acct/ai/run/{SCHNELL}"
# This file's chat request: "stream" always sent, false unless a test asks for a stream.
chat = functools.partial(support.chat, stream=False)


def scrape(client) -> str:
    resp = client.get("/metrics")
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("text/plain")
    return resp.get_data(as_text=True)


def test_chat_and_image_fetch_are_counted_by_route_template(client):
    before = scrape(client)
    resp = chat(client, "a red fox 16:9")
    assert resp.status_code == 200
    body = resp.get_json()
    model = body["model"]
    url = image_url(body["choices"][0]["message"]["content"])
    key = url.rsplit("/", 1)[1]
    image = client.get(url.split("localhost", 1)[1])
    assert image.status_code == 200 and image.data
    models = client.get(f"/v1/models/{model}", headers={"Authorization": f"Bearer {TEST_KEY}"})
    assert models.status_code == 200
    assert client.get("/v1/no-such-route").status_code == 404
    after = scrape(client)

    def delta(name, **labels):
        return metric_value(after, name, **labels) - metric_value(before, name, **labels)

    assert delta("flux_worker_http_requests_total", method="POST",
                 route="/v1/chat/completions", status="200") == 1
    assert delta("flux_worker_http_requests_total", method="GET", route="/image/<key>",
                 status="200") == 1
    assert delta("flux_worker_http_requests_total", method="GET",
                 route="/v1/models/<path:model_id>", status="200") == 1
    assert delta("flux_worker_http_requests_total", method="GET", route="unmatched",
                 status="404") == 1
    assert delta("flux_worker_http_request_duration_seconds_count",
                 route="/v1/chat/completions") == 1
    assert delta("flux_worker_generations_total", model=model, outcome="ok") == 1
    assert delta("flux_worker_upstream_latency_seconds_count", model=model) == 1
    assert delta("flux_worker_images_stored_total") >= 1
    assert delta("flux_worker_image_bytes_stored_total") >= len(image.data)
    assert metric_value(after, "flux_worker_generations_in_flight") == 0
    # Raw paths never become labels: neither the image key nor the unknown path shows up.
    assert key not in after and "no-such-route" not in after


def test_metrics_need_no_key_and_reveal_none(client):
    chat(client, "a blue heron")
    text = scrape(client)  # sent without Authorization
    assert TEST_KEY not in text and "Bearer" not in text


def test_streamed_answer_is_counted_and_logged_when_it_closes(client, caplog):
    caplog.set_level(logging.INFO, logger="flux_worker.access")
    before = scrape(client)
    resp = chat(client, "a lighthouse at dusk", stream=True)
    assert resp.status_code == 200
    assert resp.get_data(as_text=True).endswith("data: [DONE]\n\n")
    rid = resp.headers["X-Request-ID"]

    def access_lines():
        return [r.getMessage() for r in caplog.records
                if r.name == "flux_worker.access" and r.getMessage().startswith(rid + " ")]

    # Logged when the response closes, so the duration covers the whole stream.
    assert access_lines() == []
    resp.close()  # what the WSGI server does once the stream is sent
    after = scrape(client)
    route = "/v1/chat/completions"
    counted = (metric_value(after, "flux_worker_http_requests_total", route=route)
               - metric_value(before, "flux_worker_http_requests_total", route=route))
    assert counted == 1
    lines = access_lines()
    assert len(lines) == 1
    assert re.fullmatch(rf"{rid} POST /v1/chat/completions 200 \d+ms model=\S+", lines[0])


def test_unknown_method_is_labelled_other(client):
    before = scrape(client)
    client.open("/healthz", method="BREW")
    after = scrape(client)
    assert (metric_value(after, "flux_worker_http_requests_total", method="other")
            - metric_value(before, "flux_worker_http_requests_total", method="other")) == 1
    assert 'method="BREW"' not in after


@pytest.fixture
def cf_app(apps):
    """An app on the Cloudflare backend whose HTTP edge is played by `responses`."""
    return apps.app(services=apps.services(CF_ACCOUNT_ID="acct", CF_API_TOKEN=CF_TOKEN,
                                           CF_API_BASE=CF_BASE, UPSTREAM_RETRIES="0"))


FAILURES = [
    (dict(status=400, json={"result": None, "success": False, "messages": [], "errors": [
        {"code": 3030, "message": "AiError: AiError: Your output has been flagged."}]}),
     "content_policy_violation"),
    (dict(status=500, json={"result": None, "success": False, "messages": [], "errors": [
        {"code": 8008, "message": "AiError: 8008: Internal server error"}]}), "upstream_error"),
    # Bytes that are not an image fail in the fit step: still the model's failure.
    (dict(status=200, json={"success": True, "result": {
        "image": base64.b64encode(b"this is not an image").decode()}}), "upstream_error"),
]


@pytest.mark.parametrize("upstream,outcome", FAILURES)
@responses.activate
def test_failed_generation_counts_its_error_code(cf_app, upstream, outcome):
    responses.add(responses.POST, SCHNELL_URL, **upstream)
    client = cf_app.test_client()
    before = scrape(client)
    resp = chat(client, "a cat 16:9")
    assert resp.get_json()["error"]["code"] == outcome
    after = scrape(client)

    def delta(name, **labels):
        return metric_value(after, name, **labels) - metric_value(before, name, **labels)

    assert delta("flux_worker_generations_total", model=SCHNELL, outcome=outcome) == 1
    assert delta("flux_worker_generations_total", model=SCHNELL, outcome="ok") == 0
    assert delta("flux_worker_upstream_latency_seconds_count", model=SCHNELL) == 1
    assert delta("flux_worker_images_stored_total") == 0
    assert metric_value(after, "flux_worker_generations_in_flight") == 0
    for secret in (TEST_KEY, CF_TOKEN):
        assert secret not in after
