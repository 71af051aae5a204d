"""The public surface: what ``tessera_client`` exports, and the sync twin matching the async."""

from __future__ import annotations

import inspect
import types

import pytest

import tessera_client
from tessera_client import AsyncTessera, Tessera


def public_methods(cls: type) -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(member)
        for name, member in inspect.getmembers(cls, inspect.isfunction)
        if not name.startswith("_")
    }


def parameters(signature: inspect.Signature) -> list[tuple[str, object, object]]:
    return [(p.name, p.kind, p.default) for p in signature.parameters.values()]


def test_sync_twin_has_the_same_methods_and_parameters() -> None:
    async_methods = public_methods(AsyncTessera)
    sync_methods = public_methods(Tessera)
    assert sorted(async_methods) == sorted(sync_methods)
    for name, signature in async_methods.items():
        assert parameters(signature) == parameters(sync_methods[name]), name
    async_properties = {n for n, m in inspect.getmembers(AsyncTessera) if isinstance(m, property)}
    sync_properties = {n for n, m in inspect.getmembers(Tessera) if isinstance(m, property)}
    assert async_properties == sync_properties


def test_every_rpc_and_read_has_a_method() -> None:
    expected = {
        "create_event", "book", "cancel", "claim_offer", "availability", "waitlist_position",
        "set_capacity", "publish_event", "cancel_event", "changes", "expire_offers",
        "list_events", "get_event", "my_bookings", "attendees", "waitlist", "update_event",
        "list_bookings", "get_booking",
    }  # fmt: skip
    assert expected <= set(public_methods(AsyncTessera))


def test_async_methods_are_coroutines_and_sync_ones_are_not() -> None:
    scoping = {"as_user", "as_service", "as_anonymous", "watch_event", "watch_my_bookings"}
    for name in public_methods(AsyncTessera):
        assert inspect.iscoroutinefunction(getattr(AsyncTessera, name)) != (name in scoping), name
        assert not inspect.iscoroutinefunction(getattr(Tessera, name)), name


def test_all_is_exactly_the_public_names() -> None:
    public = {
        name
        for name, value in vars(tessera_client).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)
        and name != "annotations"  # from __future__ import annotations
    }
    assert sorted(tessera_client.__all__) == sorted(public | {"__version__"})
    assert len(set(tessera_client.__all__)) == len(tessera_client.__all__)


def test_public_methods_have_google_style_docstrings_with_examples() -> None:
    for name in public_methods(AsyncTessera):
        doc = inspect.getdoc(getattr(AsyncTessera, name)) or ""
        assert doc, name
        if name not in {"open", "close", "as_anonymous"}:
            assert "Example:" in doc, f"AsyncTessera.{name} needs an example"


def test_earlier_names_still_work_and_say_what_replaced_them() -> None:
    import tessera_client.local

    replaced = {
        "connect": AsyncTessera.connect,
        "from_supabase": AsyncTessera.from_supabase,
        "connect_sync": Tessera.connect,
        "from_supabase_sync": Tessera.from_supabase,
        "create_local_user": tessera_client.local.create_local_user,
        "local_user_token": tessera_client.local.local_user_token,
        "local_api_key": tessera_client.local.local_api_key,
        "LocalUser": tessera_client.local.LocalUser,
    }
    for name, replacement in replaced.items():
        with pytest.warns(DeprecationWarning, match=rf"tessera_client\.{name} is deprecated"):
            assert getattr(tessera_client, name) == replacement
        assert name not in tessera_client.__all__
    with pytest.raises(AttributeError):
        tessera_client.no_such_name  # noqa: B018
