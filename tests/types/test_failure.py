"""Failure: capture, data, comparison, serialization and re-raising."""

from __future__ import annotations

import copy
import json
import pickle
import sys
import traceback

import pytest

from taskflow import exceptions as exc
from taskflow.types.failure import Failure
from tests.helpers import services


class MyError(KeyError):
    pass


class Holder:
    class Nested(ValueError):
        pass


def _raise(error: BaseException) -> None:
    raise error


def capture(error: BaseException) -> Failure:
    try:
        _raise(error)
    except BaseException:
        return Failure()
    raise AssertionError("unreachable")


def chained() -> Failure:
    try:
        try:
            try:
                raise KeyError("k")
            except KeyError as e:
                raise ValueError("v") from e
        except ValueError:
            raise RuntimeError("r")  # implicit context
    except RuntimeError:
        return Failure()


# -- capture ----------------------------------------------------------------------------------


def test_capture_in_except_block():
    error = ValueError("boom")
    f = capture(error)
    assert f.exception is error
    assert f.exc_info is not None
    assert f.exc_info[0] is ValueError
    assert f.exc_info[1] is error
    assert f.exc_info[2] is error.__traceback__
    assert f.exception_str == "boom"
    assert f.exception_args == ("boom",)


def test_capture_given_exc_info_tuple():
    try:
        raise TypeError("t")
    except TypeError:
        info = sys.exc_info()
    f = Failure(info)
    assert f.exception is info[1]
    assert list(f) == ["TypeError", "Exception"]


def test_capture_outside_except_block_is_a_type_error():
    with pytest.raises(TypeError, match="Invalid exception type"):
        Failure()


def test_capture_of_non_exception_tuple_is_a_type_error():
    with pytest.raises(TypeError):
        Failure((None, None, None))


def test_from_exception_never_raised_has_empty_traceback():
    f = Failure.from_exception(ValueError("x"))
    assert f.exc_info is not None
    assert f.exc_info[2] is None
    assert f.traceback_str == ""
    assert f.pformat(traceback=True) == "Failure: ValueError: x\nTraceback not available."


def test_from_exception_keeps_the_traceback_of_a_raised_exception():
    error = ValueError("x")
    with pytest.raises(ValueError):
        _raise(error)
    f = Failure.from_exception(error)
    assert "_raise" in f.traceback_str


def test_from_exception_rejects_non_exceptions():
    with pytest.raises(TypeError):
        Failure.from_exception("nope")  # type: ignore[arg-type]


@pytest.mark.parametrize("error", [KeyboardInterrupt(), SystemExit(2), GeneratorExit()])
def test_capture_of_a_base_exception_that_is_not_an_exception_is_a_type_error(error):
    # Upstream's rule and message (naming the type): these stop programs, not atoms.
    try:
        raise error
    except BaseException:
        with pytest.raises(TypeError) as info:
            Failure()
        with pytest.raises(TypeError):
            Failure(sys.exc_info())
    assert str(info.value) == f"Invalid exception type '{type(error)!r}' ({type})"


def test_from_exception_still_takes_a_base_exception():
    # The engine reports a future that died of SystemExit through it.
    f = Failure.from_exception(KeyboardInterrupt())
    assert list(f) == ["KeyboardInterrupt", "BaseException"]
    Failure.validate(f.to_dict())


# -- type names -------------------------------------------------------------------------------


def test_type_names_builtins_bare_others_qualified():
    f = capture(MyError("k"))
    assert list(f) == [f"{__name__}.MyError", "KeyError", "LookupError", "Exception"]


def test_type_names_of_taskflow_exception():
    f = capture(exc.NotFound("nf"))
    assert list(f) == [
        "taskflow.exceptions.NotFound",
        "taskflow.exceptions.TaskFlowException",
        "Exception",
    ]


def test_type_names_of_nested_class_use_module_and_class_name():
    f = capture(Holder.Nested("n"))
    assert next(iter(f)) == f"{__name__}.Nested"


def test_type_names_with_multiple_inheritance_follow_the_mro():
    class Both(ValueError, KeyError):
        pass

    f = Failure.from_exception(Both())
    assert list(f) == [f"{__name__}.Both", "ValueError", "KeyError", "LookupError", "Exception"]


# -- check ------------------------------------------------------------------------------------


