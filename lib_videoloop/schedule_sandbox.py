"""Per-frame schedules: small Python-like expressions evaluated by a restricted interpreter.

Users of the original script typed expressions such as ``0.4 if loop_i < 3 else 0.3`` or
``lambda img: img.filter(ImageFilter.SMOOTH) if loop_i in {5, 8} else img``. Those keep working,
but the text is parsed with ``ast`` and walked by the interpreter below, never handed to Python's
eval: there are no imports, no attribute access except ``ImageFilter.<filter>`` and
``<image>.filter``, no dunder names.

Limits are checked before an operation runs, not on its result: one C-level operation (a
repetition, a % format, a comparison of nested lists, a rank filter on a large frame) can take
gigabytes or minutes before control returns. So every value carries a bounded "weight" (its
items, nested items counted each time they are reached, characters, and 64-bit words of an
integer), and the operations that build or walk values check the weight of what they would
make first. Each evaluation, and each call of a user lambda from outside, has its own step and
time budget. The limits are listed in the README.
"""

from __future__ import annotations

import ast
import math
import operator
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from lib_videoloop.errors import VideoLoopError, short

MAX_SOURCE_CHARS = 2000
MAX_AST_NODES = 500
MAX_STEPS = 20_000  # interpreter steps per evaluation
MAX_SECONDS = 0.5  # wall time per evaluation
MAX_CALL_DEPTH = 50  # nested lambda calls
MAX_INT_BITS = 4096
MAX_SEQUENCE = 10_000  # items (or characters) of one string, list, tuple, set or dict
MAX_WEIGHT = 100_000  # a value with everything it holds, shared parts counted each time
MAX_FORMAT_WIDTH = 1000  # width and precision in f-strings and % formats
MAX_ROUND_DIGITS = 400
MAX_FILTER_ARG = 100
# Rank and mode filters cost ~5-16 ns per pixel per kernel cell here: about 1.5 s at this bound.
MAX_FILTER_COST = 100_000_000  # pixels x kernel cells

_MATH_NAMES = [
    "pi",
    "e",
    "tau",
    "inf",
    "nan",
    "sin",
    "cos",
    "tan",
    "asin",
    "acos",
    "atan",
    "atan2",
    "sinh",
    "cosh",
    "tanh",
    "asinh",
    "acosh",
    "atanh",
    "exp",
    "expm1",
    "log",
    "log2",
    "log10",
    "log1p",
    "sqrt",
    "floor",
    "ceil",
    "fabs",
    "trunc",
    "fmod",
    "hypot",
    "degrees",
    "radians",
    "copysign",
    "isclose",
    "isfinite",
    "isinf",
    "isnan",
    "gcd",
    "pow",
    "remainder",
]

_SAFE_BUILTINS: dict[str, Any] = {
    "abs": abs,
    "min": min,
    "max": max,
    "round": None,  # bounded versions installed below
    "int": int,
    "float": float,
    "bool": bool,
    "str": str,
    "len": len,
    "sum": None,
    "range": None,  # bounded version installed below
    "True": True,
    "False": False,
    "None": None,
}

_IMAGE_FILTER_NAMES = [
    "BLUR",
    "CONTOUR",
    "DETAIL",
    "EDGE_ENHANCE",
    "EDGE_ENHANCE_MORE",
    "EMBOSS",
    "FIND_EDGES",
    "SHARPEN",
    "SMOOTH",
    "SMOOTH_MORE",
    "GaussianBlur",
    "BoxBlur",
    "UnsharpMask",
    "MedianFilter",
    "MinFilter",
    "MaxFilter",
    "ModeFilter",
]

