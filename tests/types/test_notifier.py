"""Notifier, RestrictedNotifier, Listener and register_deregister."""

from __future__ import annotations

import logging

import pytest

from taskflow.types import notifier as nt
from taskflow.types.notifier import Listener, Notifier, RestrictedNotifier, register_deregister


class Recorder:
    def __init__(self):
        self.calls = []

    def __call__(self, event_type, *args, **kwargs):
        self.calls.append((event_type, args, kwargs))


@pytest.fixture
def rec():
    return Recorder()


def test_empty_notifier_is_falsy_and_empty():
    n = Notifier()
    assert len(n) == 0
    assert not n
    assert list(n.listeners_iter()) == []


def test_register_and_notify_passes_args_kwargs_and_details(rec):
    n = Notifier()
    n.register("e", rec, args=[1, 2], kwargs={"k": 3})
    assert len(n) == 1
    assert n
    details = {"x": 1}
    n.notify("e", details)
    assert rec.calls == [("e", (1, 2), {"k": 3, "details": {"x": 1}})]
    assert rec.calls[0][2]["details"] is not details


def test_notify_other_event_does_not_call(rec):
    n = Notifier()
    n.register("e", rec)
    n.notify("other", {})
    assert rec.calls == []


def test_any_listeners_are_called_first(rec):
    n = Notifier()
    n.register("e", rec, args=("specific",))
    n.register(Notifier.ANY, rec, args=("any",))
    n.notify("e", {})
    n.notify("f", {})
    assert [c[:2] for c in rec.calls] == [("e", ("any",)), ("e", ("specific",)), ("f", ("any",))]


def test_notifying_any_itself_is_dropped(rec, caplog):
    n = Notifier()
    n.register(Notifier.ANY, rec)
    with caplog.at_level(logging.DEBUG, logger=nt.__name__):
        n.notify(Notifier.ANY, {})
    assert rec.calls == []


def test_constants():
    assert Notifier.ANY == "*"
    assert Notifier.RESERVED_KEYS == ("details",)


def test_register_rejects_non_callable():
    with pytest.raises(ValueError, match="must be callable"):
        Notifier().register("e", 5)  # type: ignore[arg-type]


def test_register_rejects_non_callable_filter(rec):
    with pytest.raises(ValueError, match="Details filter must be callable"):
        Notifier().register("e", rec, details_filter=5)  # type: ignore[arg-type]


def test_register_rejects_reserved_kwargs(rec):
    n = Notifier()
    with pytest.raises(KeyError, match="details"):
        n.register("e", rec, kwargs={"details": 1})
    assert len(n) == 0


def test_register_rejects_duplicate(rec):
    n = Notifier()
    n.register("e", rec)
    with pytest.raises(ValueError, match="already registered"):
        n.register("e", rec)
    assert len(n) == 1


def test_duplicate_registration_message_is_upstreams(rec):
    n = Notifier()
    n.register("e", rec)
    with pytest.raises(ValueError) as info:
        n.register("e", rec)
    assert str(info.value) == "Event callback already registered with equivalent details filter"


def test_same_callback_with_another_filter_is_a_separate_registration(rec):
    n = Notifier()

    def only_ok(details):
        return details.get("ok")

    n.register("e", rec)
    n.register("e", rec, details_filter=only_ok)
    assert len(n) == 2
    assert n.is_registered("e", rec)
    assert n.is_registered("e", rec, details_filter=only_ok)
    assert not n.is_registered("e", rec, details_filter=lambda d: True)


def test_details_filter_selects_notifications(rec):
    n = Notifier()
    n.register("e", rec, details_filter=lambda d: d.get("ok"))
    n.notify("e", {"ok": False})
    n.notify("e", {"ok": True})
    assert [c[2]["details"] for c in rec.calls] == [{"ok": True}]


def test_failing_callback_is_logged_and_others_still_called(rec, caplog):
    def bad(*args, **kwargs):
        raise RuntimeError("boom")

    n = Notifier()
    n.register("e", bad)
    n.register("e", rec)
    with caplog.at_level(logging.WARNING, logger=nt.__name__):
        n.notify("e", {"a": 1})
    assert len(rec.calls) == 1
    assert any("Failure calling listener" in r.getMessage() for r in caplog.records)
    assert caplog.records[-1].exc_info is not None