def test_check_by_class_and_name_returns_first_given_match():
    f = capture(MyError("k"))
    assert f.check(ValueError) is None
    assert f.check(ValueError, LookupError, KeyError) is LookupError
    assert f.check("ValueError", "KeyError") == "KeyError"
    assert f.check(MyError) is MyError
    assert f.check(f"{__name__}.MyError") == f"{__name__}.MyError"
    assert f.check() is None


def test_check_works_without_exc_info():
    f = Failure.from_dict(capture(exc.NotFound("x")).to_dict())
    assert f.check(exc.TaskFlowException) is exc.TaskFlowException
    assert f.check(exc.StorageFailure) is None


# -- str and pformat --------------------------------------------------------------------------


def test_str_format():
    assert str(capture(ValueError("x"))) == "Failure: ValueError: x"
    assert str(capture(MyError("k"))) == f"Failure: {__name__}.MyError: 'k'"
    assert str(Failure(exception_str="boom")) == "Failure: boom"


def test_pformat_with_traceback():
    f = capture(ValueError("a"))
    text = f.pformat(traceback=True)
    head, _, rest = text.partition("\n")
    assert head == "Failure: ValueError: a"
    assert rest.startswith("Traceback (most recent call last):\n")
    assert "_raise" in rest
    assert not text.endswith("\n")
    assert f.pformat() == "Failure: ValueError: a"


def test_pformat_with_given_traceback_text():
    f = Failure(exception_str="boom", traceback_str="tb")
    assert f.pformat(traceback=True) == "Failure: boom\nTraceback (most recent call last):\ntb"


def test_traceback_text_matches_stdlib_formatting():
    f = capture(ValueError("a"))
    assert f.exc_info is not None
    assert f.traceback_str == "".join(traceback.format_tb(f.exc_info[2]))


# -- data-built failures ----------------------------------------------------------------------


def test_failure_from_keyword_data():
    cause = Failure(exception_str="c", exc_type_names=["Y", "Exception"])
    f = Failure(
        exception_str="a",
        exc_type_names=["X", "Exception"],
        exc_args=["q"],
        traceback_str="tb",
        causes=[cause],
    )
    assert f.exc_info is None
    assert f.exception is None
    assert f.exception_args == ("q",)
    assert f.traceback_str == "tb"
    assert f.causes == (cause,)
    assert list(f) == ["X", "Exception"]


def test_keyword_data_needs_exception_str():
    with pytest.raises(KeyError):
        Failure(exc_type_names=["Exception"])


def test_keyword_data_rejects_unknown_keys():
    with pytest.raises(TypeError) as info:
        Failure(exception_str="a", hi=1)
    assert str(info.value) == "Failure.__init__ got unexpected keyword argument(s): hi"
    # Named in the order given, as upstream does.
    with pytest.raises(TypeError) as info:
        Failure(exception_str="a", ho=1, hi=2)
    assert str(info.value) == "Failure.__init__ got unexpected keyword argument(s): ho, hi"


def test_unknown_keys_are_named_before_anything_else():
    # Issue 8 asks for this message; upstream 6.5 looked for exception_str first and raised
    # a bare KeyError('exception_str') here.
    with pytest.raises(TypeError) as info:
        Failure(hi=1)
    assert str(info.value) == "Failure.__init__ got unexpected keyword argument(s): hi"


def test_minimal_keyword_failure_defaults():
    f = Failure(exception_str="boom")
    assert f.to_dict() == {
        "exception_str": "boom",
        "traceback_str": None,
        "exc_type_names": [],
        "version": 1,
        "exc_args": [],
        "causes": [],
    }


# -- causes -----------------------------------------------------------------------------------


def test_explicit_cause_is_captured():
    try:
        try:
            raise KeyError("k")
        except KeyError as e:
            raise ValueError("v") from e
    except ValueError:
        f = Failure()
    assert len(f.causes) == 1
    assert list(f.causes[0]) == ["KeyError", "LookupError", "Exception"]
    assert f.causes[0].exception_str == "'k'"
    assert f.causes[0].exc_info is not None


def test_implicit_context_is_captured():
    try:
        try:
            raise KeyError("k")
        except KeyError:
            raise ValueError("v")
    except ValueError:
        f = Failure()
    assert [c.exception_str for c in f.causes] == ["'k'"]


