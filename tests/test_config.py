"""``taskflow._config``: the one rule for reading booleans and numbers out of configuration."""

from __future__ import annotations

import pytest

from taskflow import _config
from tests.helpers import services


@pytest.mark.parametrize("word", ["1", "t", "true", "on", "y", "yes"])
def test_true_words(word):
    assert _config.to_bool(word) is True


@pytest.mark.parametrize("word", ["0", "f", "false", "off", "n", "no", ""])
def test_false_words(word):
    assert _config.to_bool(word) is False


@pytest.mark.parametrize(
    ("word", "expected"), [("TRUE", True), (" Yes ", True), ("\tOFF\n", False)]
)
def test_words_ignore_case_and_surrounding_spaces(word, expected):
    assert _config.to_bool(word) is expected


@pytest.mark.parametrize(
    ("value", "expected"), [(True, True), (False, False), (1, True), (0, False)]
)
def test_non_strings_are_read_by_truth(value, expected):
    assert _config.to_bool(value) is expected


@pytest.mark.parametrize("word", ["ture", "maybe", "yess", "2", "none"])
def test_a_misspelt_word_is_refused_and_names_the_key(word):
    with pytest.raises(ValueError, match=rf"'deep_copy' must be a boolean .*{word!r}"):
        _config.to_bool(word, "deep_copy")


def test_the_refusal_lists_the_accepted_words():
    with pytest.raises(ValueError) as caught:
        _config.to_bool("ture", "echo")
    message = str(caught.value)
    for word in _config.TRUE_WORDS | _config.FALSE_WORDS - {""}:
        assert repr(word) in message
    assert "''" not in message.split(", not")[0]


def test_as_bool_reads_the_key_or_falls_back_to_the_default():
    conf = {"on": "yes", "off": "No", "unset": None}
    assert _config.as_bool(conf, "on", False) is True
    assert _config.as_bool(conf, "off", True) is False
    assert _config.as_bool(conf, "unset", True) is True
    assert _config.as_bool(conf, "absent", True) is True
    assert _config.as_bool(conf, "absent", False) is False
    with pytest.raises(ValueError, match="'flag'"):
        _config.as_bool({"flag": "nope"}, "flag", False)


@pytest.mark.parametrize(
    ("value", "expected"), [("3", 3), (" 12 ", 12), ("-4", -4), (7, 7), (2.0, 2)]
)
def test_as_int_accepts_integers_and_their_text(value, expected):
    got = _config.as_int({"n": value}, "n", 0)
    assert got == expected
    assert type(got) is int


@pytest.mark.parametrize("value", [True, False, 3.5, "3.5", "three", "", [3]])
def test_as_int_refuses_what_is_not_an_integer(value):
    with pytest.raises(ValueError, match=r"'max_retries' must be an integer"):
        _config.as_int({"max_retries": value}, "max_retries", 0)


def test_as_int_default_when_absent_or_none():
    assert _config.as_int({}, "n", 5) == 5
    assert _config.as_int({"n": None}, "n", 5) == 5
    assert _config.as_int({}, "n", None) is None


@pytest.mark.parametrize(
    ("value", "expected"), [("4.5", 4.5), (" 2 ", 2.0), (3, 3.0), (0.25, 0.25)]
)
def test_as_float_accepts_numbers_and_their_text(value, expected):
    got = _config.as_float({"t": value}, "t", 0.0)
    assert got == expected
    assert type(got) is float


@pytest.mark.parametrize("value", [True, "soon", "", [4.5]])
def test_as_float_refuses_what_is_not_a_number(value):
    with pytest.raises(ValueError, match=r"'pool_timeout' must be a number"):
        _config.as_float({"pool_timeout": value}, "pool_timeout", None)


def test_as_float_default_when_absent_or_none():
    assert _config.as_float({}, "t", 1.5) == 1.5
    assert _config.as_float({"t": None}, "t", None) is None


def test_the_sql_backend_reads_its_options_by_the_rule():
    sa = services.need_module("sqlalchemy", "database")
    dialects = services.need_module(
        "taskflow.persistence.backends._sqlalchemy.dialects", "database"
    )
    options = dialects.SQLite({"echo": " Yes", "checkout_ping": "0"}).engine_options(
        sa.make_url("sqlite:///x.db")
    )
    assert (options["echo"], options["pool_pre_ping"]) == (True, False)
    with pytest.raises(ValueError, match="'echo' must be a boolean"):
        dialects.SQLite({"echo": "ture"}).engine_options(sa.make_url("sqlite:///x.db"))
    with pytest.raises(ValueError, match="'max_pool_size' must be an integer"):
        dialects.PostgreSQL({"max_pool_size": "ten"}).pool_options(sa.make_url("postgresql://h/db"))
