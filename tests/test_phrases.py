"""Every language has every phrase with the same placeholders."""

from flux_worker.config import LANGUAGES
from flux_worker.phrases import PHRASES, fields_of


def test_all_languages_complete_and_consistent():
    assert set(PHRASES) == set(LANGUAGES)
    english = PHRASES["en"]
    for lang, words in PHRASES.items():
        assert set(words) == set(english), lang
        for key, template in words.items():
            assert fields_of(template) == fields_of(english[key]), (lang, key)
