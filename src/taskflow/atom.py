"""The atom: the smallest unit a flow is built from (tasks and retry controllers are atoms).

Theory of operation: an atom declares *what it needs* and *what it produces* by symbol name,
and engines wire atoms together through those names. Everything an engine needs to know is
computed once, in ``Atom.__init__``, and stored as plain attributes:

* ``rebind`` maps each ``execute`` parameter that may be passed to the symbol its value is
  fetched from; ``optional`` holds the symbols that are passed only when resolvable (the
  parameter keeps its Python default otherwise). ``revert_rebind``/``revert_optional`` are
  the same for ``revert``.
* ``requires`` holds every symbol that must be resolvable for execute or revert (symbols
  covered by ``inject`` excluded).
* ``save_as`` says how the execute result is published: symbol -> ``None`` (the whole
  result), an ``int`` (an index into a sequence result) or a key (into a mapping result);
  ``provides`` is its set of symbol names.

How parameters are mapped (separately for execute and revert):

1. parameters named in the ignore list, ``*args`` and ``**kwargs`` are never mapped;
   parameters without a default are *required*, the others *optional*;
2. with ``auto_extract`` each required parameter is mapped to the symbol of the same name;
3. every name in ``requires`` is mapped to itself;
4. ``rebind`` is applied last: a dict maps ``{parameter: symbol}``; a list/tuple is zipped
   onto the required parameters in signature order, surplus names being mapped to
   themselves;
5. a mapped name that is not a parameter is an error unless the function takes
   ``**kwargs``; an unmapped required parameter is an error;
6. with ``auto_extract``, unmapped optional parameters are mapped to themselves and marked
   optional (without it they are never passed, keeping their Python default).
"""

from __future__ import annotations

import abc
import functools
import inspect
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from typing import Any, ClassVar, TypeAlias, cast

from taskflow.types.sets import OrderedSet

__all__ = ["Atom"]

#: What a ``provides`` argument may be: one name, names of sequence items, or mapping keys.
Provides: TypeAlias = str | Sequence[str] | AbstractSet[str] | None
#: A ``rebind`` argument: ``{parameter: symbol}`` or symbols in required-parameter order.
Rebind: TypeAlias = Mapping[str, str] | Sequence[str] | None
#: A ``requires`` argument: one symbol or several.
Requires: TypeAlias = str | Iterable[str] | None


class _Parameters:
    """The mappable parameters of one callable, split by whether they have a default."""

    __slots__ = ("accepts_kwargs", "optional", "required")

    def __init__(self, required: tuple[str, ...], optional: tuple[str, ...], kwargs: bool) -> None:
        self.required = required
        self.optional = optional
        self.accepts_kwargs = kwargs


def _collect(signature: inspect.Signature, skip_first: bool) -> _Parameters:
    required: list[str] = []
    optional: list[str] = []
    accepts_kwargs = False
    params = list(signature.parameters.values())
    if skip_first and params and params[0].kind is not inspect.Parameter.VAR_POSITIONAL:
        params = params[1:]
    for param in params:
        if param.kind is inspect.Parameter.VAR_KEYWORD:
            accepts_kwargs = True
        elif param.kind is inspect.Parameter.VAR_POSITIONAL:
            continue
        elif param.default is inspect.Parameter.empty:
            required.append(param.name)
        else:
            optional.append(param.name)
    return _Parameters(tuple(required), tuple(optional), accepts_kwargs)


@functools.lru_cache(maxsize=1024)
def _method_parameters(function: Callable[..., Any]) -> _Parameters:
    # Methods of atom classes are introspected once per class, not once per instance:
    # flows with thousands of tasks of a few classes are common.
    return _collect(inspect.signature(function), skip_first=True)


def _parameters(func: Callable[..., Any]) -> _Parameters:
    if inspect.ismethod(func):
        return _method_parameters(func.__func__)
    return _collect(inspect.signature(func), skip_first=False)


