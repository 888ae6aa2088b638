"""The OpenAI-compatible translator, with `responses` at the HTTP edge."""

from __future__ import annotations

import json

import pytest
import requests
import responses

from flux_worker.generation.translate import (
    SYSTEM_MESSAGE,
    ChatTranslator,
    TranslationFailed,
    chat_completions_url,
    clean_reply,
)


@pytest.mark.parametrize("base,url", [
    ("https://api.openai.com", "https://api.openai.com/v1/chat/completions"),
    ("https://api.openai.com/v1", "https://api.openai.com/v1/chat/completions"),
    ("https://api.openai.com/v1/", "https://api.openai.com/v1/chat/completions"),
    ("https://g.example/v1beta/openai", "https://g.example/v1beta/openai/chat/completions"),
    ("https://cf.example/client/v4/accounts/a/ai/v1", "https://cf.example/client/v4/accounts/a/ai/v1/chat/completions"),
    ("http://127.0.0.1:11434", "http://127.0.0.1:11434/v1/chat/completions"),
    ("http://h/v1/chat/completions", "http://h/v1/chat/completions"),
])
def test_base_with_or_without_v1(base, url):
    assert chat_completions_url(base) == url


@pytest.mark.parametrize("raw,clean", [
    ("<think>hmm</think>\nA cat on a mat", "A cat on a mat"),
    ("reasoning without opening tag</think>A cat", "A cat"),
    ('"A cat"', "A cat"),
    ("Prompt: A cat", "A cat"),
    ("```\nA cat\n```", "A cat"),
    ("<think>only thinking</think>", ""),
])
def test_clean_reply(raw, clean):
    assert clean_reply(raw) == clean


def make(timeout=5.0, system=""):
    return ChatTranslator(api_base="http://llm.invalid/v1", model="m1", api_key="llm-key",
                          session=requests.Session(), timeout=timeout, system_message=system)


@responses.activate
def test_sends_system_message_prompt_and_ratio():
    responses.add(responses.POST, "http://llm.invalid/v1/chat/completions", json={
        "choices": [{"message": {"role": "assistant", "content": "<think>x</think>A cute cat"}}]})
    result = make().translate("一只可爱的猫", "16:9")
    assert result.prompt == "A cute cat" and result.model == "m1"
    sent = json.loads(responses.calls[0].request.body)
    assert sent["model"] == "m1"
    assert sent["messages"][0] == {"role": "system", "content": SYSTEM_MESSAGE}
    assert "一只可爱的猫" in sent["messages"][1]["content"]
    assert "16:9" in sent["messages"][1]["content"]
    assert responses.calls[0].request.headers["Authorization"] == "Bearer llm-key"


@responses.activate
def test_custom_system_message():
    responses.add(responses.POST, "http://llm.invalid/v1/chat/completions", json={
        "choices": [{"message": {"content": "ok prompt"}}]})
    make(system="Be brief.").translate("x", "1:1")
    assert json.loads(responses.calls[0].request.body)["messages"][0]["content"] == "Be brief."


@pytest.mark.parametrize("kwargs", [
    {"status": 500, "body": "boom"}, {"status": 401, "json": {"error": {}}},
    {"status": 200, "body": "not json"}, {"status": 200, "json": {"choices": []}},
    {"status": 200, "json": {"choices": [{"message": {"content": "<think>x</think>"}}]}},
    {"body": requests.Timeout("slow")}, {"body": requests.ConnectionError("down")},
])
@responses.activate
def test_failures_raise_translation_failed(kwargs):
    responses.add(responses.POST, "http://llm.invalid/v1/chat/completions", **kwargs)
    with pytest.raises(TranslationFailed) as info:
        make().translate("x", "1:1")
    assert "llm-key" not in str(info.value)
