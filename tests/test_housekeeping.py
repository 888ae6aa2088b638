"""Client background requests are recognised from the clients' real prompts."""

from __future__ import annotations

import json

import pytest

from flux_worker.chat.background_requests import detect

NEXTCHAT_TITLE = ("Please generate a four to five word title summarizing our conversation without "
                  "any lead-in, punctuation, quotation marks, periods, symbols, bold text, or "
                  "additional text. Remove enclosing quotation marks.")
NEXTCHAT_TITLE_CN = ("使用四到五个字直接返回这句话的简要主题，"
                     "不要解释、不要标点、不要语气词、不要多余文本，"
                     "不要加粗，如果没有主题，请直接返回“闲聊”")
NEXTCHAT_SUMMARY = ("Summarize the discussion briefly in 200 words or less to use as a prompt for "
                    "future context.")
OPEN_WEBUI_TITLE = ("### Task:\nGenerate a concise, 3-5 word title with an emoji summarizing "
                    "the chat history.\n### Guidelines:\n- The title should clearly represent the "
                    "main theme\n### Output:\nJSON format: "
                    "{ \"title\": \"your concise title here\" }\n"
                    "### Chat History:\n<chat_history>\nUSER: a cute cat 16:9\nASSISTANT: ok\n"
                    "</chat_history>")
OPEN_WEBUI_TAGS = ("### Task:\nGenerate 1-3 broad tags categorizing the main themes of the "
                   "chat history, along with 1-3 more specific subtopic tags.\n### Output:\n"
                   "JSON format: "
                   "{ \"tags\": [\"tag1\", \"tag2\", \"tag3\"] }")
OPEN_WEBUI_FOLLOW = ("### Task:\nSuggest 3-5 relevant follow-up questions or prompts that the user "
                     "might naturally ask next.\n### Output:\nJSON format: { \"follow_ups\": [] }")
LIBRECHAT_TITLE = ("Please generate a concise, 5-word-or-less title for the conversation, "
                   "using its same language, with no punctuation.")


def convo(last):
    """The user texts of a conversation: an image prompt, then `last` (after an answer)."""
    return ["a cute cat 16:9", last]


@pytest.mark.parametrize("prompt,client,kind", [
    (NEXTCHAT_TITLE, "nextchat", "title"), (NEXTCHAT_TITLE_CN, "nextchat", "title"),
    (NEXTCHAT_SUMMARY, "nextchat", "summary"), (OPEN_WEBUI_TITLE, "open-webui", "title"),
    (OPEN_WEBUI_TAGS, "open-webui", "tags"), (OPEN_WEBUI_FOLLOW, "open-webui", "follow_ups"),
    (LIBRECHAT_TITLE, "generic", "title"),
])
def test_detects_background_requests(prompt, client, kind):
    found = detect(convo(prompt), prompt)
    assert found is not None and (found.client, found.kind) == (client, kind)


def test_title_comes_from_the_image_prompt():
    assert detect(convo(NEXTCHAT_TITLE), NEXTCHAT_TITLE).reply == "a cute cat"
    owui = detect([OPEN_WEBUI_TITLE], OPEN_WEBUI_TITLE)
    assert json.loads(owui.reply)["title"].endswith("a cute cat 16:9")
    assert json.loads(detect(convo(OPEN_WEBUI_TAGS), OPEN_WEBUI_TAGS).reply)["tags"]


@pytest.mark.parametrize("prompt", ["a cute cat 16:9", "a poster with the title 'Summer'",
                                    "generate a cat", "Task: draw a dog",
                                    "a book cover, title text on top, about a conversation"])
def test_real_prompts_are_not_housekeeping(prompt):
    assert detect(convo(prompt), prompt) is None
