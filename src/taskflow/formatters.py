"""Render the context of an atom's failure: the atoms (and flows) that ran before it.

:class:`FailureFormatter` walks the compiled graph backwards from the failed atom and draws
what it finds as trees, most recent first, one line per flow or atom::

    2 predecessors (most recent first):
      Atom 'a' {'intention': 'EXECUTE', 'state': 'SUCCESS', 'requires': {}, 'provides': 1}
      |__Flow 'f'

Each atom line shows the atom's intention and state and, unless hidden, the arguments it
was given (``requires``) and the result it produced (``provides``), with chosen keys masked.

Compatibility note: where a predecessor is the end of a subflow, the walk continues from the
predecessors of that subflow's last atoms, so neither the end nor those last atoms appear.
TaskFlow 6.5.0 draws these trees that way and log readers may rely on it.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from taskflow import exceptions as exc
from taskflow import states
from taskflow.flow import Flow
from taskflow.retry import Retry
from taskflow.types import tree

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from taskflow._engine.compiler import Compilation
    from taskflow.atom import Atom
    from taskflow.engines.base import Engine
    from taskflow.storage import Storage
    from taskflow.types.failure import ExcInfo, Failure

__all__ = ["FailureFormatter"]

_MASK = "***"
_INDENT = "  "

#: Atom states in which an atom holds an execute result (or failure) worth showing.
_RESULT_STATES = frozenset((states.SUCCESS, states.FAILURE))


def _mask_keys(value: Any, keys: frozenset[Any]) -> Any:
    """A copy of ``value`` with the values of ``keys`` replaced, in dicts at any depth.

    Dicts and lists are descended into; other containers (tuples included) are shown as
    they are, as TaskFlow 6.5.0 does.
    """
    if isinstance(value, dict):
        return {k: (_MASK if k in keys else _mask_keys(v, keys)) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask_keys(item, keys) for item in value]
    return value


def _build_hierarchy(item: Flow | Atom) -> tree.Node:
    """The flow tree as :class:`~taskflow.types.tree.Node` objects (a flow's retry first).

    Built with an explicit stack (no recursion: nestings of any depth).
    """
    root = _hierarchy_node(item)
    stack = [(item, root)]
    while stack:
        current, node = stack.pop()
        if isinstance(current, Flow):
            if current.retry is not None:
                node.add(tree.Node(current.retry, kind="retry"))
            for child, _meta in current.iter_nodes():
                child_node = _hierarchy_node(child)
                node.add(child_node)
                stack.append((child, child_node))
    return root


def _hierarchy_node(item: Flow | Atom) -> tree.Node:
    if isinstance(item, Flow):
        return tree.Node(item, kind="flow", noop=True)
    return tree.Node(item, kind="retry" if isinstance(item, Retry) else "task")


class FailureFormatter:
    """Formats a failure of one of an engine's atoms together with its predecessors.

    Args:
        engine: the engine running the atoms.
        hide_inputs_outputs_of: names of atoms whose arguments and results are not shown.
        mask_inputs_keys: argument keys whose values are shown as ``***``.
        mask_outputs_keys: result keys whose values are shown as ``***``.
    """

    def __init__(
        self,
        engine: Engine,
        hide_inputs_outputs_of: Iterable[str] = (),
        mask_inputs_keys: Iterable[Any] = (),
        mask_outputs_keys: Iterable[Any] = (),
    ) -> None:
        self._engine = engine
        self._hide_inputs_outputs_of = frozenset(hide_inputs_outputs_of)
        self._mask_inputs_keys = frozenset(mask_inputs_keys)
        self._mask_outputs_keys = frozenset(mask_outputs_keys)
        # The engine may compile after this formatter is made: key the tree by compilation.
        self._hierarchy: tuple[Compilation, tree.Node] | None = None

    def format(
        self, fail: Failure, atom_matcher: Callable[[tree.Node], bool]
    ) -> tuple[ExcInfo | None, str]:
        """Describe ``fail`` of the atom selected by ``atom_matcher``.

        Args:
            fail: the failure to describe.
            atom_matcher: called with nodes of the flow hierarchy (a ``tree.Node`` whose
                ``item`` is the atom and ``metadata['kind']`` is ``'task'`` or ``'retry'``);
                the first atom node it accepts is the one that failed.

        Returns:
            ``(exc_info, details)``: the failure's exc_info and a text listing the atom's
            predecessors. ``details`` is empty when no atom matches or the atom is not
            being executed (for example while it reverts).
        """
        compilation = self._compilation()
        if compilation is None:
            return fail.exc_info, ""
        atom = self._find_atom(compilation, atom_matcher)
        if atom is None:
            return fail.exc_info, ""
        storage = self._engine.storage
        if storage.get_atom_intention(atom.name) != states.EXECUTE:
            return fail.exc_info, ""
        roots = compilation.predecessors(atom.name)
        count = roots.child_count(only_direct=False)
        described: dict[str, str] = {}

        def render(node: tree.Node) -> str:
            item = node.item
            if isinstance(item, Flow):
                return f"Flow '{item.name}'"
            text = described.get(item.name)
            if text is None:
                text = described[item.name] = self._describe(storage, item)
            return text

        lines = [
            _INDENT + line
            for root in roots
            for line in root.pformat(stringify_node=render).split(os.linesep)
        ]
        header = f"{count} predecessors (most recent first):"
        return fail.exc_info, header + os.linesep + os.linesep.join(lines)

    def _compilation(self) -> Compilation | None:
        try:
            compilation: Compilation | None = getattr(self._engine, "compilation", None)
        except exc.InvalidState:
            # Not compiled yet: no atom can have failed.
            return None
        return compilation

    def _find_atom(
        self, compilation: Compilation, atom_matcher: Callable[[tree.Node], bool]
    ) -> Atom | None:
        cached = self._hierarchy
        if cached is None or cached[0] is not compilation:
            cached = self._hierarchy = (compilation, _build_hierarchy(compilation.hierarchy))
        stack = [cached[1]]
        while stack:
            node = stack.pop()
            if node.metadata["kind"] != "flow" and atom_matcher(node):
                atom: Atom = node.item
                return atom
            stack.extend(node.reverse_iter())
        return None

    def _describe(self, storage: Storage, atom: Atom) -> str:
        name = atom.name
        state = storage.get_atom_state(name)
        info: dict[str, Any] = {
            "intention": storage.get_atom_intention(name),
            "state": state,
        }
        if name not in self._hide_inputs_outputs_of:
            info["requires"] = _mask_keys(_fetch_requires(storage, atom), self._mask_inputs_keys)
            if state in _RESULT_STATES:
                try:
                    provides = _fetch_result(storage, atom)
                except exc.NotFound:
                    pass
                else:
                    info["provides"] = _mask_keys(provides, self._mask_outputs_keys)
        return f"Atom '{name}' {info}"


def _fetch_requires(storage: Storage, atom: Atom) -> dict[str, Any]:
    """The arguments ``atom`` is (or was) given; ones without a value yet are left out."""
    try:
        return storage.fetch_mapped_args(
            atom.rebind, atom_name=atom.name, optional_args=atom.optional
        )
    except exc.NotFound:
        found: dict[str, Any] = {}
        for arg, symbol in atom.rebind.items():
            try:
                found.update(storage.fetch_mapped_args({arg: symbol}, atom_name=atom.name))
            except exc.NotFound:
                continue
        return found


def _fetch_result(storage: Storage, atom: Atom) -> Any:
    """The atom's execute result; a retry's is its whole history of (result, failures)."""
    result = storage.get_execute_result(atom.name)
    if isinstance(atom, Retry):
        detail = storage.atom_detail(atom.name)
        if detail.failure is None:
            return list(detail.results)
    return result
