"""Moderation without a server: both checkers at the HTTP edge (`responses`), the policy's
refusal, relaxation and failure settings, and the configuration that turns it on."""

from __future__ import annotations

import json
import logging

import pytest
import requests
import responses

from flux_worker.config import Config, ConfigError
from flux_worker.errors import ModerationRefused, ModerationUnavailable
from flux_worker.moderation.categories import parse_categories
from flux_worker.moderation.checkers import CheckFailed, LlamaGuard, OpenAIModeration
from flux_worker.moderation.policy import ALLOW, Moderation

GUARD_URL = "https://cf.test/client/v4/accounts/acc/ai/run/@cf/meta/llama-guard-3-8b"


@pytest.fixture
def session():
    with requests.Session() as made:
        yield made


def guard(session) -> LlamaGuard:
    return LlamaGuard(api_base="https://cf.test/client/v4", account_id="acc", token="cf-token",
                      model="@cf/meta/llama-guard-3-8b", session=session, timeout=5)


def envelope(response) -> dict:
    return {"result": {"response": response}, "success": True, "errors": [], "messages": []}


@responses.activate
@pytest.mark.parametrize("answer,flagged", [
    ({"safe": True, "categories": []}, ()),
    ({"safe": False, "categories": ["S12", "S1"]}, ("sexual", "violence")),
    ({"safe": False, "categories": []}, ("other",)),
    ("safe", ()),
    ("unsafe\nS10, S99", ("hate", "other")),
])
def test_llama_guard_reads_both_answer_forms(session, answer, flagged):
    responses.post(GUARD_URL, json=envelope(answer))
    assert guard(session).flagged("a prompt") == flagged
    sent = responses.calls[0].request
    assert sent.headers["Authorization"] == "Bearer cf-token"
    body = json.loads(sent.body)
    assert body["messages"] == [{"role": "user", "content": "a prompt"}]
    assert set(body) <= {"messages", "max_tokens", "temperature", "response_format"}


@responses.activate
@pytest.mark.parametrize("status,body", [
    (200, {"result": {"response": "maybe"}}), (200, {"result": {}}), (500, {"x": 1}),
    (401, {"errors": [{"code": 10000}]}), (200, "not json")])
def test_llama_guard_that_cannot_judge_raises(session, status, body):
    if isinstance(body, str):
        responses.post(GUARD_URL, body=body, status=status)
    else:
        responses.post(GUARD_URL, json=body, status=status)
    with pytest.raises(CheckFailed) as info:
        guard(session).flagged("a prompt")
    assert "cf-token" not in str(info.value) and "cf.test" not in str(info.value)


@responses.activate
@pytest.mark.parametrize("base", ["https://mod.test", "https://mod.test/v1"])
def test_openai_moderation_maps_categories(session, base):
    responses.post("https://mod.test/v1/moderations", json={"id": "m", "results": [{
        "flagged": True, "categories": {"sexual": False, "violence/graphic": True,
                                        "hate": True, "self-harm/intent": False}}]})
    checker = OpenAIModeration(api_base=base, api_key="mod-key", model="omni-moderation-latest",
                               session=session, timeout=5)
    assert checker.flagged("text") == ("violence", "hate")
    sent = responses.calls[0].request
    assert sent.headers["Authorization"] == "Bearer mod-key"
    assert json.loads(sent.body) == {"input": "text",
                                                   "model": "omni-moderation-latest"}


@responses.activate
def test_openai_moderation_without_results_or_with_an_error_raises(session):
    checker = OpenAIModeration(api_base="https://mod.test", api_key="", model="m",
                               session=session, timeout=5)
    responses.post("https://mod.test/v1/moderations", json={"results": []})
    responses.post("https://mod.test/v1/moderations", status=429, json={})
    responses.post("https://mod.test/v1/moderations",
                   body=requests.ConnectionError("refused"))
    for _ in range(3):
        with pytest.raises(CheckFailed):
            checker.flagged("text")


class Verdicts:
    """A checker that answers what it is given, or fails."""

    name = "test"

    def __init__(self, *answers):
        self.answers = list(answers)

    def flagged(self, text):
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def test_a_flagged_prompt_is_refused_in_words():
    with pytest.raises(ModerationRefused) as refused:
        Moderation(Verdicts(("sexual", "hate"))).check("x")
    assert refused.value.status == 400 and refused.value.code == "content_policy_violation"
    assert "sexual content, hate" in refused.value.message
    assert refused.value.categories == ("sexual", "hate")
    Moderation(Verdicts(())).check("fine")


def test_low_lets_through_only_the_allowed_categories():
    policy = lambda *answers: Moderation(Verdicts(*answers), low_allows=frozenset({"sexual"}))  # noqa: E731
    policy(("sexual",)).check("x", low=True)
    with pytest.raises(ModerationRefused, match="violence"):
        policy(("sexual", "violence")).check("x", low=True)
    with pytest.raises(ModerationRefused, match="sexual content"):
        policy(("sexual",)).check("x", low=False)
    with pytest.raises(ModerationRefused):
        Moderation(Verdicts(("sexual",))).check("x", low=True)   # nothing allowed: no relief


def test_a_failing_service_refuses_or_lets_through_as_configured(caplog):
    with pytest.raises(ModerationUnavailable) as refused:
        Moderation(Verdicts(CheckFailed("HTTP 500"))).check("x")
    assert refused.value.status == 503 and refused.value.retry_after
    with caplog.at_level(logging.WARNING):
        Moderation(Verdicts(CheckFailed("HTTP 500")), on_error=ALLOW).check("x")
    assert "MODERATION_ON_ERROR=allow" in caplog.text


def test_categories_are_read_in_every_vocabulary():
    assert parse_categories("sexual, S1 ,hate/threatening,,") == {"sexual", "violence", "hate"}
    with pytest.raises(ValueError, match="not a moderation category"):
        parse_categories("nudity")


@pytest.mark.parametrize("env,message", [
    ({"MODERATION": "openai"}, "MODERATION_URL is required"),
    ({"MODERATION": "cloudflare"}, "needs the Cloudflare account"),
    ({"MODERATION": "sometimes"}, "MODERATION"),
    ({"MODERATION_LOW": "nudity"}, "MODERATION_LOW"),
])
def test_moderation_settings_that_cannot_work_stop_the_start(env, message):
    with pytest.raises(ConfigError, match=message):
        Config.from_env(env)
