"""The public surface: ``__all__`` matches what is exported, and typed."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import types

import pytest

import anyway
import anyway.abc
import anyway.testing


def _public_names(module: types.ModuleType) -> set[str]:
    return {
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)
        and name != "annotations"
    }


@pytest.mark.parametrize("module", [anyway, anyway.testing], ids=lambda m: m.__name__)
def test_all_matches_exports(module: types.ModuleType) -> None:
    assert sorted(module.__all__) == sorted(set(module.__all__)), "duplicates in __all__"
    assert set(module.__all__) == _public_names(module)


def test_public_names_live_in_anyway() -> None:
    for name in anyway.__all__:
        obj = getattr(anyway, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            # the protocols live (and are documented) in the public anyway.abc
            assert obj.__module__ in {"anyway", "anyway.abc"}, name


def test_private_modules_are_private() -> None:
    for info in pkgutil.iter_modules(anyway.__path__):
        if info.name in {"testing", "httpx", "redis", "otel", "abc"}:
            continue
        assert info.name.startswith("_"), f"anyway.{info.name} should be private"


def test_public_callables_are_documented() -> None:
    for module in (anyway, anyway.abc, anyway.testing):
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.isclass(obj) or inspect.isroutine(obj):
                assert inspect.getdoc(obj), f"{module.__name__}.{name} has no docstring"


def test_py_typed_is_shipped() -> None:
    spec = importlib.util.find_spec("anyway")
    assert spec is not None
    assert spec.submodule_search_locations is not None
    (location,) = spec.submodule_search_locations
    assert (importlib.resources.files("anyway") / "py.typed").is_file(), location


def test_exceptions_have_default_messages_and_pickle() -> None:
    import pickle

    cases = [
        (anyway.DeadlineExceeded(), "deadline exceeded"),
        (anyway.DeadlineExceeded(seconds=2.5), "deadline of 2.5 s exceeded"),
        (anyway.CircuitOpen(retry_after=5.0), "circuit open; retry after 5 s"),
        (anyway.CircuitOpen(name="db", retry_after=1.0), "circuit 'db' is open; retry after 1 s"),
        (anyway.BulkheadFull(), "bulkhead full"),
        (anyway.RateLimitExceeded(retry_after=0.5), "rate limit exceeded; retry after 0.5 s"),
    ]
    for exc, message in cases:
        assert str(exc) == message
        copy = pickle.loads(pickle.dumps(exc))
        assert type(copy) is type(exc)
        assert str(copy) == message
        assert copy.__dict__ == exc.__dict__
    assert isinstance(anyway.DeadlineExceeded(), TimeoutError)
    assert isinstance(anyway.CircuitOpen(), anyway.Rejected)


def test_abc_protocols_match_the_implementations() -> None:
    assert isinstance(anyway.InMemoryBreakerStore(), anyway.abc.BreakerStore)
    for limiter in (anyway.RateLimiter(10), anyway.Bulkhead(2)):
        assert isinstance(limiter, anyway.abc.Limiter)
    assert isinstance(anyway.RateLimiter(10), anyway.abc.RateLimit)
    assert not isinstance(anyway.Bulkhead(2), anyway.abc.RateLimit)
    assert anyway.BreakerStore is anyway.abc.BreakerStore
    for name in anyway.abc.__all__:
        assert hasattr(anyway.abc, name), name
        if hasattr(anyway, name):  # the breaker's types are also top-level names
            assert getattr(anyway, name) is getattr(anyway.abc, name), name
