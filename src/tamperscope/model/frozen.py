"""Frozen records that cost little to build and to read: the helpers behind the verdict's records.

A frozen dataclass's generated ``__init__`` sets each field with its own ``object.__setattr__``,
and `functools.cached_property` takes a lock on every first access. `observe` builds a dozen
records per measurement and `analyze` observes every measurement of a corpus, so both costs
show. `quick_init` and `cached_property` keep the same behaviour without them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import MISSING, fields
from typing import Any, Generic, TypeVar, overload

_T = TypeVar("_T")
_V = TypeVar("_V")


class cached_property(Generic[_T, _V]):  # noqa: N801 - a drop-in for functools.cached_property
    """`functools.cached_property` without its lock (Python 3.11 takes an RLock on every first
    access, which costs more than the values cached here). Records are built and read by one
    thread; a race would only compute the same value twice.
    """

    def __init__(self, func: Callable[[_T], _V]) -> None:
        self.func = func
        self.name = func.__name__
        self.__doc__ = func.__doc__

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, instance: None, owner: type | None = None) -> cached_property[_T, _V]: ...
    @overload
    def __get__(self, instance: _T, owner: type | None = None) -> _V: ...

    def __get__(self, instance: _T | None, owner: type | None = None) -> Any:
        if instance is None:
            return self
        value = self.func(instance)
        instance.__dict__[self.name] = value  # shadows this non-data descriptor from now on
        return value


def quick_init(cls: type[_T]) -> type[_T]:
    """Give a frozen dataclass an ``__init__`` that sets the instance dict in one call.

    The generated ``__init__`` of a frozen dataclass calls ``object.__setattr__`` once
    per field (about 0.4 us each); `observe` builds a dozen records per measurement.
    Same signature and defaults, same instance dict, ``__post_init__`` still called,
    so equality, hashing, repr, pickling and `dataclasses.replace` are unchanged.
    Plain defaults only (no ``default_factory``), no ``InitVar``, every field in ``__init__``.
    """
    params, items = [], []
    namespace: dict[str, Any] = {"_set": object.__setattr__}
    for f in fields(cls):  # type: ignore[arg-type]
        assert f.init and f.default_factory is MISSING, f"{cls.__name__}.{f.name}: not supported"
        if f.default is MISSING:
            params.append(f.name)
        else:
            namespace[f"_default_{f.name}"] = f.default
            params.append(f"{f.name}=_default_{f.name}")
        items.append(f"{f.name!r}: {f.name}")
    post = "\n    self.__post_init__()" if hasattr(cls, "__post_init__") else ""
    exec(f"def __init__(self, {', '.join(params)}):\n"
         f"    _set(self, '__dict__', {{{', '.join(items)}}}){post}\n", namespace)
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__doc__ = cls.__init__.__doc__
    setattr(cls, "__init__", init)  # noqa: B010 - assigning a method is what this does
    return cls