_BIN_OPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
    ast.BitAnd: operator.and_,
    ast.BitOr: operator.or_,
    ast.BitXor: operator.xor,
}
_UNARY_OPS: dict[type, Callable[[Any], Any]] = {
    ast.UAdd: operator.pos,
    ast.USub: operator.neg,
    ast.Not: operator.not_,
    ast.Invert: operator.invert,
}
_COMPARE_OPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
    ast.Is: operator.is_,
    ast.IsNot: operator.is_not,
}
_ALLOWED_NODES = (
    ast.Expression,
    ast.Constant,
    ast.Name,
    ast.Load,
    ast.BinOp,
    ast.UnaryOp,
    ast.BoolOp,
    ast.Compare,
    ast.IfExp,
    ast.List,
    ast.Tuple,
    ast.Set,
    ast.Dict,
    ast.Subscript,
    ast.Slice,
    ast.JoinedStr,
    ast.FormattedValue,
    ast.Call,
    ast.Attribute,
    ast.Lambda,
    ast.arguments,
    ast.arg,
    ast.And,
    ast.Or,
    *_BIN_OPS,
    *_UNARY_OPS,
    *_COMPARE_OPS,
)


class ScheduleRefused(Exception):
    """The expression tried something the sandbox does not allow (or ran out of budget)."""


@dataclass(frozen=True)
class Lambda:
    """A user lambda: evaluated by the interpreter when called, with its own budget."""

    params: tuple[str, ...]
    body: ast.AST
    scope: Mapping[str, Any]
    interpreter: "_Interpreter"

    def __call__(self, *args: Any) -> Any:
        if len(args) != len(self.params):
            raise ScheduleRefused(f"the lambda takes {len(self.params)} argument(s), got {len(args)}")
        scope = dict(self.scope)
        scope.update(zip(self.params, args, strict=True))
        return self.interpreter.evaluate(self.body, scope)


def _bounded_round(number: Any, ndigits: Any = None) -> Any:
    # round(1, -10**9) computes 10**(10**9) inside C.
    if ndigits is not None and not (isinstance(ndigits, int) and abs(ndigits) <= MAX_ROUND_DIGITS):
        raise ScheduleRefused(f"round() takes at most {MAX_ROUND_DIGITS} digits")
    return round(number) if ndigits is None else round(number, ndigits)


def _bounded_sum(values: Any, start: Any = 0) -> Any:
    # sum(lists, []) concatenates quadratically; schedules only ever add numbers.
    if not isinstance(start, (int, float)):
        raise ScheduleRefused("sum() adds numbers only")
    _weight(values)
    return sum(values, start)


def _bounded_range(*args: int) -> range:
    r = range(*args)
    if len(r) > MAX_SEQUENCE:
        raise ScheduleRefused(f"range of {len(r)} items is larger than the limit of {MAX_SEQUENCE}")
    return r


def _image_filter_namespace() -> dict[str, Any]:
    from PIL import ImageFilter

    def checked(cls: Any) -> Callable[..., Any]:
        def make(*args: Any, **kwargs: Any) -> Any:
            for value in (*args, *kwargs.values()):
                if isinstance(value, (int, float)) and abs(value) > MAX_FILTER_ARG * 3:
                    raise ScheduleRefused(f"ImageFilter.{cls.__name__} argument {value} is too large")
            return cls(*args, **kwargs)

        return make

    names: dict[str, Any] = {}
    for name in _IMAGE_FILTER_NAMES:
        obj = getattr(ImageFilter, name)
        # Built-in kernels (SMOOTH, ...) are passed to img.filter as they are; the
        # parameterised ones (GaussianBlur(2), ...) get their arguments bounded.
        names[name] = obj if issubclass(obj, ImageFilter.BuiltinFilter) else checked(obj)
    return names