def test_suppressed_context_is_not_captured():
    try:
        try:
            raise KeyError("k")
        except KeyError:
            raise ValueError("v") from None
    except ValueError:
        f = Failure()
    assert f.causes == ()


def test_cause_chain_is_flattened_nearest_first_each_holding_the_rest():
    f = chained()
    assert [c.exception_str for c in f.causes] == ["v", "'k'"]
    assert [c.exception_str for c in f.causes[0].causes] == ["'k'"]
    assert f.causes[1].causes == ()
    data = f.to_dict()
    assert [c["exception_str"] for c in data["causes"]] == ["v", "'k'"]
    assert [c["exception_str"] for c in data["causes"][0]["causes"]] == ["'k'"]


def test_cyclic_cause_chain_terminates():
    a = ValueError("a")
    b = KeyError("b")
    a.__cause__ = b
    b.__cause__ = a
    f = Failure.from_exception(a)
    assert [c.exception_str for c in f.causes] == ["'b'"]


def test_no_causes_for_plain_exception():
    assert capture(ValueError("x")).causes == ()


# -- dict round trip and validation -----------------------------------------------------------


def test_to_dict_shape():
    f = capture(MyError("boom", 2))
    data = f.to_dict()
    assert data["exception_str"] == "('boom', 2)"
    assert data["exc_type_names"] == [f"{__name__}.MyError", "KeyError", "LookupError", "Exception"]
    assert data["version"] == 1
    assert data["exc_args"] == ["boom", 2]
    assert data["causes"] == []
    assert "_raise" in data["traceback_str"]
    assert f.to_dict(include_args=False)["exc_args"] == []


def test_dict_round_trip_matches_but_is_not_equal():
    f = chained()
    back = Failure.from_dict(f.to_dict())
    assert back.exc_info is None
    assert back.matches(f)
    assert f.matches(back)
    # Upstream's == also compares exc_info: the live failure has one, its round trip not.
    assert back != f
    assert f != back
    assert back == Failure.from_dict(f.to_dict())
    assert back.to_dict() == f.to_dict()


def test_json_round_trip_matches():
    f = chained()
    back = Failure.from_dict(json.loads(json.dumps(f.to_dict())))
    assert back.matches(f)
    assert f.matches(back)
    assert back == Failure.from_dict(f.to_dict())
    Failure.validate(json.loads(json.dumps(f.to_dict())))


def test_exception_args_are_a_tuple_also_after_from_dict():
    f = capture(ValueError("a", 1))
    assert f.exception_args == ("a", 1)
    assert Failure.from_dict(f.to_dict()).exception_args == ("a", 1)
    assert Failure.from_dict(json.loads(json.dumps(f.to_dict()))).exception_args == ("a", 1)
    no_args = capture(ValueError())
    assert no_args.exception_args == ()
    assert Failure.from_dict(no_args.to_dict()).exception_args == ()
    assert Failure.from_dict({"exception_str": "x", "version": 1}).exception_args == ()


def test_args_are_made_json_safe():
    weird = object()
    f = Failure.from_exception(ValueError(weird, 1, b"x", {"a": (1, 2)}, (3, [4]), float("nan")))
    assert f.exception_args == (repr(weird), 1, "b'x'", {"a": [1, 2]}, [3, [4]], "nan")
    json.dumps(f.to_dict())
    back = Failure.from_dict(json.loads(json.dumps(f.to_dict())))
    assert back.matches(f)
    assert back.exception_args == f.exception_args


def test_args_with_non_string_dict_keys_become_repr():
    f = Failure.from_exception(ValueError({1: "a"}))
    assert f.exception_args == ("{1: 'a'}",)


def test_from_dict_needs_version_one():
    data = capture(ValueError("x")).to_dict()
    data["version"] = 2
    with pytest.raises(ValueError, match="Invalid dict version of failure object: 2"):
        Failure.from_dict(data)
    del data["version"]
    with pytest.raises(ValueError, match="None"):
        Failure.from_dict(data)


def test_from_dict_accepts_minimal_data():
    f = Failure.from_dict({"exception_str": "x", "version": 1})
    assert f.exception_str == "x"
    assert list(f) == []
    assert f.causes == ()


