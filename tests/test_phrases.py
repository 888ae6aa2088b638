"""Every language has every phrase with the same placeholders."""

from string import Formatter

from flux_worker.chat.phrases import PHRASES
from flux_worker.config import LANGUAGES


def fields_of(template: str) -> list[str | None]:
    """The placeholder names of a template."""
    return [name for _, name, _, _ in Formatter().parse(template) if name is not None]


def test_all_languages_complete_and_consistent():
    assert set(PHRASES) == set(LANGUAGES)
    english = PHRASES["en"]
    for lang, words in PHRASES.items():
        assert set(words) == set(english), lang
        for key, template in words.items():
            assert fields_of(template) == fields_of(english[key]), (lang, key)