class _Interpreter:
    """Walks a parsed expression. A fresh budget for every evaluation started from outside
    (the schedule itself, or a lambda it returned, called later on a frame)."""

    def __init__(self) -> None:
        self.steps = 0
        self.deadline = 0.0
        self.depth = 0

    def evaluate(self, node: ast.AST, scope: Mapping[str, Any]) -> Any:
        if self.depth == 0:
            self.steps = 0
            self.deadline = time.monotonic() + MAX_SECONDS
        elif self.depth >= MAX_CALL_DEPTH:
            raise ScheduleRefused(f"lambdas call each other more than {MAX_CALL_DEPTH} deep")
        self.depth += 1
        try:
            return self.run(node, scope)
        finally:
            self.depth -= 1

    def run(self, node: ast.AST, scope: Mapping[str, Any]) -> Any:
        self.steps += 1
        if self.steps > MAX_STEPS:
            raise ScheduleRefused(f"the expression takes more than {MAX_STEPS:,} steps to evaluate")
        if self.steps % 16 == 0 and time.monotonic() > self.deadline:
            raise ScheduleRefused(f"the expression takes longer than {MAX_SECONDS} s to evaluate")
        method = getattr(self, "_" + type(node).__name__, None)
        if method is None:
            raise ScheduleRefused(f"{type(node).__name__} is not allowed in a schedule")
        value = method(node, scope)
        _weight(value)
        return value

    def _Constant(self, node: ast.Constant, scope: Mapping[str, Any]) -> Any:  # noqa: ARG002  (one signature for all nodes)
        return node.value

    def _Name(self, node: ast.Name, scope: Mapping[str, Any]) -> Any:
        if node.id in scope:
            return scope[node.id]
        raise ScheduleRefused(f"unknown name '{node.id}'")

    def _BinOp(self, node: ast.BinOp, scope: Mapping[str, Any]) -> Any:
        left = self.run(node.left, scope)
        right = self.run(node.right, scope)
        op = type(node.op)
        if op is ast.Pow:
            _check_power(left, right)
        if op is ast.Mult:
            _check_repeat(left, right)
        if (
            op is ast.Add
            and isinstance(left, _SEQUENCES)
            and isinstance(right, _SEQUENCES)
            and len(left) + len(right) > MAX_SEQUENCE
        ):
            raise ScheduleRefused(f"the result is longer than the limit of {MAX_SEQUENCE:,} items")
        if op is ast.Mod and isinstance(left, (str, bytes)):
            _check_percent_format(left, right)
        return _BIN_OPS[op](left, right)

    def _UnaryOp(self, node: ast.UnaryOp, scope: Mapping[str, Any]) -> Any:
        return _UNARY_OPS[type(node.op)](self.run(node.operand, scope))

    def _BoolOp(self, node: ast.BoolOp, scope: Mapping[str, Any]) -> Any:
        value: Any = None
        for sub in node.values:
            value = self.run(sub, scope)
            if isinstance(node.op, ast.And) and not value:
                return value
            if isinstance(node.op, ast.Or) and value:
                return value
        return value

    def _Compare(self, node: ast.Compare, scope: Mapping[str, Any]) -> Any:
        left = self.run(node.left, scope)
        for op, comparator in zip(node.ops, node.comparators, strict=True):
            right = self.run(comparator, scope)
            if not _COMPARE_OPS[type(op)](left, right):
                return False
            left = right
        return True

    def _IfExp(self, node: ast.IfExp, scope: Mapping[str, Any]) -> Any:
        branch = node.body if self.run(node.test, scope) else node.orelse
        return self.run(branch, scope)

    def _List(self, node: ast.List, scope: Mapping[str, Any]) -> Any:
        return [self.run(e, scope) for e in node.elts]

    def _Tuple(self, node: ast.Tuple, scope: Mapping[str, Any]) -> Any:
        return tuple(self.run(e, scope) for e in node.elts)

    def _Set(self, node: ast.Set, scope: Mapping[str, Any]) -> Any:
        return {self.run(e, scope) for e in node.elts}

    def _Dict(self, node: ast.Dict, scope: Mapping[str, Any]) -> Any:
        if any(k is None for k in node.keys):
            raise ScheduleRefused("** unpacking is not allowed in a schedule")
        return {self.run(k, scope): self.run(v, scope) for k, v in zip(node.keys, node.values, strict=True)}

    def _Subscript(self, node: ast.Subscript, scope: Mapping[str, Any]) -> Any:
        container = self.run(node.value, scope)
        if not isinstance(container, (list, tuple, str, dict, range)):
            raise ScheduleRefused(f"indexing a {type(container).__name__} is not allowed")
        return container[self.run(node.slice, scope)]

    def _Slice(self, node: ast.Slice, scope: Mapping[str, Any]) -> Any:
        parts = [None if p is None else self.run(p, scope) for p in (node.lower, node.upper, node.step)]
        return slice(*parts)

    def _JoinedStr(self, node: ast.JoinedStr, scope: Mapping[str, Any]) -> Any:
        return "".join(str(self.run(v, scope)) for v in node.values)

    def _FormattedValue(self, node: ast.FormattedValue, scope: Mapping[str, Any]) -> Any:
        value = self.run(node.value, scope)
        if node.conversion == ord("r"):
            value = repr(value)
        elif node.conversion == ord("s"):
            value = str(value)
        spec = "" if node.format_spec is None else self.run(node.format_spec, scope)
        if len(spec) > 20 or _spec_width(spec) > MAX_FORMAT_WIDTH:
            raise ScheduleRefused(f"format spec '{spec}' is too large (widths up to {MAX_FORMAT_WIDTH})")
        return format(value, spec)

    def _Lambda(self, node: ast.Lambda, scope: Mapping[str, Any]) -> Any:
        args = node.args
        if args.vararg or args.kwarg or args.kwonlyargs or args.defaults or args.posonlyargs:
            raise ScheduleRefused("a schedule lambda takes plain arguments only, as in 'lambda img: ...'")
        return Lambda(tuple(a.arg for a in args.args), node.body, dict(scope), self)

    def _Attribute(self, node: ast.Attribute, scope: Mapping[str, Any]) -> Any:
        owner = self.run(node.value, scope)
        if isinstance(owner, _FilterNamespace):
            if node.attr in owner.names:
                return owner.names[node.attr]
            raise ScheduleRefused(f"ImageFilter.{node.attr} is not available")
        if node.attr == "filter" and _is_pil_image(owner):
            return _checked_filter(owner, int(scope.get("frame_pixels", 0)))
        raise ScheduleRefused(f"attribute '.{node.attr}' is not allowed (only ImageFilter.<name> and img.filter(...))")

    def _Call(self, node: ast.Call, scope: Mapping[str, Any]) -> Any:
        func = self.run(node.func, scope)
        if not (callable(func) and _is_allowed_callable(func, scope)):
            raise ScheduleRefused(
                "only math functions, simple built-ins, ImageFilter filters and img.filter may be called"
            )
        if any(isinstance(a, ast.Starred) for a in node.args):
            raise ScheduleRefused("*args are not allowed in a schedule")
        args = [self.run(a, scope) for a in node.args]
        kwargs = {}
        for kw in node.keywords:
            if kw.arg is None:
                raise ScheduleRefused("**kwargs are not allowed in a schedule")
            kwargs[kw.arg] = self.run(kw.value, scope)
        return func(*args, **kwargs)


