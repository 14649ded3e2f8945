"""Argument inference, provides/save_as and rendering of atoms (checked against upstream)."""

from __future__ import annotations

from collections import OrderedDict, deque
from typing import Any

import pytest

from taskflow.atom import Atom
from taskflow.types.sets import OrderedSet


class Plain(Atom):
    def execute(self, a, b, c=1):
        return a


class PlainWithRevert(Atom):
    def execute(self, a, b, c=1):
        return a

    def revert(self, a, x):
        return None


class KwargsAtom(Atom):
    def execute(self, a, b=2, **kwargs):
        return a


def mapping(atom: Atom) -> tuple[list[Any], ...]:
    return (
        list(atom.rebind.items()),
        list(atom.requires),
        list(atom.optional),
        list(atom.revert_rebind.items()),
        list(atom.revert_optional),
    )


def test_required_and_optional_parameters():
    atom = Plain()
    assert mapping(atom) == (
        [("a", "a"), ("b", "b"), ("c", "c")],
        ["a", "b"],
        ["c"],
        [],
        [],
    )


def test_attribute_types():
    atom = Plain(provides="x")
    assert isinstance(atom.rebind, OrderedDict)
    assert isinstance(atom.revert_rebind, OrderedDict)
    assert isinstance(atom.save_as, OrderedDict)
    for name in ("requires", "optional", "revert_optional", "provides"):
        assert isinstance(getattr(atom, name), OrderedSet)
    assert atom.version == (1, 0)
    assert atom.inject is None
    assert Atom.priority == 0
    assert Atom.default_provides is None


def test_atom_is_abstract():
    with pytest.raises(TypeError):
        Atom()  # type: ignore[abstract]


def test_rebind_list_zips_onto_required_parameters():
    atom = Plain(rebind=["x", "y"])
    assert list(atom.rebind.items()) == [("a", "x"), ("b", "y"), ("c", "c")]
    assert list(atom.requires) == ["x", "y"]
    assert list(atom.optional) == ["c"]


def test_rebind_tuple_is_like_list():
    assert Plain(rebind=("x",)).rebind["a"] == "x"


def test_rebind_dict_maps_parameters():
    atom = Plain(rebind={"b": "y"})
    assert list(atom.rebind.items()) == [("a", "a"), ("b", "y"), ("c", "c")]
    assert list(atom.requires) == ["a", "y"]


def test_rebinding_an_optional_parameter_makes_it_required():
    atom = Plain(rebind={"c": "z"})
    assert list(atom.requires) == ["a", "b", "z"]
    assert list(atom.optional) == []


def test_rebind_list_surplus_needs_kwargs():
    with pytest.raises(ValueError, match=r"^Extra arguments given to atom None: \['y', 'z'\]$"):
        Plain(rebind=["x", "q", "y", "z"])


def test_rebind_list_surplus_with_kwargs_maps_to_itself():
    atom = KwargsAtom(rebind=["x", "y", "z"])
    assert list(atom.rebind.items()) == [("a", "x"), ("y", "y"), ("z", "z"), ("b", "b")]
    assert list(atom.requires) == ["x", "y", "z"]
    assert list(atom.optional) == ["b"]


@pytest.mark.parametrize(
    ("rebind", "text"),
    [
        ("x", "Invalid rebind value 'x' (<class 'str'>)"),
        ({"x"}, "Invalid rebind value '{'x'}' (<class 'set'>)"),
        (5, "Invalid rebind value '5' (<class 'int'>)"),
    ],
)
def test_rebind_of_wrong_type(rebind, text):
    with pytest.raises(TypeError) as info:
        Plain(rebind=rebind)
    assert str(info.value) == text


def test_rebind_naming_unknown_parameter():
    with pytest.raises(ValueError) as info:
        Plain(name="n", rebind={"zz": "x"})
    assert str(info.value) == "Extra arguments given to atom n: ['zz']"


def test_rebind_dict_with_kwargs_accepts_any_name():
    atom = KwargsAtom(rebind={"b": "y", "q": "r"})
    assert list(atom.rebind.items()) == [("a", "a"), ("b", "y"), ("q", "r")]
    assert list(atom.requires) == ["a", "y", "r"]
    assert list(atom.optional) == []