def _requires_names(requires: Requires) -> Iterable[str]:
    if requires is None:
        return ()
    if isinstance(requires, str):
        return (requires,)
    return requires


def _build_mapping(
    func: Callable[..., Any],
    atom_name: str | None,
    ignore: AbstractSet[str],
    requires: Requires,
    rebind: Rebind,
    auto_extract: bool,
) -> tuple[OrderedDict[str, str], OrderedSet[str], OrderedSet[str]]:
    """Map the parameters of ``func``; returns (mapping, required symbols, optional symbols).

    Raises:
        TypeError: ``rebind`` is neither a mapping nor a list/tuple.
        ValueError: a mapped name is not a parameter (and ``func`` takes no ``**kwargs``),
            or a required parameter is left unmapped.
    """
    params = _parameters(func)
    required = [name for name in params.required if name not in ignore]
    optional = [name for name in params.optional if name not in ignore]
    mapping: OrderedDict[str, str] = OrderedDict()
    if auto_extract:
        for name in required:
            mapping[name] = name
    for symbol in _requires_names(requires):
        mapping[symbol] = symbol
    if rebind is not None:
        if isinstance(rebind, Mapping):
            mapping.update(rebind)
        elif isinstance(rebind, (list, tuple)):
            for index, symbol in enumerate(rebind):
                arg = required[index] if index < len(required) else symbol
                mapping[arg] = symbol
        else:
            raise TypeError(f"Invalid rebind value '{rebind}' ({type(rebind)})")
    if not params.accepts_kwargs:
        known = set(required).union(optional)
        extra = [name for name in mapping if name not in known]
        if extra:
            raise ValueError(f"Extra arguments given to atom {atom_name}: {extra}")
    missing = [name for name in required if name not in mapping]
    if missing:
        raise ValueError(f"Missing arguments for atom {atom_name}: {missing}")
    # Everything mapped so far was asked for explicitly (or is required): must resolve.
    required_symbols = OrderedSet(mapping.values())
    optional_symbols: OrderedSet[str] = OrderedSet()
    if auto_extract:
        for name in optional:
            if name not in mapping:
                mapping[name] = name
                optional_symbols.add(name)
    return mapping, required_symbols, optional_symbols


def _save_as(provides: Provides) -> OrderedDict[str, int | str | None]:
    save_as: OrderedDict[str, int | str | None] = OrderedDict()
    if provides is None:
        return save_as
    if isinstance(provides, str):
        save_as[provides] = None
    elif isinstance(provides, AbstractSet):
        for name in provides:
            save_as[name] = name
    elif isinstance(provides, Sequence):
        for index, name in enumerate(provides):
            save_as[name] = index
    else:
        raise TypeError(
            f"Atom provides parameter should be str, set or tuple/list, not {provides!r}"
        )
    return save_as


def _version_text(version: Any) -> str:
    if isinstance(version, (tuple, list)):
        return ".".join(str(part) for part in version)
    return str(version)