def test_validate_accepts_to_dict_output():
    Failure.validate(capture(ValueError("x")).to_dict())
    Failure.validate(chained().to_dict())
    Failure.validate(Failure(exception_str="x", exc_type_names=["Exception"]).to_dict())


VALID = {"exception_str": "x", "version": 1, "exc_type_names": ["Exception"], "traceback_str": ""}


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ([], "not a dict"),
        ({k: v for k, v in VALID.items() if k != "exception_str"}, "'exception_str'"),
        ({k: v for k, v in VALID.items() if k != "traceback_str"}, "'traceback_str'"),
        ({k: v for k, v in VALID.items() if k != "exc_type_names"}, "'exc_type_names'"),
        ({**VALID, "exception_str": 5}, "'exception_str'"),
        ({**VALID, "traceback_str": 5}, "'traceback_str'"),
        ({**VALID, "exc_type_names": []}, "'exc_type_names'"),
        ({**VALID, "exc_type_names": [1]}, "'exc_type_names'"),
        ({**VALID, "version": -1}, "'version'"),
        ({**VALID, "version": "1"}, "'version'"),
        ({**VALID, "exc_args": 5}, "'exc_args'"),
        ({**VALID, "causes": {}}, "'causes'"),
        ({**VALID, "causes": [1]}, "cause 0"),
        ({**VALID, "causes": [{"exception_str": "y"}]}, "cause 0"),
    ],
)
def test_validate_rejects_bad_format(data, problem):
    with pytest.raises(exc.InvalidFormat, match="Failure data not of the expected format") as info:
        Failure.validate(data)
    assert problem in str(info.value)


def test_validate_root_type_must_be_a_base_exception():
    with pytest.raises(exc.InvalidFormat, match="'ValueError' is not one of those types"):
        Failure.validate({**VALID, "exc_type_names": ["ValueError"]})
    Failure.validate({**VALID, "exc_type_names": ["KeyboardInterrupt", "BaseException"]})


def test_validate_checks_root_type_of_causes():
    cause = {**VALID, "exc_type_names": ["KeyError"]}
    with pytest.raises(exc.InvalidFormat, match="'KeyError'"):
        Failure.validate({**VALID, "causes": [cause]})


def test_validate_allows_extra_keys_and_other_versions():
    Failure.validate({**VALID, "extra": 1})
    Failure.validate({**VALID, "version": 2})


def _schema_errors(data, schema, root=Failure.SCHEMA):
    """Problems of ``data`` against ``schema`` (the JSON schema keywords SCHEMA uses)."""
    if "$ref" in schema:
        node = root
        for part in schema["$ref"].removeprefix("#/").split("/"):
            node = node[part]
        return _schema_errors(data, node, root)
    kinds = {
        "string": lambda v: isinstance(v, str),
        "array": lambda v: isinstance(v, list),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "object": lambda v: isinstance(v, dict),
        "null": lambda v: v is None,
    }
    wanted = schema.get("type")
    if wanted is not None:
        names = [wanted] if isinstance(wanted, str) else wanted
        if not any(kinds[name](data) for name in names):
            return [f"{data!r} is not of type {wanted}"]
    errors = []
    if isinstance(data, dict):
        errors += [f"{key!r} is required" for key in schema.get("required", ()) if key not in data]
        extra = set(data) - set(schema.get("properties", {}))
        if extra and schema.get("additionalProperties") is False:
            errors.append(f"unexpected {sorted(extra)}")
        for key, sub in schema.get("properties", {}).items():
            if key in data:
                errors += _schema_errors(data[key], sub, root)
    if isinstance(data, list):
        if len(data) < schema.get("minItems", 0):
            errors.append(f"{data!r} is too short")
        for item in data if "items" in schema else ():
            errors += _schema_errors(item, schema["items"], root)
    if "minimum" in schema and isinstance(data, int) and data < schema["minimum"]:
        errors.append(f"{data!r} is below {schema['minimum']}")
    return errors


def test_schema_has_the_ref_and_definitions_layout():
    assert set(Failure.SCHEMA) == {"$ref", "definitions"}
    cause = Failure.SCHEMA["definitions"]["cause"]
    assert Failure.SCHEMA["$ref"] == "#/definitions/cause"
    assert set(cause["required"]) == {"exception_str", "traceback_str", "exc_type_names"}
    assert cause["properties"]["causes"]["items"] == {"$ref": "#/definitions/cause"}
    json.dumps(Failure.SCHEMA)


