"""Every language has every phrase with the same placeholders."""

from flux_worker.config import LANGUAGES
from flux_worker.messages import MESSAGES, fields_of


def test_all_languages_complete_and_consistent():
    assert set(MESSAGES) == set(LANGUAGES)
    english = MESSAGES["en"]
    for lang, words in MESSAGES.items():
        assert set(words) == set(english), lang
        for key, template in words.items():
            assert fields_of(template) == fields_of(english[key]), (lang, key)
