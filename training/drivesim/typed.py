"""Typed configuration helpers: every config of the project is a dataclass whose fields say their type (Literal
for a closed set of values), default and meaning (the trailing ``# comment`` of the field, or
``field(metadata={"doc": ...})``). One set of helpers reads them for validation, help texts, ROS parameter
declarations and nested configs (no imports beyond the standard library)."""

from __future__ import annotations

import ast
import dataclasses
import enum
import functools
import inspect
import io
import math
import textwrap
import tokenize
import typing
from dataclasses import dataclass


@functools.cache
def field_docs(cls) -> dict[str, str]:
    """{field: its documentation}: ``metadata["doc"]`` if set, else the comment after the field on its line and
    the comment lines right below it (continuations), for cls and its dataclass bases."""
    docs: dict[str, str] = {}
    for klass in reversed([k for k in cls.__mro__ if dataclasses.is_dataclass(k)]):
        try:
            src = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):
            continue
        lines = src.splitlines()
        comments = {t.start[0]: t.string.lstrip("#").strip()
                    for t in tokenize.generate_tokens(io.StringIO(src).readline) if t.type == tokenize.COMMENT}
        body = ast.parse(src).body[0]
        for node in getattr(body, "body", []):
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                row = node.end_lineno
                text = [comments[row]] if row in comments else []
                k = row + 1
                while k in comments and lines[k - 1].lstrip().startswith("#"):
                    text.append(comments[k])
                    k += 1
                if text:
                    docs[node.target.id] = " ".join(text)
    for f in dataclasses.fields(cls):
        if "doc" in f.metadata:
            docs[f.name] = f.metadata["doc"]
    return docs


def _base(t):
    """The concrete type of an annotation (X | None -> X)."""
    args = typing.get_args(t)
    if typing.get_origin(t) in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        rest = [a for a in args if a is not type(None)]
        return rest[0] if len(rest) == 1 else t
    return t


def optional(t) -> bool:
    return type(None) in typing.get_args(t)


def check(obj) -> None:
    """Validate a dataclass instance in place: Literal fields hold one of their values, enum fields are converted
    from their values, numbers are numbers (ints stay ints, NaN is refused); the error names the field."""
    hints = typing.get_type_hints(type(obj))
    name = type(obj).__name__
    for f in dataclasses.fields(obj):
        t, v = hints[f.name], getattr(obj, f.name)
        if v is None:
            if not optional(t):
                raise ValueError(f"{name}.{f.name}: a value is required")
            continue
        b = _base(t)
        if typing.get_origin(b) is typing.Literal:
            if v not in typing.get_args(b):
                raise ValueError(f"{name}.{f.name} = {v!r}: expected one of {', '.join(map(repr, typing.get_args(b)))}")
        elif inspect.isclass(b) and issubclass(b, enum.Enum):
            try:
                object.__setattr__(obj, f.name, b(v))
            except ValueError:
                raise ValueError(f"{name}.{f.name} = {v!r}: expected one of {[m.value for m in b]}") from None
        elif b is bool:
            if not isinstance(v, bool):
                raise ValueError(f"{name}.{f.name} = {v!r}: expected true or false")
        elif b in (int, float):
            if isinstance(v, bool) or not isinstance(v, int | float) or (b is int and not float(v).is_integer()):
                raise ValueError(f"{name}.{f.name} = {v!r}: expected {b.__name__}")
            if math.isnan(float(v)):
                raise ValueError(f"{name}.{f.name} is NaN")
            object.__setattr__(obj, f.name, b(v))
        elif b is str and not isinstance(v, str):
            raise ValueError(f"{name}.{f.name} = {v!r}: expected a string")


@dataclass(frozen=True)
class Option:
    """One leaf of a (possibly nested) config: its dotted path, type, default and documentation."""

    path: str
    type: object
    default: object
    doc: str


def options(cls, prefix: str = "") -> list[Option]:
    """Every leaf field of a config, nested dataclass fields as ``outer.inner`` (lists are left out)."""
    out = []
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    inst = cls()
    for f in dataclasses.fields(cls):
        t = hints[f.name]
        v = getattr(inst, f.name)
        if dataclasses.is_dataclass(_base(t)):
            out += options(type(v) if v is not None else _base(t), f"{prefix}{f.name}.")
            continue
        if typing.get_origin(_base(t)) is list:
            continue
        out.append(Option(prefix + f.name, t, v, docs.get(f.name, "")))
    return out


def build(cls, values: dict):
    """cls(**values) with dotted keys going to nested configs (``{"rl.kl_ref": 0.1}``); unknown keys are refused."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    flat, nested = {}, {}
    for k, v in values.items():
        head, dot, rest = k.partition(".")
        if head not in names:
            raise ValueError(f"{cls.__name__}: unknown field {k!r}; fields: {', '.join(sorted(names))}")
        (nested.setdefault(head, {}).__setitem__(rest, v) if dot else flat.__setitem__(head, v))
    for head, sub in nested.items():
        inner = _base(hints[head])
        inner_names = {f.name for f in dataclasses.fields(inner)}
        for k in sub:
            if k.partition(".")[0] not in inner_names:
                raise ValueError(f"{cls.__name__}: unknown field '{head}.{k}'; {head} has: {', '.join(sorted(inner_names))}")
        base = dataclasses.asdict(getattr(cls(), head))
        flat[head] = build(inner, {**{k: v for k, v in base.items() if not isinstance(v, dict)}, **sub})
    return cls(**flat)


__all__ = ["Option", "build", "check", "field_docs", "optional", "options"]