def test_schema_accepts_to_dict_output():
    for f in (
        capture(ValueError("x")),
        chained(),
        Failure(exception_str="x", exc_type_names=["Exception"]),
    ):
        assert _schema_errors(f.to_dict(), Failure.SCHEMA) == []
        assert _schema_errors({**f.to_dict(), "extra": 1}, Failure.SCHEMA) == []


@pytest.mark.parametrize(
    "data",
    [
        [],
        {k: v for k, v in VALID.items() if k != "exception_str"},
        {**VALID, "traceback_str": 5},
        {**VALID, "exc_type_names": []},
        {**VALID, "exc_type_names": [1]},
        {**VALID, "version": -1},
        {**VALID, "version": "1"},
        {**VALID, "exc_args": 5},
        {**VALID, "causes": [{"exception_str": "y"}]},
    ],
)
def test_schema_rejects_bad_format(data):
    assert _schema_errors(data, Failure.SCHEMA)


def test_schema_works_with_jsonschema():
    jsonschema = services.need_module("jsonschema", "test")
    jsonschema.validate(chained().to_dict(), Failure.SCHEMA)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**VALID, "causes": [{"exception_str": "y"}]}, Failure.SCHEMA)


# -- equality ---------------------------------------------------------------------------------


def test_two_captures_at_the_same_place_are_equal():
    def make():
        try:
            raise ValueError("x")
        except ValueError:
            return Failure()

    a, b = make(), make()
    assert a.exception is not b.exception
    assert a == b
    assert a.matches(b)


def test_different_data_is_unequal():
    a = capture(ValueError("x"))
    assert a != capture(ValueError("y"))
    assert a != capture(KeyError("x"))
    assert not a.matches(Failure.from_exception(ValueError("x")))  # traceback differs
    assert a != "Failure: ValueError: x"
    assert not a.matches(object())


def test_different_causes_are_unequal():
    base = capture(ValueError("v"))
    data = base.to_dict()
    other = Failure.from_dict({**data, "causes": [capture(KeyError("k")).to_dict()]})
    assert other != Failure.from_dict(data)


def test_same_names_but_different_classes_are_unequal_while_live():
    first = type("Twin", (ValueError,), {"__module__": "m"})
    second = type("Twin", (ValueError,), {"__module__": "m"})
    a = Failure.from_exception(first("x"))
    b = Failure.from_exception(second("x"))
    assert list(a) == list(b)
    assert a != b
    assert not a.matches(b)
    # Once one side is data only, matches compares only the data.
    assert Failure.from_dict(a.to_dict()).matches(b)


def test_the_same_exception_captured_again_after_a_reraise_is_unequal():
    error = ValueError("x")
    first = capture(error)

    def reraise_elsewhere() -> Failure:
        try:
            raise error
        except ValueError:
            return Failure()

    again = reraise_elsewhere()
    assert again.exception is first.exception
    # The traceback grew by the second raise: equality compares it (so does matches).
    assert again != first
    assert not again.matches(first)


def test_equality_compares_the_exc_info_traceback_not_only_its_text():
    error = ValueError("x")
    live = capture(error)
    assert live.exc_info is not None
    # Same data, same exception, but the exc_info holds no traceback.
    data = {"exception_str": "x", "exc_type_names": ["ValueError", "Exception"]}
    data.update(exc_args=["x"], traceback_str=live.traceback_str)
    without_tb = Failure((ValueError, error, None), **data)
    with_tb = Failure(live.exc_info, **data)
    assert with_tb == live
    assert without_tb != live
    assert not without_tb.matches(live)
    # A data-only side is compared on data by matches, never equal by ==.
    data_only = Failure(**data)
    assert data_only.matches(live)
    assert data_only.matches(without_tb)
    assert data_only != live
    assert data_only != without_tb


def test_exc_info_with_another_message_is_unequal():
    def raised(message: str) -> Failure:
        try:
            raise ValueError(message)
        except ValueError:
            info = sys.exc_info()
        return Failure(info, exception_str="x", exc_type_names=["ValueError", "Exception"])

    assert raised("x") != raised("y")
    assert raised("x") == raised("x")


