"""Decorators, the class helpers and the context manager built on start/stop.

When nothing is traced in the current context a decorated call costs one ContextVar lookup
over the bare call, and the arguments are not touched at all.
"""

from __future__ import annotations

import functools
import inspect
import keyword
import logging
import types
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

from . import profiler as _p

__all__ = ["trace", "trace_cls", "TracedMeta", "Trace"]

F = TypeVar("F", bound=Callable[..., Any])
C = TypeVar("C", bound=type)

_TRACED = "__xprofiler_traced__"

log = logging.getLogger(__name__)


def _func_name(f: Callable[..., Any]) -> str:
    return f"{getattr(f, '__module__', '?')}.{getattr(f, '__qualname__', repr(f))}"


def _start_info(
    fname: str,
    info: dict[str, Any] | None,
    hide_args: bool,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> dict[str, Any]:
    out = dict(info) if info else {}
    func: dict[str, Any] = {"name": fname}
    if not hide_args:
        func["args"] = _p.safe_repr(args)
        func["kwargs"] = _p.safe_repr(kwargs)
    out["function"] = func
    return out


def _result_info(hide_result: bool, result: Any) -> dict[str, Any] | None:
    if hide_result:
        return None
    return {"function": {"result": _p.safe_repr(result)}}


def trace(
    name: str,
    info: dict[str, Any] | None = None,
    hide_args: bool = False,
    hide_result: bool = True,
    allow_multiple_trace: bool = True,
) -> Callable[[F], F]:
    """Trace every call of a function, method, coroutine function or generator as a span.

    ``info`` is added to the start point; positional and keyword arguments are recorded as
    bounded reprs unless ``hide_args``; the result is recorded unless ``hide_result``. An
    exception is recorded on the stop point (``etype``, ``message``) and re-raised unchanged.
    ``allow_multiple_trace=False`` refuses to trace a function that is already traced.
    """

    def decorator(f: F) -> F:
        if getattr(f, _TRACED, False):
            if not allow_multiple_trace:
                raise ValueError(f"{_func_name(f)} is already traced")
        fname = _func_name(f)
        if inspect.isasyncgenfunction(f):
            wrapper: Any = _wrap_async_gen(f, name, fname, info, hide_args, hide_result)
        elif inspect.isgeneratorfunction(f):
            wrapper = _wrap_gen(f, name, fname, info, hide_args, hide_result)
        else:
            is_async = inspect.iscoroutinefunction(f)
            wrapper = _fast_wrapper(f, is_async, name, fname, info, hide_args, hide_result)
            if wrapper is None:
                wrapper = _generic_wrapper(f, is_async, name, fname, info, hide_args, hide_result)

        setattr(wrapper, _TRACED, True)
        return wrapper  # type: ignore[no-any-return]

    return decorator


def _generic_wrapper(
    f: Callable[..., Any],
    is_async: bool,
    name: str,
    fname: str,
    info: dict[str, Any] | None,
    hide_args: bool,
    hide_result: bool,
) -> Callable[..., Any]:
    """``(*args, **kwargs)`` wrappers: for callables whose parameters cannot be read off a
    plain function's code (builtins, partials, callable objects...)."""
    ctx_get = _p.ctx_get
    start, stop, stop_err = _p.start, _p.stop, _p.stop_with_error

    if is_async:

        @functools.wraps(f)
        async def awrapper(*args: Any, **kwargs: Any) -> Any:
            if ctx_get() is None:
                return await f(*args, **kwargs)
            start(name, _start_info(fname, info, hide_args, args, kwargs))
            try:
                result = await f(*args, **kwargs)
            except BaseException as exc:
                stop_err(exc)
                raise
            stop(_result_info(hide_result, result))
            return result

        return awrapper

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if ctx_get() is None:
            return f(*args, **kwargs)
        start(name, _start_info(fname, info, hide_args, args, kwargs))
        try:
            result = f(*args, **kwargs)
        except BaseException as exc:
            stop_err(exc)
            raise
        stop(_result_info(hide_result, result))
        return result

    return wrapper


# -- wrappers with the wrapped function's own parameters ----------------------------------------
#
# Packing ``*args, **kwargs`` and calling through them costs more than everything else a traced
# call does when nothing is traced. So for a plain Python function the wrapper is generated with
# the same parameters (read off its code object; annotations are never read or evaluated), and
# the untraced path is one ContextVar lookup and a direct call:
#
#     def wrapper(sql, limit=..., *, timeout=...):
#         if _xp_ctx() is None:
#             return _xp_f(sql, limit, timeout=timeout)
#         return _xp_on((sql, limit), (), {'timeout': timeout}, {})
#
# The wrapper's ``__defaults__`` and ``__kwdefaults__`` hold the very objects the function had
# as defaults when it was decorated, so a mutable default keeps its identity. Binding errors (a
# missing or unexpected argument) are raised by the wrapper, with the function's own message as
# the names and the qualified name match. Internal names start with ``_xp_``; a function with
# such a parameter, or anything else unusual, gets the generic wrapper.

_CODE_CACHE: dict[str, Any] = {}
_CODE_CACHE_MAX = 1024
_Args = tuple[tuple[Any, ...], tuple[Any, ...], dict[str, Any], dict[str, Any]]


def _param_ok(pname: str) -> bool:
    return pname.isidentifier() and not keyword.iskeyword(pname) and not pname.startswith("_xp_")


def _fast_wrapper(
    f: Callable[..., Any],
    is_async: bool,
    name: str,
    fname: str,
    info: dict[str, Any] | None,
    hide_args: bool,
    hide_result: bool,
) -> Callable[..., Any] | None:
    """The generated wrapper, or None when ``f`` is not a plain function we can read."""
    try:
        return _build_fast_wrapper(f, is_async, name, fname, info, hide_args, hide_result)
    except Exception:  # noqa: BLE001 - anything unusual: the generic wrapper does the job
        log.debug("xprofiler: generic wrapper for %s", fname, exc_info=True)
        return None


def _signature_source(
    f: types.FunctionType, is_async: bool
) -> tuple[str, list[str], list[str], int, int] | None:
    """The factory's source for ``f``'s parameters, or None if they are unusual."""
    code = f.__code__
    flags = code.co_flags
    if is_async != bool(flags & inspect.CO_COROUTINE):
        return None  # e.g. marked as a coroutine function without being one
    nargs, nposonly, nkwonly = code.co_argcount, code.co_posonlyargcount, code.co_kwonlyargcount
    names = code.co_varnames
    pos = list(names[:nargs])
    kwonly = list(names[nargs : nargs + nkwonly])
    i = nargs + nkwonly
    varargs = varkw = ""
    if flags & inspect.CO_VARARGS:
        varargs = names[i]
        i += 1
    if flags & inspect.CO_VARKEYWORDS:
        varkw = names[i]
    every = [*pos, *kwonly, *([varargs] if varargs else []), *([varkw] if varkw else [])]
    if not all(_param_ok(n) for n in every) or len(set(every)) != len(every):
        return None
    defaults = f.__defaults__ or ()
    kwdefaults = f.__kwdefaults__ or {}
    if type(defaults) is not tuple or len(defaults) > nargs:
        return None
    if type(kwdefaults) is not dict or not set(kwdefaults) <= set(kwonly):
        return None
    first_default = nargs - len(defaults)

    # Defaults in the source are placeholders (None); the real ones are set on the function.
    params: list[str] = []
    for j, p in enumerate(pos):
        params.append(f"{p}=None" if j >= first_default else p)
        if nposonly and j == nposonly - 1:
            params.append("/")
    if varargs:
        params.append(f"*{varargs}")
    elif kwonly:
        params.append("*")
    params += [f"{k}=None" if k in kwdefaults else k for k in kwonly]
    if varkw:
        params.append(f"**{varkw}")
    call = [*pos, *([f"*{varargs}"] if varargs else []), *(f"{k}={k}" for k in kwonly)]
    if varkw:
        call.append(f"**{varkw}")
    pos_t = "(" + "".join(f"{p}, " for p in pos) + ")"
    kw_d = "{" + ", ".join(f"{k!r}: {k}" for k in kwonly) + "}"
    aw = "await " if is_async else ""
    src = "\n".join(
        [
            "def _xp_make(_xp_f, _xp_ctx, _xp_on):",
            f"    {'async ' if is_async else ''}def wrapper({', '.join(params)}):",
            "        if _xp_ctx() is None:",
            f"            return {aw}_xp_f({', '.join(call)})",
            f"        return {aw}_xp_on({pos_t}, {varargs or '()'}, {kw_d}, {varkw or '{}'})",
            "    return wrapper",
            "",
        ]
    )
    return src, pos, kwonly, first_default, nposonly


def _build_fast_wrapper(
    f: Callable[..., Any],
    is_async: bool,
    name: str,
    fname: str,
    info: dict[str, Any] | None,
    hide_args: bool,
    hide_result: bool,
) -> Callable[..., Any] | None:
    if type(f) is not types.FunctionType:
        return None  # builtins, partials, bound methods, callable objects...
    shape = _signature_source(f, is_async)
    if shape is None:
        return None
    src, pos, kwonly, first_default, nposonly = shape
    defaults: tuple[Any, ...] = f.__defaults__ or ()
    kwdefaults: dict[str, Any] = dict(f.__kwdefaults__ or {})  # a snapshot, as the tuple is
    factory_code = _CODE_CACHE.get(src)
    if factory_code is None:
        factory_code = compile(src, "<xprofiler wrapper>", "exec")
        if len(_CODE_CACHE) >= _CODE_CACHE_MAX:
            _CODE_CACHE.clear()
        _CODE_CACHE[src] = factory_code
    ns: dict[str, Any] = {}
    exec(factory_code, ns)  # noqa: S102 - our own source, built from checked identifiers only

    no_optional = first_default == len(pos)

    def recorded(
        pvals: tuple[Any, ...], extra: tuple[Any, ...], kvals: dict[str, Any], more: dict[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        # The arguments as the caller gave them, as far as they can be told apart: required
        # and positional-only ones by position, optional ones by name and only when they are
        # not the default object itself; everything by position when extra positional
        # arguments were passed (then every positional parameter was given by position).
        if no_optional and not kvals and not more:
            return pvals + extra, {}  # all required, all positional: as passed
        if extra:
            rargs = pvals + extra
            rkw: dict[str, Any] = {}
        else:
            plist: list[Any] = []
            rkw = {}
            for j, v in enumerate(pvals):
                if j < first_default:
                    plist.append(v)
                elif v is defaults[j - first_default]:
                    continue
                elif j < nposonly:
                    plist.append(v)
                else:
                    rkw[pos[j]] = v
            rargs = tuple(plist)
        for k, v in kvals.items():
            if k not in kwdefaults or v is not kwdefaults[k]:
                rkw[k] = v
        if more:
            rkw.update(more)
        return rargs, rkw

    start, stop, stop_err = _p.start, _p.stop, _p.stop_with_error

    def begin(a: _Args) -> tuple[tuple[Any, ...], dict[str, Any]]:
        pvals, extra, kvals, more = a
        if hide_args:
            start(name, _start_info(fname, info, True, (), {}))
        else:
            rargs, rkw = recorded(pvals, extra, kvals, more)
            start(name, _start_info(fname, info, False, rargs, rkw))
        kwargs = {**kvals, **more} if more else kvals
        return (pvals + extra if extra else pvals), kwargs

    on: Callable[..., Any]
    if is_async:

        async def on_async(*a: Any) -> Any:
            args, kwargs = begin(a)
            try:
                result = await f(*args, **kwargs)
            except BaseException as exc:
                stop_err(exc)
                raise
            stop(_result_info(hide_result, result))
            return result

        on = on_async
    else:

        def on_sync(*a: Any) -> Any:
            args, kwargs = begin(a)
            try:
                result = f(*args, **kwargs)
            except BaseException as exc:
                stop_err(exc)
                raise
            stop(_result_info(hide_result, result))
            return result

        on = on_sync

    wrapper: types.FunctionType = ns["_xp_make"](f, _p.ctx_get, on)
    wrapper.__defaults__ = defaults or None
    wrapper.__kwdefaults__ = kwdefaults or None
    return functools.wraps(f)(wrapper)


def _wrap_gen(
    f: Callable[..., Any],
    name: str,
    fname: str,
    info: dict[str, Any] | None,
    hide_args: bool,
    hide_result: bool,
) -> Callable[..., Any]:
    """The span covers the generator's whole life. The generator keeps its own trace state:
    it is current only while the generator body runs, so the consumer's spans between items
    are not nested under it, and spans the body leaves open across a ``yield`` stay open for
    the body only."""

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        outer = _p.current_frame()
        if outer is None:
            return (yield from f(*args, **kwargs))
        gen = f(*args, **kwargs)
        _p.start(name, _start_info(fname, info, hide_args, args, kwargs))
        span = _p.current_frame()  # the generator's own span
        _p.set_frame(outer)
        inside = span  # the trace state inside the body, between steps
        send: Any = None
        throw: BaseException | None = None
        while True:
            caller = _p.current_frame()
            _p.set_frame(inside)
            try:
                item = gen.throw(throw) if throw is not None else gen.send(send)
            except StopIteration as done:
                _p.set_frame(span)
                _p.stop(_result_info(hide_result, done.value))
                _p.set_frame(caller)
                return done.value
            except BaseException as exc:
                _p.set_frame(span)
                _p.stop_with_error(exc)
                _p.set_frame(caller)
                raise
            inside = _p.current_frame()
            _p.set_frame(caller)
            send = throw = None
            try:
                send = yield item
            except GeneratorExit:
                # May come from the garbage collector, in whatever context is current then.
                caller = _p.current_frame()
                _p.set_frame(inside)
                try:
                    gen.close()
                finally:
                    _p.set_frame(span)
                    _p.stop({"closed": True})
                    _p.set_frame(caller)
                raise
            except BaseException as exc:  # noqa: BLE001 - passed on into the generator
                throw = exc

    return wrapper


def _wrap_async_gen(
    f: Callable[..., Any],
    name: str,
    fname: str,
    info: dict[str, Any] | None,
    hide_args: bool,
    hide_result: bool,
) -> Callable[..., Any]:
    """As :func:`_wrap_gen`. Without a trace the items, ``asend`` values and ``athrow``
    exceptions are passed through unchanged too (``async for`` alone would drop them)."""

    @functools.wraps(f)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        outer = _p.current_frame()
        agen = f(*args, **kwargs)
        span = None
        if outer is not None:
            _p.start(name, _start_info(fname, info, hide_args, args, kwargs))
            span = _p.current_frame()
            _p.set_frame(outer)
        inside = span
        send: Any = None
        throw: BaseException | None = None
        while True:
            caller = _p.current_frame()
            if span is not None:
                _p.set_frame(inside)
            try:
                if throw is not None:
                    item = await agen.athrow(throw)
                else:
                    item = await agen.asend(send)
            except StopAsyncIteration:
                if span is not None:
                    _p.set_frame(span)
                    _p.stop(None)
                    _p.set_frame(caller)
                return
            except BaseException as exc:
                if span is not None:
                    _p.set_frame(span)
                    _p.stop_with_error(exc)
                    _p.set_frame(caller)
                raise
            if span is not None:
                inside = _p.current_frame()
                _p.set_frame(caller)
            send = throw = None
            try:
                send = yield item
            except GeneratorExit:
                caller = _p.current_frame()
                if span is not None:
                    _p.set_frame(inside)
                try:
                    await agen.aclose()
                finally:
                    if span is not None:
                        _p.set_frame(span)
                        _p.stop({"closed": True})
                        _p.set_frame(caller)
                raise
            except BaseException as exc:  # noqa: BLE001 - passed on into the generator
                throw = exc

    return wrapper


def trace_cls(
    name: str,
    info: dict[str, Any] | None = None,
    hide_args: bool = False,
    hide_result: bool = True,
    trace_private: bool = False,
    trace_static_methods: bool = False,
    trace_class_methods: bool = False,
    allow_multiple_trace: bool = True,
) -> Callable[[C], C]:
    """Trace the public methods of a class (private ones too with ``trace_private``)."""

    def decorator(cls: C) -> C:
        _trace_members(
            cls,
            name,
            info,
            hide_args,
            hide_result,
            trace_private,
            trace_static_methods,
            trace_class_methods,
            allow_multiple_trace,
        )
        return cls

    return decorator


def _trace_members(
    cls: type,
    name: str,
    info: dict[str, Any] | None,
    hide_args: bool,
    hide_result: bool,
    trace_private: bool,
    trace_static: bool,
    trace_class: bool,
    allow_multiple: bool,
) -> None:
    for attr, value in list(vars(cls).items()):
        if attr.startswith("__") and attr.endswith("__"):
            continue
        if attr.startswith("_") and not trace_private:
            continue
        deco = trace(
            name,
            info=info,
            hide_args=hide_args,
            hide_result=hide_result,
            allow_multiple_trace=allow_multiple,
        )
        if isinstance(value, staticmethod):
            if trace_static:
                setattr(cls, attr, staticmethod(deco(value.__func__)))
        elif isinstance(value, classmethod):
            if trace_class:
                setattr(cls, attr, classmethod(deco(value.__func__)))
        elif inspect.isfunction(value):
            if getattr(value, _TRACED, False) and allow_multiple:
                continue  # already traced by an explicit @trace: keep that one
            setattr(cls, attr, deco(value))


class TracedMeta(type):
    """Metaclass: trace a class's methods using its ``__trace_args__`` dict.

    ``class Api(metaclass=TracedMeta): __trace_args__ = {"name": "api", "hide_args": True}``
    (the keys are :func:`trace_cls`'s parameters).
    """

    def __init__(cls, cls_name: str, bases: tuple[type, ...], attrs: dict[str, Any]) -> None:
        super().__init__(cls_name, bases, attrs)
        # getattr, not attrs: a subclass inherits its base's __trace_args__ and is traced too.
        args = dict(getattr(cls, "__trace_args__", None) or {})
        if "name" not in args:
            raise TypeError(f"{cls_name} uses TracedMeta but its __trace_args__ has no 'name'")
        _trace_members(
            cls,
            args.pop("name"),
            args.pop("info", None),
            args.pop("hide_args", False),
            args.pop("hide_result", True),
            args.pop("trace_private", False),
            args.pop("trace_static_methods", False),
            args.pop("trace_class_methods", False),
            args.pop("allow_multiple_trace", True),
        )
        if args:
            raise TypeError(f"unknown __trace_args__ keys on {cls_name}: {sorted(args)}")


class Trace:
    """``with Trace("db", info={"statement": sql}):`` — a span around a block.

    An exception leaving the block is recorded on the stop point and propagates unchanged.
    """

    __slots__ = ("name", "info", "_active")

    def __init__(self, name: str, info: dict[str, Any] | None = None) -> None:
        self.name = name
        self.info = info
        self._active = False

    def __enter__(self) -> Trace:
        if _p.ctx_get() is not None:
            _p.start(self.name, self.info)
            self._active = True
        return self

    def __exit__(
        self,
        etype: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self._active:
            return
        self._active = False
        if exc is not None:
            _p.stop_with_error(exc)
        else:
            _p.stop()

    async def __aenter__(self) -> Trace:
        return self.__enter__()

    async def __aexit__(
        self,
        etype: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(etype, exc, tb)
