"""The image history end to end: the real service under gunicorn against the fake Cloudflare,
two client keys and the admin key, the official `openai` SDK (its generic `get`/`delete` for
the history routes, which it has no methods for)."""

from __future__ import annotations

import openai
import pytest
import requests

from harness.service import cloudflare_env, start_service
from tests.support import image_url, sdk

pytestmark = pytest.mark.e2e

KEY_A, KEY_B, ADMIN = "sk-a", "sk-b", "sk-admin-e2e"


def history(service, key: str, **params) -> dict:
    """GET /v1/images/history through the SDK."""
    return sdk(service, key).get("/images/history", cast_to=object,
                                 options={"params": params})  # type: ignore[return-value]


def delete(service, key: str, entry_id: str) -> dict:
    return sdk(service, key).delete(f"/images/history/{entry_id}",
                                    cast_to=object)  # type: ignore[return-value]


@pytest.fixture(scope="module")
def service(fake_cf, tmp_path_factory):
    made = start_service(tmp_path_factory.mktemp("history"), cloudflare_env(
        fake_cf, API_KEY=f"{KEY_A},{KEY_B}", ADMIN_API_KEY=ADMIN))
    yield made
    made.stop()


def generate(service, key: str, prompt: str) -> str:
    """One image through the Images API; its link."""
    return sdk(service, key).images.generate(prompt=prompt, response_format="url").data[0].url


def test_each_key_sees_its_own_newest_first_pages_and_deletes(service, cf):
    a_links = [generate(service, KEY_A, "a lighthouse"), generate(service, KEY_A, "a harbour")]
    reply = sdk(service, KEY_A).chat.completions.create(
        model="x", messages=[{"role": "user", "content": "a sailing boat 16:9"}])
    a_links.append(image_url(reply.choices[0].message.content or ""))
    b_link = generate(service, KEY_B, "a mountain")

    mine = history(service, KEY_A, limit=100)
    assert [i["prompt"] for i in mine["data"][:3]] == ["a sailing boat 16:9", "a harbour",
                                                       "a lighthouse"]
    assert [i["url"] for i in mine["data"][:3]] == a_links[::-1]
    assert all(i["object"] == "image.history" and "owner" not in i for i in mine["data"])
    boat = mine["data"][0]
    assert boat["size"] == "1024x576" and boat["expires_at"] > boat["created"]
    assert b_link not in {i["url"] for i in mine["data"]}
    theirs = history(service, KEY_B)
    assert [i["prompt"] for i in theirs["data"]] == ["a mountain"]

    # Paging: limit and after walk the same list.
    first = history(service, KEY_A, limit=2)
    assert first["has_more"] and first["first_id"] == boat["id"]
    second = history(service, KEY_A, limit=2, after=first["last_id"])
    assert [i["id"] for i in first["data"] + second["data"]][:3] == [
        i["id"] for i in mine["data"][:3]]

    # Another key's id reads as an unknown one; deleting it is refused the same way.
    with pytest.raises(openai.NotFoundError) as other:
        delete(service, KEY_B, boat["id"])
    with pytest.raises(openai.NotFoundError) as unknown:
        delete(service, KEY_B, "gen_doesnotexist")
    assert other.value.code == unknown.value.code == "history_entry_not_found"
    with pytest.raises(openai.BadRequestError):
        history(service, KEY_B, after=boat["id"])

    # The admin sees both keys' entries, each with its owner.
    everyone = history(service, ADMIN, limit=100)
    owners = {i["owner"] for i in everyone["data"]}
    assert len(owners) >= 2 and {i["url"] for i in everyone["data"]} >= {*a_links, b_link}

    assert delete(service, KEY_A, boat["id"]) == {
        "id": boat["id"], "object": "image.history.deleted", "deleted": True}
    assert requests.get(boat["url"], timeout=10).status_code == 404
    assert boat["id"] not in {i["id"] for i in history(service, KEY_A, limit=100)["data"]}


def test_limit_out_of_range_is_a_400_that_names_it(service):
    with pytest.raises(openai.BadRequestError) as bad:
        history(service, KEY_A, limit=101)
    assert bad.value.param == "limit"


def test_history_off_and_an_open_service_answer_history_unavailable(fake_cf, tmp_path):
    # The open service runs the demo backend: a real one needs API_KEY.
    for name, env in (("off", cloudflare_env(fake_cf, API_KEY=KEY_A, IMAGE_HISTORY="off")),
                      ("open", {})):
        made = start_service(tmp_path / name, env, workers=1)
        try:
            answer = requests.get(made.api + "/images/history",
                                  headers={"Authorization": f"Bearer {KEY_A}"}, timeout=10)
            assert answer.status_code == 404
            error = answer.json()["error"]
            assert error["code"] == "history_unavailable"
            assert ("IMAGE_HISTORY" if name == "off" else "API_KEY") in error["message"]
        finally:
            made.stop()


def test_two_instances_sharing_redis_share_the_history(fake_cf, redis_url, tmp_path):
    shared = redis_url.rsplit("/", 1)[0] + "/9"
    env = cloudflare_env(fake_cf, API_KEY=KEY_A, STORAGE_URL=shared, COUNTERS_URL=shared)
    first = start_service(tmp_path / "one", env, workers=1)
    second = start_service(tmp_path / "two", env, workers=1)
    try:
        link = generate(first, KEY_A, "a shared garden")
        [entry] = [i for i in history(second, KEY_A, limit=100)["data"]
                   if i["prompt"] == "a shared garden"]
        assert entry["url"].rsplit("/", 1)[1] == link.rsplit("/", 1)[1]
        delete(second, KEY_A, entry["id"])
        assert entry["id"] not in {i["id"] for i in history(first, KEY_A, limit=100)["data"]}
    finally:
        first.stop()
        second.stop()
