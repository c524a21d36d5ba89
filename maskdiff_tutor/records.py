"""Typed records as strict JSON: the one conversion between the package's result dataclasses and files.

An experiment's result is a tree of frozen dataclasses whose fields say what they hold
(``float``, ``list[float | None]``, ``dict[int, Row]``, another dataclass). ``to_json`` turns such
a tree into plain JSON values; ``from_json`` reads them back into the same types, checking every
value against its field's type and naming the place of the first that does not fit
("metrics.parallel.exact.true_ppl[3]: expected a number; got 'abc'").

Strict JSON has no NaN or infinity. ``to_json`` writes a non-finite float as null and records its
place and value (``"metrics.x[2]: nan"``); ``from_json`` given those records restores it, so a
result reads back exactly as it was written. A null anywhere else is only accepted by a field
typed ``X | None``.

JSON object keys are strings; a ``dict[int, ...]`` or ``dict[float, ...]`` field is written with
its keys as text and read back as numbers. Only the one spelling ``to_json`` writes is read (``str``
of the int, ``repr`` of the float): ``"+1"``, ``" 1"``, ``"01"`` or ``"-0"`` would read as another
key than the file says, and are refused.

A field typed ``Any`` (or ``object``, or a bare ``dict``, ``list`` or ``tuple``) is untyped: it
reads back as the plain JSON values it was written as (lists for tuples and arrays, objects for
records). What could not come back as it was is refused when written, naming its place: a dict
key that is not a string (``{1: 2.5}`` would read back as ``{"1": 2.5}``) and a NaN or infinity
(it would read back as null). Type the field to store them.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any

__all__ = ["to_json", "from_json", "non_finite_places", "distinct"]


def to_json(value, where: str = "", found: list | None = None, *, untyped: bool = False):
    """``value`` (dataclasses, lists, tuples, dicts, tensors, numpy arrays and scalars, numbers,
    strings, None) as plain JSON values; a non-finite float becomes None and ``"<place>: <value>"``
    is appended to ``found``. Any other type raises ``TypeError`` naming its place. ``untyped``
    (set for the fields of a dataclass typed ``Any``) refuses what would not read back as it was:
    dict keys that are not strings and non-finite floats."""
    found = [] if found is None else found
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json(getattr(value, f.name), _child(where, f.name), found,
                                untyped=untyped or f.type in _UNTYPED) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {_key_text(key, where, untyped): to_json(item, _child(where, _key_text(key, where)), found,
                                                        untyped=untyped)
                for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(item, f"{where}[{i}]", found, untyped=untyped) for i, item in enumerate(value)]
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):  # a tensor or numpy array or scalar
        return to_json(value.tolist(), where, found, untyped=untyped)
    return _scalar_json(value, where, found, untyped)


# the field types to_json treats as untyped, as written with and without ``from __future__ import annotations``
_UNTYPED = (Any, object, dict, list, tuple, "Any", "typing.Any", "object", "dict", "list", "tuple")


def _scalar_json(value, where: str, found: list, untyped: bool = False):
    """A number, string, bool or None as JSON writes it; a non-finite float as None, its place recorded."""
    if isinstance(value, float) and not math.isfinite(value):
        if untyped:
            raise TypeError(f"{where or 'the record'}: {value} in an untyped field would read back as null; type the "
                            f"field (float) to store it")
        found.append(f"{where}: {value}")
        return None
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise TypeError(f"{where or 'the record'}: cannot store {type(value).__name__} in a JSON result")


def distinct(values) -> list:
    """Each value once, in the order first seen: the settings a result's rows were measured at
    (``distinct(row.k for row in rows)``), for the lookups the result records offer."""
    return list(dict.fromkeys(values))


def non_finite_places(records, where: str = "environment.non_finite_values") -> dict[str, float]:
    """The places and values ``to_json`` recorded (``["a.b[2]: nan"]``) as ``{"a.b[2]": nan}``. A
    record that is not ``"<place>: <nan, inf or -inf>"``, or names a place twice, raises
    ``ValueError`` naming it (``where`` is the list's own place in the file)."""
    if not isinstance(records, (list, tuple)):
        raise ValueError(f"{where}: expected a list of places; got {records!r:.60}")
    places = {}
    for i, record in enumerate(records):
        place, _, text = record.rpartition(": ") if isinstance(record, str) else ("", "", "")
        value = _non_finite(text)
        if not place or value is None:
            raise ValueError(f"{where}[{i}]: expected '<place>: <nan, inf or -inf>'; got {record!r:.60}")
        if place in places:
            raise ValueError(f"{where}[{i}]: the place {place} is listed twice")
        places[place] = value
    return places


def _non_finite(text: str) -> float | None:
    """The non-finite float ``to_json`` wrote as ``text`` (``"nan"``, ``"inf"``, ``"-inf"``), else None."""
    return float(text) if text in ("nan", "inf", "-inf") else None


def from_json(kind, data, where: str = "", non_finite: dict[str, float] | None = None):
    """``data`` (plain JSON values) read as ``kind``: a dataclass, ``int``, ``float``, ``str``,
    ``bool``, ``X | None``, ``list[X]``, ``tuple[X, ...]``, ``dict[K, V]`` (K ``str``, ``int`` or
    ``float``) or ``Any`` (taken as it is). Raises ``ValueError`` naming the place of the first
    value that does not fit. ``non_finite`` maps the places of floats written as null to their
    values (``non_finite_places``); a place there that is not a null number of ``data`` (a file
    edited, or of another result) is refused, naming it."""
    reader = _Reader(non_finite or {})
    read = reader.read(kind, data, where)
    stale = [place for place in reader.non_finite if place not in reader.restored]
    if stale:
        raise ValueError(f"non_finite_values: {stale[0]} is not the place of a null number in the record (it lists "
                         f"the places of NaN and infinities written as null)")
    return read


class _Reader:
    def __init__(self, non_finite: dict[str, float]):
        self.non_finite = non_finite
        self.restored: set[str] = set()  # the places of non_finite read so far

    def read(self, kind, data, where: str):
        origin, arguments = typing.get_origin(kind), typing.get_args(kind)
        if data is None and where in self.non_finite and _holds_float(kind):
            self.restored.add(where)  # a float, or float | None, written as null
            return self.non_finite[where]
        if kind is Any or kind is object:
            return data
        if origin in (typing.Union, types.UnionType):
            return self._union(arguments, data, where)
        if dataclasses.is_dataclass(kind):
            return self._dataclass(kind, data, where)
        container = _CONTAINERS.get(origin or kind)
        if container is not None:
            return getattr(self, container)(arguments, data, where)
        if kind in (int, float, str, bool):
            return self._scalar(kind, data, where)
        if kind is type(None):
            if data is not None:
                raise ValueError(f"{where}: expected null; got {data!r:.60}")
            return None
        raise TypeError(f"{where}: records cannot hold fields of type {kind!r}")

    def _list(self, arguments, data, where: str):
        items = self._expect(data, list, "a list", where)
        item_kind = arguments[0] if arguments else Any
        return [self.read(item_kind, item, f"{where}[{i}]") for i, item in enumerate(items)]

    @staticmethod
    def _expect(data, python_type, name: str, where: str):
        if not isinstance(data, python_type):
            raise ValueError(f"{where}: expected {name}; got {data!r:.60}")
        return data

    def _union(self, arguments, data, where: str):
        if data is None and type(None) in arguments:
            return None
        options = [a for a in arguments if a is not type(None)]
        errors = []
        for option in options:
            try:
                return self.read(option, data, where)
            except ValueError as error:
                errors.append(str(error))
        raise ValueError(errors[0] if len(errors) == 1 else f"{where}: fits none of {options}; got {data!r:.60}")

    def _dataclass(self, kind, data, where: str):
        data = self._expect(data, dict, f"an object ({kind.__name__})", where)
        hints = typing.get_type_hints(kind)
        fields = {f.name: f for f in dataclasses.fields(kind) if f.init}
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise ValueError(f"{where or kind.__name__}: unknown field(s) {unknown} for {kind.__name__} "
                             f"(its fields: {sorted(fields)})")
        values = {}
        for name, f in fields.items():
            if name in data:
                values[name] = self.read(hints[name], data[name], _child(where, name))
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ValueError(f"{where or kind.__name__}: missing field {name!r} of {kind.__name__}")
        return kind(**values)

    def _tuple(self, arguments, data, where: str):
        items = self._expect(data, list, "a list", where)
        if len(arguments) == 2 and arguments[1] is Ellipsis:
            return tuple(self.read(arguments[0], item, f"{where}[{i}]") for i, item in enumerate(items))
        if arguments and len(arguments) != len(items):
            raise ValueError(f"{where}: expected a list of {len(arguments)} values; got {len(items)}")
        kinds = arguments or (Any,) * len(items)
        return tuple(self.read(k, item, f"{where}[{i}]") for i, (k, item) in enumerate(zip(kinds, items)))

    def _dict(self, arguments, data, where: str):
        key_kind, value_kind = arguments or (str, Any)
        data = self._expect(data, dict, "an object", where)
        out = {}
        for text, item in data.items():
            key = _key_value(key_kind, text, where)
            out[key] = self.read(value_kind, item, _child(where, text))
        return out

    def _scalar(self, kind, data, where: str):
        if isinstance(data, bool) != (kind is bool):
            raise ValueError(f"{where}: expected {_NAMES[kind]}; got {data!r:.60}")
        if kind is float and isinstance(data, (int, float)):
            return float(data)
        if not isinstance(data, kind):
            raise ValueError(f"{where}: expected {_NAMES[kind]}; got {data!r:.60}")
        return data


def _holds_float(kind) -> bool:
    """``kind`` is ``float`` or a union with ``float`` in it (``float | None``)."""
    union = typing.get_origin(kind) in (typing.Union, types.UnionType)
    return kind is float or (union and float in typing.get_args(kind))


_CONTAINERS = {list: "_list", tuple: "_tuple", dict: "_dict"}  # a container type -> the _Reader method reading it
_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}