class _FilterNamespace:
    def __init__(self) -> None:
        self.names = _image_filter_namespace()


def _is_pil_image(value: Any) -> bool:
    from PIL import Image

    return isinstance(value, Image.Image)


def _checked_filter(image: Any, frame_pixels: int) -> Callable[[Any], Any]:
    from PIL import ImageFilter

    def apply(kernel: Any) -> Any:
        if not isinstance(kernel, (ImageFilter.Filter, type)) or (
            isinstance(kernel, type) and not issubclass(kernel, ImageFilter.Filter)
        ):
            raise ScheduleRefused("img.filter() takes an ImageFilter filter")
        if isinstance(kernel, (ImageFilter.RankFilter, ImageFilter.ModeFilter)):
            # Their cost grows with the kernel's area; the plan is checked on a small probe
            # image, so the frame size the run will use counts too.
            pixels = max(image.width * image.height, frame_pixels)
            if pixels * kernel.size**2 > MAX_FILTER_COST:
                largest = max(1, int((MAX_FILTER_COST / pixels) ** 0.5)) // 2 * 2 - 1
                raise ScheduleRefused(
                    f"ImageFilter.{type(kernel).__name__}({kernel.size}) on a frame of {pixels:,} pixels costs "
                    f"too much; use a size of at most {max(largest, 1)} at this frame size, or GaussianBlur"
                )
        return image.filter(kernel)

    apply._videoloop_safe = True  # type: ignore[attr-defined]
    return apply


