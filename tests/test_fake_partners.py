"""The strict fake of Cloudflare's partner route, model search and schemas (harness/fakes)."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from harness.fakes.cloudflare import make_app
from harness.fakes.cloudflare.partner_schemas import PARTNER_MODELS
from harness.fakes.cloudflare.partners import DEFAULT_NO_RUN_TOKEN, FILE_LIFETIME

RUN = "/client/v4/accounts/test-account/ai/run"
AUTH = {"Authorization": "Bearer test-cf-token"}


@pytest.fixture
def client():
    app = make_app()
    app.testing = True
    return app.test_client()


def run(client, model="openai/gpt-image-2", headers=AUTH, path=RUN, **fields):
    return client.post(path, json={"model": model, "input": {"prompt": "a cat", **fields}},
                       headers=headers)


def path_of(link: str) -> str:
    return "/" + link.split("/", 3)[3]


def file_of(client, answer):
    return client.get(path_of(answer.json["result"]["image"]))


def test_a_partner_answer_links_a_file_of_the_asked_size(client):
    answer = run(client, size="1536x1024", output_format="webp")
    assert answer.status_code == 200
    assert answer.json["state"] == "Completed"
    assert answer.json["gatewayMetadata"] == {"keySource": "Unified"}
    picture = file_of(client, answer)
    assert picture.mimetype == "image/webp"
    with Image.open(io.BytesIO(picture.data)) as img:
        assert (img.format, img.size) == ("WEBP", (1536, 1024))


def test_google_models_draw_their_own_size_for_a_ratio(client):
    picture = file_of(client, run(client, "google/imagen-4", aspect_ratio="16:9"))
    with Image.open(io.BytesIO(picture.data)) as img:
        assert img.size == (1344, 768)


def test_result_links_expire_on_the_fake_clock(client):
    answer = run(client)
    assert file_of(client, answer).status_code == 200
    client.post("/_fake/partners/clock", json={"advance": FILE_LIFETIME})
    assert file_of(client, answer).status_code == 404


@pytest.mark.parametrize("headers, status, code", [
    ({}, 401, 10000),
    ({"Authorization": "Bearer wrong"}, 401, 10000),
    ({"Authorization": f"Bearer {DEFAULT_NO_RUN_TOKEN}"}, 403, 2049),
])
def test_tokens_are_checked(client, headers, status, code):
    answer = run(client, headers=headers)
    assert (answer.status_code, answer.json["errors"][0]["code"]) == (status, code)


def test_another_account_cannot_be_routed(client):
    answer = run(client, path="/client/v4/accounts/someone-else/ai/run")
    assert (answer.status_code, answer.json["errors"][0]["code"]) == (404, 7003)


@pytest.mark.parametrize("body, named", [
    ({"input": {"prompt": "x"}}, "/model"),
    ({"model": "openai/gpt-image-2"}, "/input"),
    ({"model": "openai/gpt-image-2", "input": {"prompt": "x", "width": 512}}, "/width"),
    ({"model": "openai/gpt-image-2", "input": {"prompt": "x", "size": "512x512"}}, "/size"),
    ({"model": "openai/gpt-image-2", "input": {"prompt": "x", "background": "transparent"}},
     "/background"),
    ({"model": "google/imagen-4", "input": {"prompt": "x", "aspect_ratio": "21:9"}},
     "/aspect_ratio"),
    ({"model": "black-forest-labs/flux-2-flex", "input": {"prompt": "x", "steps": 51}}, "/steps"),
    ({"model": "black-forest-labs/flux-2-flex", "input": {"prompt": "x", "guidance": "7"}},
     "/guidance"),
    ({"model": "black-forest-labs/flux-2-pro-preview",
      "input": {"prompt": "x", "input_images": ["not base64!"]}}, "/input_images/0"),
    ({"model": "openai/gpt-image-2", "input": {}}, "/prompt"),
])
def test_each_models_input_is_checked(client, body, named):
    answer = client.post(RUN, json=body, headers=AUTH)
    assert answer.status_code == 400
    assert named in answer.json["errors"][0]["message"]


def test_workers_ai_models_need_a_gateway_id(client):
    refused = run(client, "@cf/black-forest-labs/flux-1-schnell")
    assert refused.status_code == 400 and "cf-aig-gateway-id" in refused.text
    taken = run(client, "@cf/black-forest-labs/flux-1-schnell",
                headers={**AUTH, "cf-aig-gateway-id": "default"})
    assert taken.status_code == 200


@pytest.mark.parametrize("fault, status, code", [
    ("2021", 402, 2021), ("429", 429, None), ("2009", 401, 2009), ("503", 503, None),
])
def test_faults_answer_as_cloudflare_does(client, fault, status, code):
    client.post("/_fake/faults", json={"partner_faults": [fault]})
    answer = run(client)
    assert answer.status_code == status
    if code is not None:
        assert answer.json["errors"][0]["code"] == code
    assert run(client).status_code == 200          # one fault, one answer


def test_a_failed_state_names_the_providers_code(client):
    client.post("/_fake/faults", json={"partner_faults": ["failed", "moderation"]})
    assert run(client).json["error"]["code"] == "provider_unavailable"
    assert run(client).json["error"]["code"] == "moderation_blocked"


def test_file_faults(client):
    client.post("/_fake/faults", json={"partner_faults": ["foreign_host", "redirect",
                                                         "not_image"]})
    assert run(client).json["result"]["image"].startswith("https://files.example.invalid/")
    answer = client.get(path_of(run(client).json["result"]["image"]))
    assert answer.status_code == 302 and "//localhost:" in answer.headers["Location"]
    assert file_of(client, run(client)).mimetype == "text/html"


def test_unknown_faults_are_refused(client):
    assert client.post("/_fake/faults", json={"partner_faults": ["nope"]}).status_code == 400


def test_search_pages_through_workers_ai_and_partner_models(client):
    names, page, pages = [], 1, 1
    while page <= pages:
        answer = client.get("/client/v4/accounts/test-account/ai/models/search",
                            query_string={"task": "Text-to-Image", "per_page": 4, "page": page},
                            headers=AUTH)
        assert answer.status_code == 200
        pages = answer.json["result_info"]["total_pages"]
        names += [item["name"] for item in answer.json["result"]]
        assert all(item["task"]["name"] == "Text-to-Image" for item in answer.json["result"])
        page += 1
    assert set(PARTNER_MODELS) <= set(names)
    assert "@cf/black-forest-labs/flux-1-schnell" in names
    assert len(names) == len(set(names))


def test_search_needs_a_token(client):
    answer = client.get("/client/v4/accounts/test-account/ai/models/search")
    assert answer.status_code == 401


def test_schema_of_a_model(client):
    url = "/client/v4/accounts/test-account/ai/models/schema"
    answer = client.get(url, query_string={"model": "google/imagen-4"}, headers=AUTH)
    assert answer.json["success"] is True
    assert answer.json["result"]["input"]["properties"]["aspect_ratio"]["enum"][-1] == "16:9"
    assert client.get(url, headers=AUTH).status_code == 400
    assert client.get(url, query_string={"model": "x/y"}, headers=AUTH).status_code == 404