class Atom(abc.ABC):
    """Base of everything a flow runs: declares inputs, outputs and execute/revert.

    Args:
        name: Unique name of the atom within a flow.
        provides: Symbol(s) the execute result is published under: a ``str`` (the whole
            result), a list/tuple (one symbol per item of a sequence result) or a set (one
            symbol per key of a mapping result). Defaults to :attr:`default_provides`.
        requires: Extra symbol(s) passed to execute/revert under their own name.
        auto_extract: Map required parameters to the symbols of the same name.
        rebind: ``{parameter: symbol}``, or symbols zipped onto the required parameters.
        inject: ``{symbol: value}`` given to this atom only (taking precedence over the
            values visible in the flow).
        ignore_list: Parameter names never fetched from storage.
        revert_rebind: Like ``rebind`` for revert (defaults to ``rebind``).
        revert_requires: Like ``requires`` for revert (defaults to ``requires``).

    Raises:
        TypeError: ``provides`` or ``rebind`` has an unsupported type.
        ValueError: an argument mapping names an unknown parameter or leaves a required
            parameter unmapped.
    """

    #: Among atoms ready at the same time, higher priorities are scheduled first.
    priority: ClassVar[int] = 0
    #: What ``provides`` defaults to when not given.
    default_provides: ClassVar[Provides] = None
    #: Version recorded with the atom's persisted details (rendered ``"1.0"``).
    version: tuple[int, ...] = (1, 0)

    # Parameters a subclass always supplies itself (never fetched from storage).
    _execute_ignore: ClassVar[frozenset[str]] = frozenset()
    _revert_ignore: ClassVar[frozenset[str]] = frozenset()

    def __init__(
        self,
        name: str | None = None,
        provides: Provides = None,
        requires: Requires = None,
        auto_extract: bool = True,
        rebind: Rebind = None,
        inject: Mapping[str, Any] | None = None,
        ignore_list: Iterable[str] | None = None,
        revert_rebind: Rebind = None,
        revert_requires: Requires = None,
    ) -> None:
        # ``name`` is None only for an unnamed retry controller (or a bare atom) that no flow
        # has named yet; engines only ever see named atoms, hence the ``str`` annotation.
        self.name: str = cast("str", name)
        self.inject: dict[str, Any] | None = dict(inject) if inject is not None else None
        if provides is None:
            provides = self.default_provides
        self.save_as: OrderedDict[str, int | str | None] = _save_as(provides)
        self.provides: OrderedSet[str] = OrderedSet(self.save_as)

        ignored = frozenset(ignore_list) if ignore_list is not None else frozenset()
        self.rebind: OrderedDict[str, str]
        self.optional: OrderedSet[str]
        self.rebind, execute_requires, self.optional = _build_mapping(
            self._execute_callable(),
            name,
            ignored | self._execute_ignore,
            requires,
            rebind,
            auto_extract,
        )
        self.revert_rebind: OrderedDict[str, str]
        self.revert_optional: OrderedSet[str]
        self.revert_rebind, revert_requires_, self.revert_optional = _build_mapping(
            self._revert_callable(),
            name,
            ignored | self._revert_ignore,
            revert_requires or requires,
            revert_rebind or rebind,
            auto_extract,
        )
        self.requires: OrderedSet[str] = execute_requires.union(revert_requires_)
        if self.inject:
            injected = self.inject.keys()
            self.requires = self.requires.difference(injected)
            self.optional = self.optional.difference(injected)
            self.revert_optional = self.revert_optional.difference(injected)

    def _execute_callable(self) -> Callable[..., Any]:
        """The callable whose signature describes execute's parameters."""
        return self.execute

    def _revert_callable(self) -> Callable[..., Any]:
        """The callable whose signature describes revert's parameters."""
        return self.revert

    # The hooks below are deliberately concrete no-ops (B027): subclasses override only the
    # ones they need.
    def pre_execute(self) -> None:  # noqa: B027
        """Called by the engine just before :meth:`execute`."""

    @abc.abstractmethod
    def execute(self, *args: Any, **kwargs: Any) -> Any:
        """Do the atom's work; the return value is published as :attr:`provides`."""

    def post_execute(self) -> None:  # noqa: B027
        """Called by the engine after :meth:`execute`, even when it raised."""

    def pre_revert(self) -> None:  # noqa: B027
        """Called by the engine just before :meth:`revert`."""

    def revert(self, *args: Any, **kwargs: Any) -> Any:  # noqa: B027
        """Undo what :meth:`execute` did; the default does nothing."""

    def post_revert(self) -> None:  # noqa: B027
        """Called by the engine after :meth:`revert`, even when it raised."""

    def __str__(self) -> str:
        return f'"{self.name}=={_version_text(self.version)}"'

    def __repr__(self) -> str:
        cls = type(self)
        return f"<{cls.__module__}.{cls.__name__} {self}>"