def _is_allowed_callable(func: Any, scope: Mapping[str, Any]) -> bool:
    if isinstance(func, Lambda) or getattr(func, "_videoloop_safe", False):
        return True
    allowed = scope.get("__allowed_callables__", ())
    return any(func is f for f in allowed)


def _spec_width(spec: str) -> int:
    digits = "".join(ch if ch.isdigit() else " " for ch in spec).split()
    return max((int(d) if len(d) < 10 else 10**9 for d in digits), default=0)


_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?")


def _check_percent_format(template: str | bytes, args: Any) -> None:
    # '%1000000000s' % 'x' builds a gigabyte before any result can be looked at.
    text = template.decode("latin-1") if isinstance(template, bytes) else template
    for width, precision in _PERCENT_SPEC.findall(text):
        for part in (width, precision):
            if part == "*" or (part and (len(part) > 9 or int(part) > MAX_FORMAT_WIDTH)):
                raise ScheduleRefused(f"a % format width or precision above {MAX_FORMAT_WIDTH} is not allowed")
    _weight(args)


def _check_power(base: Any, exponent: Any) -> None:
    whole = isinstance(base, int) and isinstance(exponent, int) and exponent > 0 and abs(base) > 1
    if whole and exponent * max(abs(base).bit_length(), 1) > MAX_INT_BITS:
        raise ScheduleRefused(f"{base} ** {exponent} is too large")


_SEQUENCES = (str, bytes, list, tuple)


def _check_repeat(left: Any, right: Any) -> None:
    for seq, count in ((left, right), (right, left)):
        if not (isinstance(seq, _SEQUENCES) and isinstance(count, int) and count > 0):
            continue
        if len(seq) * count > MAX_SEQUENCE:
            raise ScheduleRefused(f"the result is longer than the limit of {MAX_SEQUENCE:,} items")
        # [[0]*10000]*10000 has 10,000 items but 10**8 to compare, print or hash.
        if _weight(seq) * count > MAX_WEIGHT:
            raise ScheduleRefused(f"the result holds more than {MAX_WEIGHT:,} values in all")
    if isinstance(left, int) and isinstance(right, int) and left.bit_length() + right.bit_length() > MAX_INT_BITS:
        raise ScheduleRefused("number too large")


def _weight(value: Any) -> int:
    """How much work it is to compare, hash or print value; refuses values above the limits.

    The walk stops as soon as the limit is passed, so it costs at most about MAX_WEIGHT steps.
    """
    if value is None or isinstance(value, (float, bool)):
        return 1
    total = 0
    stack = [value]
    while stack:
        item = stack.pop()
        total += 1
        if isinstance(item, int) and not isinstance(item, bool):
            if item.bit_length() > MAX_INT_BITS:
                raise ScheduleRefused(f"number too large (more than {MAX_INT_BITS} bits)")
            total += item.bit_length() // 64
        elif isinstance(item, (str, bytes)):
            if len(item) > MAX_SEQUENCE:
                raise ScheduleRefused(f"the result is longer than the limit of {MAX_SEQUENCE:,} characters")
            total += len(item)
        elif isinstance(item, (list, tuple, set, frozenset, dict)):
            if len(item) > MAX_SEQUENCE:
                raise ScheduleRefused(f"the result is longer than the limit of {MAX_SEQUENCE:,} items")
            stack.extend(item.items() if isinstance(item, dict) else item)
        if total > MAX_WEIGHT:
            raise ScheduleRefused(f"the result holds more than {MAX_WEIGHT:,} values in all")
    return total