def test_rebind_applies_after_requires():
    atom = KwargsAtom(rebind={"a": "y"}, requires=["a"])
    assert list(atom.rebind.items()) == [("a", "y"), ("b", "b")]
    atom = KwargsAtom(rebind={"b": "y"}, requires=["y"])
    assert list(atom.rebind.items()) == [("a", "a"), ("y", "y"), ("b", "y")]
    assert list(atom.requires) == ["a", "y"]


def test_missing_required_arguments_without_auto_extract():
    with pytest.raises(ValueError) as info:
        Plain(name="foo", auto_extract=False)
    assert str(info.value) == "Missing arguments for atom foo: ['a', 'b']"


def test_extra_is_reported_before_missing():
    with pytest.raises(ValueError, match=r"^Extra arguments"):
        Plain(auto_extract=False, requires=["x"])


def test_without_auto_extract_optional_parameters_are_not_passed():
    atom = Plain(auto_extract=False, requires=["a", "b"])
    assert list(atom.rebind.items()) == [("a", "a"), ("b", "b")]
    assert list(atom.optional) == []


def test_without_auto_extract_rebind_list_maps_everything():
    atom = Plain(auto_extract=False, rebind=["x", "y"])
    assert list(atom.rebind.items()) == [("a", "x"), ("b", "y")]


def test_requires_string_and_iterables():
    assert list(KwargsAtom(requires="q").rebind) == ["a", "q", "b"]
    atom = KwargsAtom(requires=["q", "r"])
    assert list(atom.rebind.items()) == [("a", "a"), ("q", "q"), ("r", "r"), ("b", "b")]
    assert list(atom.requires) == ["a", "q", "r"]
    assert list(atom.revert_rebind.items()) == [("q", "q"), ("r", "r")]


def test_requires_naming_optional_parameter_makes_it_required():
    atom = Plain(requires=["c"])
    assert list(atom.requires) == ["a", "b", "c"]
    assert list(atom.optional) == []


def test_requires_naming_unknown_parameter():
    with pytest.raises(ValueError, match=r"^Extra arguments given to atom None: \['zz'\]$"):
        Plain(requires=["zz"])


def test_requires_not_iterable():
    with pytest.raises(TypeError):
        Plain(requires=5)  # type: ignore[arg-type]


def test_inject_removes_symbols_from_requires_and_optional():
    atom = Plain(inject={"a": 1, "c": 3})
    assert list(atom.requires) == ["b"]
    assert list(atom.optional) == []
    assert list(atom.rebind) == ["a", "b", "c"]
    assert atom.inject == {"a": 1, "c": 3}


def test_inject_keys_are_symbols_not_parameters():
    assert list(Plain(rebind={"a": "x"}, inject={"a": 1}).requires) == ["x", "b"]
    assert list(Plain(rebind={"a": "x"}, inject={"x": 1}).requires) == ["b"]


class KwargsOptionalRevert(Atom):
    def execute(self, a, b=2):
        return a

    def revert(self, b, d=5, **kwargs):
        return None


def test_inject_removes_revert_optional():
    atom = KwargsOptionalRevert(inject={"d": 1})
    assert list(atom.revert_optional) == []


def test_requires_is_union_of_execute_and_revert():
    atom = KwargsOptionalRevert()
    assert list(atom.requires) == ["a", "b"]
    assert list(atom.optional) == ["b"]
    assert list(atom.revert_rebind.items()) == [("b", "b"), ("d", "d")]
    assert list(atom.revert_optional) == ["d"]


def test_revert_defaults_to_execute_rebind_and_requires():
    atom = PlainWithRevert(rebind={"a": "q"})
    assert list(atom.revert_rebind.items()) == [("a", "q"), ("x", "x")]
    assert list(atom.requires) == ["q", "b", "x"]


def test_revert_rebind_and_requires_are_separate():
    atom = PlainWithRevert(revert_rebind={"x": "y"}, revert_requires=[])
    assert list(atom.revert_rebind.items()) == [("a", "a"), ("x", "y")]
    assert list(atom.rebind.items()) == [("a", "a"), ("b", "b"), ("c", "c")]
    assert list(atom.requires) == ["a", "b", "y"]


def test_revert_rebind_list():
    atom = PlainWithRevert(revert_rebind=["r1", "r2"])
    assert list(atom.revert_rebind.items()) == [("a", "r1"), ("x", "r2")]


def test_execute_rebind_unknown_to_revert_is_an_error():
    with pytest.raises(ValueError, match=r"Extra arguments given to atom None: \['b'\]"):
        PlainWithRevert(rebind={"b": "q"})


