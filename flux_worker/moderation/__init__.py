"""Moderation of prompts before any paid image call (MODERATION, off by default).

    categories.py   the categories in plain words, and how Llama Guard's and OpenAI's names map
    checkers.py     the services that judge a text: Cloudflare's Llama Guard, an
                    OpenAI-compatible /v1/moderations
    policy.py       Moderation: the server's rule (what `moderation: "low"` lets through, what
                    a failing service means), the refusal, the counts
"""