def test_failing_details_filter_is_logged(rec, caplog):
    n = Notifier()
    n.register("e", rec, details_filter=lambda d: d["missing"])
    with caplog.at_level(logging.WARNING, logger=nt.__name__):
        n.notify("e", {})
    assert rec.calls == []
    assert caplog.records


def test_each_listener_gets_its_own_details_copy(rec):
    def mutate(event_type, details):
        details["x"] = 99

    n = Notifier()
    n.register("e", mutate)
    n.register("e", rec)
    original = {"x": 1}
    n.notify("e", original)
    assert original == {"x": 1}
    assert rec.calls[0][2]["details"] == {"x": 1}


def test_listener_mutating_details_does_not_touch_the_callers_dict():
    def mutate(event_type, details):
        details["x"] = 99

    n = Notifier()
    n.register("e", mutate)
    original = {"x": 1}
    n.notify("e", original)
    assert original == {"x": 1}


def test_notify_with_none_details_sends_empty_dict(rec):
    n = Notifier()
    n.register("e", rec)
    n.notify("e", None)  # type: ignore[arg-type]
    assert rec.calls == [("e", (), {"details": {}})]


def test_deregister(rec):
    n = Notifier()
    n.register("e", rec)
    assert n.deregister("e", rec) is True
    assert n.deregister("e", rec) is False
    assert n.deregister("never", rec) is False
    assert not n.is_registered("e", rec)
    assert len(n) == 0
    assert not n
    n.notify("e", {})
    assert rec.calls == []


def test_deregister_needs_the_same_filter(rec):
    def flt(details):
        return True

    n = Notifier()
    n.register("e", rec, details_filter=flt)
    assert n.deregister("e", rec) is False
    assert n.deregister("e", rec, details_filter=flt) is True


def test_deregister_bound_method():
    class Target:
        def __init__(self):
            self.seen = 0

        def on(self, *args, **kwargs):
            self.seen += 1

    t = Target()
    n = Notifier()
    n.register("e", t.on)
    assert n.is_registered("e", t.on)
    with pytest.raises(ValueError, match="already registered"):
        n.register("e", t.on)
    n.notify("e", {})
    assert t.seen == 1
    assert n.deregister("e", t.on) is True


def test_deregister_event(rec):
    n = Notifier()
    n.register("e", rec)
    n.register("e", rec, details_filter=lambda d: True)
    n.register("f", rec)
    assert n.deregister_event("e") == 2
    assert n.deregister_event("e") == 0
    assert len(n) == 1
    assert [e for e, _ in n.listeners_iter()] == ["f"]


def test_reset(rec):
    n = Notifier()
    n.register("e", rec)
    n.register(Notifier.ANY, rec)
    n.reset()
    assert len(n) == 0
    n.notify("e", {})
    assert rec.calls == []


def test_listeners_iter(rec):
    n = Notifier()
    n.register("e", rec)
    n.register(Notifier.ANY, rec)
    n.register("e", rec, details_filter=lambda d: True)
    got = {
        event: [listener.callback for listener in listeners]
        for event, listeners in n.listeners_iter()
    }
    assert got == {"e": [rec, rec], "*": [rec]}


def test_copy_is_independent(rec):
    n = Notifier()
    n.register("e", rec)
    clone = n.copy()
    clone.register("f", rec)
    clone.deregister("e", rec)
    assert n.is_registered("e", rec)
    assert not n.is_registered("f", rec)
    assert len(n) == 1
    assert len(clone) == 1
    assert type(clone) is Notifier


def test_registering_during_notify_takes_effect_next_time(rec):
    n = Notifier()

    def add_more(*args, **kwargs):
        if not n.is_registered("e", rec):
            n.register("e", rec)

    n.register("e", add_more)
    n.notify("e", {})
    assert rec.calls == []
    n.notify("e", {})
    assert len(rec.calls) == 1


def test_deregistering_during_notify_still_calls_current_listeners(rec):
    n = Notifier()

    def remove_self(*args, **kwargs):
        n.deregister("e", remove_self)

    n.register("e", remove_self)
    n.register("e", rec)
    n.notify("e", {})
    assert len(rec.calls) == 1
    assert len(n) == 1


def test_kwargs_are_copied_at_registration(rec):
    kwargs = {"a": 1}
    n = Notifier()
    n.register("e", rec, kwargs=kwargs)
    kwargs["a"] = 2
    n.notify("e", {})
    assert rec.calls[0][2] == {"a": 1, "details": {}}