def _child(where: str, name: str) -> str:
    return f"{where}.{name}" if where else str(name)


def _key_text(key, where: str, untyped: bool = False) -> str:
    """A dict key as JSON writes it: strings as they are, ints and floats (numpy's too) as their text
    (``str`` and ``repr``: the one spelling ``_key_value`` reads). In an untyped field only strings."""
    if getattr(key, "ndim", None) == 0 and hasattr(key, "item"):  # a numpy scalar
        key = key.item()
    if isinstance(key, bool) or not isinstance(key, (str, int, float)):
        raise TypeError(f"{where or 'the record'}: dict keys must be strings or numbers; got {key!r}")
    if untyped and not isinstance(key, str):
        raise TypeError(f"{where or 'the record'}: key {key!r} in an untyped field would read back as the string "
                        f"{repr(key)!r}; type the field (dict[{type(key).__name__}, ...]) or use string keys")
    return key if isinstance(key, str) else repr(key)


_KEY_SPELLINGS = {int: "'12' or '-3': no sign, space, leading zero or underscore",
                  float: "Python's repr, like '0.5', '1e-05', '-0.0' or 'inf'"}


def _key_value(kind, text: str, where: str):
    """The key ``text`` of a ``dict[kind, ...]``: a string as it is; an int or float only in the
    spelling ``_key_text`` writes (``int("+1")`` is 1, but a file holding "+1" and "1" would lose one)."""
    if kind is str or kind is Any:
        return text
    try:
        key = kind(text)
    except (ValueError, TypeError):
        key = None
    if key is None or repr(key) != text:
        raise ValueError(f"{where}: key {text!r} is not {_NAMES.get(kind, kind)} as a result writes it "
                         f"({_KEY_SPELLINGS.get(kind, 'repr')})")
    return key