def test_matches_compares_causes_with_matches():
    # Upstream compares causes with == here, so a live chain never matches its own round
    # trip; we keep matches true to its purpose (storage uses it to skip rewrites).
    f = chained()
    back = Failure.from_dict(f.to_dict())
    assert f.causes != back.causes
    assert f.matches(back)
    assert back.matches(f)


def test_failures_are_unhashable():
    with pytest.raises(TypeError):
        hash(capture(ValueError("x")))


def test_iter_yields_type_names():
    assert list(capture(ValueError("x"))) == ["ValueError", "Exception"]


# -- copy and pickle --------------------------------------------------------------------------


def test_copy_is_equal_and_keeps_exc_info():
    f = chained()
    for clone in (f.copy(), copy.copy(f), copy.deepcopy(f)):
        assert clone is not f
        assert clone == f
        assert clone.exc_info == f.exc_info
        assert clone.causes == f.causes


def test_copy_of_data_failure():
    f = Failure(exception_str="a", exc_type_names=["Exception"])
    assert f.copy() == f
    assert f.copy().exc_info is None


def test_pickle_drops_exc_info_but_keeps_data():
    f = chained()
    back = pickle.loads(pickle.dumps(f))
    assert back.exc_info is None
    assert back.matches(f)
    assert back != f  # as upstream: the pickled copy's exc_info differs
    assert back.to_dict() == f.to_dict()


def test_pickle_of_unpicklable_args():
    f = Failure.from_exception(ValueError(lambda: 1))
    back = pickle.loads(pickle.dumps(f))
    assert back.matches(f)


# -- reraise ----------------------------------------------------------------------------------


def test_reraise_raises_the_original_with_its_traceback():
    error = ValueError("x")
    f = capture(error)
    with pytest.raises(ValueError) as info:
        f.reraise()
    assert info.value is error
    assert "_raise" in "".join(traceback.format_tb(info.value.__traceback__))


def test_reraise_without_exc_info_wraps():
    f = Failure.from_dict(capture(ValueError("x")).to_dict())
    with pytest.raises(exc.WrappedFailure) as info:
        f.reraise()
    assert list(info.value) == [f]
    assert str(info.value) == "WrappedFailure: [Failure: ValueError: x]"


def test_reraise_if_any():
    a = capture(ValueError("a"))
    b = capture(KeyError("b"))
    assert Failure.reraise_if_any([]) is None
    with pytest.raises(ValueError, match="a"):
        Failure.reraise_if_any([a])
    with pytest.raises(exc.WrappedFailure) as info:
        Failure.reraise_if_any(iter([a, b]))
    assert list(info.value) == [a, b]
    assert str(info.value) == "WrappedFailure: [Failure: ValueError: a, Failure: KeyError: 'b']"


def test_reraise_if_any_single_data_failure_wraps():
    f = Failure(exception_str="x", exc_type_names=["Exception"])
    with pytest.raises(exc.WrappedFailure):
        Failure.reraise_if_any([f])


# -- laziness ---------------------------------------------------------------------------------


def test_traceback_text_is_formatted_once(monkeypatch):
    f = capture(ValueError("x"))
    calls = []
    real = traceback.format_tb

    def counting(tb):
        calls.append(tb)
        return real(tb)

    monkeypatch.setattr(traceback, "format_tb", counting)
    first = f.traceback_str
    assert f.traceback_str is first
    f.to_dict()
    assert len(calls) == 1


def test_capture_does_not_format_the_traceback(monkeypatch):
    calls = []
    monkeypatch.setattr(traceback, "format_tb", lambda tb: calls.append(tb) or [])
    f = capture(ValueError("x"))
    assert str(f) == "Failure: ValueError: x"
    assert calls == []


def test_broken_str_does_not_break_capture():
    class Broken(Exception):
        def __str__(self):
            raise RuntimeError("no")

    f = Failure.from_exception(Broken())
    assert "unprintable" in f.exception_str


def test_keyword_data_with_exc_info_keeps_both():
    live = capture(ValueError("a"))
    f = Failure(live.exc_info, exception_str="zz", exc_type_names=["Q", "Exception"])
    assert f.exc_info == live.exc_info
    assert str(f) == "Failure: Q: zz"
    with pytest.raises(ValueError, match="a"):
        f.reraise()