def test_can_be_registered_and_triggered():
    n = Notifier()
    assert n.can_be_registered("anything")
    assert n.can_trigger_notification("x")
    assert not n.can_trigger_notification(Notifier.ANY)


# -- RestrictedNotifier ------------------------------------------------------------------------


def test_restricted_notifier_only_registers_watchable_events(rec):
    r = RestrictedNotifier(["a", "b"])
    r.register("a", rec)
    r.register(Notifier.ANY, rec)
    with pytest.raises(ValueError, match="Disallowed event type 'c' can not have a callback"):
        r.register("c", rec)
    assert r.can_be_registered("a")
    assert not r.can_be_registered("c")
    assert r.can_trigger_notification("c")


def test_restricted_notifier_without_any(rec):
    r = RestrictedNotifier(["a"], allow_any=False)
    with pytest.raises(ValueError, match="Disallowed"):
        r.register(Notifier.ANY, rec)
    assert not r.can_be_registered(Notifier.ANY)


def test_restricted_notifier_can_notify_any_event(rec):
    r = RestrictedNotifier(["a"])
    r.register(Notifier.ANY, rec)
    r.notify("zzz", {"q": 1})
    assert rec.calls == [("zzz", (), {"details": {"q": 1}})]


def test_restricted_events_iter_yields_the_watchable_events():
    assert sorted(RestrictedNotifier(["b", "a"]).events_iter()) == ["a", "b"]
    assert sorted(RestrictedNotifier(["a"], allow_any=False).events_iter()) == ["a"]


def test_restricted_events_iter_contains_the_events():
    assert {"a", "b"} <= set(RestrictedNotifier(["b", "a"]).events_iter())


def test_restricted_copy_keeps_restrictions(rec):
    r = RestrictedNotifier(["a"])
    clone = r.copy()
    assert type(clone) is RestrictedNotifier
    with pytest.raises(ValueError):
        clone.register("b", rec)
    clone.register("a", rec)
    assert not r.is_registered("a", rec)


# -- register_deregister and Listener ---------------------------------------------------------


def test_register_deregister_context_manager(rec):
    n = Notifier()
    with register_deregister(n, "e", rec, args=(1,), kwargs={"k": 2}):
        assert n.is_registered("e", rec)
        n.notify("e", {"d": 1})
    assert not n.is_registered("e", rec)
    assert rec.calls == [("e", (1,), {"k": 2, "details": {"d": 1}})]


def test_register_deregister_deregisters_on_error(rec):
    n = Notifier()
    with pytest.raises(RuntimeError), register_deregister(n, "e", rec):
        raise RuntimeError("x")
    assert len(n) == 0


def test_register_deregister_without_callback_is_a_no_op():
    n = Notifier()
    with register_deregister(n, "e"):
        assert len(n) == 0


def test_listener_properties_and_call(rec):
    def flt(details):
        return details.get("go", False)

    listener = Listener(rec, args=[1], kwargs={"a": 2}, details_filter=flt)
    assert listener.callback is rec
    assert listener.args == (1,)
    assert listener.kwargs == {"a": 2}
    listener.kwargs["a"] = 99  # a copy: does not change the listener
    assert listener.kwargs == {"a": 2}
    assert listener.details_filter is flt
    listener("ev", {"go": False})
    listener("ev", {"go": True})
    assert rec.calls == [("ev", (1,), {"a": 2, "details": {"go": True}})]
    assert listener.is_equivalent(rec, details_filter=flt)
    assert not listener.is_equivalent(rec)
    assert not listener.is_equivalent(print, details_filter=flt)
    assert Listener(rec).is_equivalent(rec)
    assert "Listener" in repr(listener)


def test_a_notifier_pickles_and_its_registrations_view_stays_live():
    import pickle

    notifier = Notifier()
    view = notifier.registrations
    assert not view
    notifier.register("event", _noop)
    assert view  # live: it sees the registration
    clone = pickle.loads(pickle.dumps(notifier))
    assert clone.is_registered("event", _noop)
    assert clone.registrations
    clone.deregister("event", _noop)
    assert not clone.registrations  # the clone's view follows the clone's topics
    assert view  # and the original's its own
    with pytest.raises(TypeError):
        view["other"] = []  # type: ignore[index]


def _noop(event_type: str, details: dict) -> None:
    """A module-level callback, so that the notifier holding it pickles."""