class Expression:
    """One parsed schedule expression, ready to be evaluated for any (frame, loop)."""

    def __init__(self, setting: str, source: str) -> None:
        self.setting = setting
        self.source = source
        text = source.strip()
        if len(text) > MAX_SOURCE_CHARS:
            raise VideoLoopError(
                setting, source, f"the expression is longer than {MAX_SOURCE_CHARS} characters", "Shorten it"
            )
        try:
            self.tree = ast.parse(text, mode="eval")
        except SyntaxError as exc:
            # An expression that stops short is reported with offset 0 (CPython's end of input).
            where = f"column {exc.offset}" if exc.offset and exc.offset <= len(text) else "at the end"
            raise VideoLoopError(
                setting,
                source,
                f"is not a valid expression ({exc.msg}, {where})",
                "Check brackets and quotes; examples are in the README",
            ) from None
        nodes = list(ast.walk(self.tree))
        if len(nodes) > MAX_AST_NODES:
            raise VideoLoopError(setting, source, "the expression is too large", "Simplify it")
        for node in nodes:
            if not isinstance(node, _ALLOWED_NODES):
                raise VideoLoopError(
                    setting,
                    source,
                    f"uses {type(node).__name__}, which schedules do not allow",
                    "Use arithmetic, comparisons, 'x if c else y', lists, indexing, math functions",
                )
            name = getattr(node, "id", None) or getattr(node, "attr", None) or getattr(node, "arg", None)
            if isinstance(name, str) and name.startswith("_"):
                raise VideoLoopError(
                    setting, source, f"the name '{name}' is not allowed", "Names starting with '_' are refused"
                )
        self._interpreter = _Interpreter()

    def __call__(self, scope: Mapping[str, Any], *, frame: int | None = None, loop: int | None = None) -> Any:
        try:
            return self._interpreter.evaluate(self.tree.body, scope)
        except ScheduleRefused as exc:
            raise VideoLoopError(
                self.setting, self.source, f"refused: {exc}", "Rewrite the expression", frame=frame, loop=loop
            ) from None
        except VideoLoopError:
            raise
        except MemoryError:
            raise VideoLoopError(
                self.setting, self.source, "refused: it needs more memory than a schedule may use", "Rewrite it",
                frame=frame, loop=loop,
            ) from None  # fmt: skip
        except Exception as exc:  # any arithmetic or type error inside the user's expression
            raise VideoLoopError(
                self.setting,
                self.source,
                f"failed with {type(exc).__name__}: {short(exc, quote=False)}",
                "Fix the expression for this frame and loop",
                frame=frame,
                loop=loop,
            ) from None


def base_scope(frame_count: int, loop_n: int, frame_pixels: int = 0) -> dict[str, Any]:
    """Names every schedule can use; image_i and loop_i are added per evaluation.

    frame_pixels: the working frame size, which bounds the cost of filters in
    image_post_processing_schedule even when checked on a small probe image."""
    scope: dict[str, Any] = {name: getattr(math, name) for name in _MATH_NAMES}
    scope.update(_SAFE_BUILTINS)
    scope["range"] = _bounded_range
    scope["round"] = _bounded_round
    scope["sum"] = _bounded_sum
    scope["ImageFilter"] = _FilterNamespace()
    scope["frame_count"] = frame_count
    scope["loop_n"] = loop_n
    scope["frame_pixels"] = frame_pixels
    callables = [v for v in scope.values() if callable(v) and not isinstance(v, _FilterNamespace)]
    callables += list(scope["ImageFilter"].names.values())
    scope["__allowed_callables__"] = tuple(callables)
    return scope
