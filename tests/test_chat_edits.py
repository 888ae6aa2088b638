"""Chat edits: finding the images of a conversation, CHAT_EDITS=auto and edit translation."""

from __future__ import annotations

import json

import pytest
import responses

from flux_worker.errors import InvalidRequest
from flux_worker.generation.translate import EDIT_SYSTEM_MESSAGE, ChatTranslator
from flux_worker.inputs.chat_images import find_chat_edit, newest_own_image
from flux_worker.net.upstream import make_session
from tests.support import AUTH, app_with

KEY = "K" * 22
LINK = f"https://img.example.com/image/{KEY}"
LLM = "http://llm.invalid/v1/chat/completions"


def conversation(last: str) -> list[dict]:
    return [{"role": "user", "content": "a red car"},
            {"role": "assistant", "content": f"🌟 done\n\n![Generated image]({LINK})"},
            {"role": "user", "content": last}]


def test_plain_message_is_a_new_picture():
    assert find_chat_edit(conversation("a green tree"), "a green tree") is None


def test_edit_flag_takes_the_newest_link_and_leaves_the_instruction():
    edit = find_chat_edit(conversation("make it blue --edit"), "make it blue --edit")
    assert edit is not None and edit.urls == (LINK,) and edit.text == "make it blue"
    assert edit.previous


def test_em_dash_edit_flag_from_phones():
    edit = find_chat_edit(conversation("—edit make it blue"), "—edit make it blue")
    assert edit is not None and edit.text == "make it blue"


def test_newest_link_wins_and_foreign_links_are_skipped():
    older = f"https://img.example.com/image/{'O' * 22}"
    messages = [{"role": "assistant", "content": f"![a]({older})"},
                {"role": "assistant", "content": [{
                    "type": "text", "text": f"see https://other.example/cat.png, ![b]({LINK})"}]},
                {"role": "user", "content": "x"}]
    assert newest_own_image(messages) == LINK


def test_attached_parts_win_over_the_flag():
    messages = [{"role": "user", "content": [
        {"type": "text", "text": "blue --edit"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
        {"type": "image_url", "image_url": "data:image/png;base64,BBBB"}]}]
    edit = find_chat_edit(messages, "blue --edit")
    assert edit is not None and len(edit.urls) == 2 and not edit.previous
    assert edit.text == "blue"


def test_image_part_without_url_is_a_400():
    messages = [{"role": "user", "content": [{"type": "text", "text": "x"},
                                             {"type": "image_url", "image_url": {}}]}]
    with pytest.raises(InvalidRequest, match="has no `url`"):
        find_chat_edit(messages, "x")


def test_auto_asks_the_decider_only_when_there_is_a_previous_image():
    asked: list[str] = []

    def decide(text: str) -> bool:
        asked.append(text)
        return True

    edit = find_chat_edit(conversation("now at night"), "now at night", decide)
    assert edit is not None and edit.urls == (LINK,) and asked == ["now at night"]
    assert find_chat_edit([{"role": "user", "content": "a tree"}], "a tree", decide) is None
    assert asked == ["now at night"]
    assert find_chat_edit(conversation("a boat"), "a boat", lambda text: False) is None


@responses.activate
@pytest.mark.parametrize("reply, expected", [("EDIT", True), ("<think>hm</think>edit", True),
                                             ("NEW", False)])
def test_translator_decides_edit_or_new(reply, expected):
    responses.add(responses.POST, LLM, json={"choices": [{"message": {"content": reply}}]})
    translator = ChatTranslator(api_base="http://llm.invalid", model="m", api_key="k",
                                session=make_session(1))
    assert translator.decide_edit("make it blue") is expected
    assert "EDIT" in json.loads(responses.calls[0].request.body)["messages"][0]["content"]


@responses.activate
def test_a_failed_decision_means_a_new_picture():
    responses.add(responses.POST, LLM, status=500)
    translator = ChatTranslator(api_base="http://llm.invalid", model="m", api_key="k",
                                session=make_session(1))
    assert translator.decide_edit("make it blue") is False


@responses.activate
def test_edit_translation_keeps_an_instruction():
    responses.add(responses.POST, LLM, json={"choices": [{"message": {
        "content": "make the cat wear a red hat"}}]})
    translator = ChatTranslator(api_base="http://llm.invalid", model="m", api_key="k",
                                session=make_session(1))
    result = translator.translate("让猫戴上红帽子", "1:1", edit=True)
    sent = json.loads(responses.calls[0].request.body)["messages"]
    assert sent[0]["content"] == EDIT_SYSTEM_MESSAGE
    assert sent[1]["content"] == "让猫戴上红帽子"          # no aspect ratio: not a scene
    assert result.prompt == "make the cat wear a red hat"


@responses.activate
def test_chat_edits_auto_through_the_app():
    responses.add(responses.POST, LLM, json={"choices": [{"message": {"content": "EDIT"}}]})
    with app_with(CHAT_EDITS="auto", CF_IS_TRANSLATE="true", EXTERNAL_API_BASE="http://llm.invalid",
                  EXTERNAL_MODEL="tiny") as (app, _):
        client = app.test_client()
        first = client.post("/v1/chat/completions", headers=AUTH, json={"messages": [
            {"role": "user", "content": "a red car"}]}).get_json()
        answer = first["choices"][0]["message"]["content"]
        second = client.post("/v1/chat/completions", headers=AUTH, json={"messages": [
            {"role": "user", "content": "a red car"}, {"role": "assistant", "content": answer},
            {"role": "user", "content": "now at night"}]})
    content = second.get_json()["choices"][0]["message"]["content"]
    assert second.status_code == 200
    assert "🖼️ Reference: [1](" in content and "✏️ Instruction: now at night" in content


def test_chat_edits_auto_without_an_llm_is_explicit():
    with app_with(CHAT_EDITS="auto") as (app, _):
        client = app.test_client()
        first = client.post("/v1/chat/completions", headers=AUTH, json={"messages": [
            {"role": "user", "content": "a red car"}]}).get_json()
        answer = first["choices"][0]["message"]["content"]
        second = client.post("/v1/chat/completions", headers=AUTH, json={"messages": [
            {"role": "user", "content": "a red car"}, {"role": "assistant", "content": answer},
            {"role": "user", "content": "now at night"}]}).get_json()
    assert "Reference" not in second["choices"][0]["message"]["content"]


@pytest.mark.parametrize("mode", ["direct", "presigned"])
def test_edit_flag_finds_bucket_links(mode, tmp_path):
    from harness.s3_server import MotoServer
    with MotoServer() as s3:
        bucket = s3.create_bucket()
        env = {"STORAGE_URL": f"s3://{bucket}/img/", "IMAGE_LINKS": mode,
               "COUNTERS_URL": f"disk://{tmp_path}/counters", **s3.env()}
        if mode == "direct":
            env["S3_PUBLIC_BASE_URL"] = f"{s3.endpoint}/{bucket}"
        with app_with(**env) as (app, _):
            client = app.test_client()
            first = client.post("/v1/chat/completions", headers=AUTH, json={"messages": [
                {"role": "user", "content": "a red car"}]}).get_json()
            answer = first["choices"][0]["message"]["content"]
            link = answer.rsplit("(", 1)[-1].rstrip(")")
            assert link.startswith(s3.endpoint)
            second = client.post("/v1/chat/completions", headers=AUTH, json={"messages": [
                {"role": "user", "content": "a red car"}, {"role": "assistant", "content": answer},
                {"role": "user", "content": "make it blue --edit"}]})
    assert second.status_code == 200, second.get_json()
    assert f"[1]({link})" in second.get_json()["choices"][0]["message"]["content"]