def test_ignore_list_applies_to_execute_and_revert():
    atom = PlainWithRevert(ignore_list=["b", "x"])
    assert list(atom.rebind) == ["a", "c"]
    assert list(atom.revert_rebind) == ["a"]
    assert list(atom.requires) == ["a"]
    assert list(PlainWithRevert(ignore_list=("c",)).optional) == []


def test_default_revert_takes_kwargs_so_rebind_surplus_is_kept():
    class Atom2(Atom):
        def execute(self, a):
            return a

    atom = Atom2(rebind=["x"])
    assert list(atom.rebind.items()) == [("a", "x")]
    assert list(atom.revert_rebind.items()) == [("x", "x")]


def test_optional_rebound_onto_an_optional_symbol():
    class Atom2(Atom):
        def execute(self, a, b=2):
            return a

    atom = Atom2(rebind={"a": "b"})
    assert list(atom.rebind.items()) == [("a", "b"), ("b", "b")]
    assert list(atom.requires) == ["b"]
    assert list(atom.optional) == ["b"]


def test_keyword_only_positional_only_and_varargs():
    class Atom2(Atom):
        def execute(self, x, /, y, *args, z, w=3):
            return x

    atom = Atom2()
    assert list(atom.rebind) == ["x", "y", "z", "w"]
    assert list(atom.requires) == ["x", "y", "z"]
    assert list(atom.optional) == ["w"]


def test_static_and_class_method_execute():
    class Static(Atom):
        @staticmethod
        def execute(a, b):
            return a

    class Klass(Atom):
        @classmethod
        def execute(cls, a, b):
            return a

    assert list(Static().requires) == ["a", "b"]
    assert list(Klass().requires) == ["a", "b"]


def test_provides_string():
    atom = Plain(provides="x")
    assert list(atom.save_as.items()) == [("x", None)]
    assert list(atom.provides) == ["x"]


@pytest.mark.parametrize("provides", [["x", "y"], ("x", "y"), deque(["x", "y"])])
def test_provides_sequence(provides):
    assert list(Plain(provides=provides).save_as.items()) == [("x", 0), ("y", 1)]


def test_provides_duplicate_names_keep_last_index():
    assert list(Plain(provides=["a", "a", "b"]).save_as.items()) == [("a", 1), ("b", 2)]


@pytest.mark.parametrize("provides", [{"x"}, frozenset({"x"}), {"x": 1}.keys()])
def test_provides_set(provides):
    atom = Plain(provides=provides)
    assert list(atom.save_as.items()) == [("x", "x")]
    assert list(atom.provides) == ["x"]


@pytest.mark.parametrize(
    ("provides", "text"),
    [
        ({"a": 1}, "{'a': 1}"),
        (5, "5"),
    ],
)
def test_provides_of_wrong_type(provides, text):
    with pytest.raises(TypeError) as info:
        Plain(provides=provides)
    assert (
        str(info.value) == f"Atom provides parameter should be str, set or tuple/list, not {text}"
    )


def test_empty_provides():
    assert list(Plain(provides=[]).save_as.items()) == []
    assert list(Plain().provides) == []


def test_default_provides():
    class Provider(Atom):
        default_provides = ("m", "n")

        def execute(self):
            return 1, 2

    assert list(Provider().save_as.items()) == [("m", 0), ("n", 1)]
    assert list(Provider(provides="q").save_as.items()) == [("q", None)]
    assert list(Provider(provides=()).save_as.items()) == []


def test_str_and_repr():
    atom = Plain(name="hi")
    assert str(atom) == '"hi==1.0"'
    assert repr(atom) == f'<{Plain.__module__}.Plain "hi==1.0">'
    atom.version = (2, 3)
    assert str(atom) == '"hi==2.3"'
    assert str(Plain()) == '"None==1.0"'


def test_version_class_attribute_is_honoured():
    class Versioned(Plain):
        version = (3, 1)

    assert str(Versioned(name="v")) == '"v==3.1"'


def test_hooks_and_default_revert_do_nothing():
    atom = Plain()
    assert atom.pre_execute() is None
    assert atom.post_execute() is None
    assert atom.pre_revert() is None
    assert atom.post_revert() is None
    assert Atom.revert(atom, 1, 2, x=3) is None


def test_instances_do_not_share_mappings():
    first, second = Plain(), Plain()
    first.rebind["a"] = "changed"
    assert second.rebind["a"] == "a"
