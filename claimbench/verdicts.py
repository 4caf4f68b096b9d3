"""Turn a study's numbers into a verdict by the rule written in the claim's YAML, never in code.

A rule is two boolean expressions over the statistic's named outputs (`estimate`, `ci_lo`,
`ci_hi`, `sd`, `diverged_frac_<arm>`, ... see `claimbench.study`) and the rule's `paper_effect`:
`reproduced_if` is tried first, then `not_reproduced_if`, otherwise the claim is `inconclusive`.
Runs missing -> `not_run`. A comparison with NaN is false, so an undefined number never passes.
The expression language is a tiny, safe subset of Python: numbers, names, arithmetic,
comparisons, and/or/not, and the functions abs, min, max (both ignore NaN), isfinite.
"""

from __future__ import annotations

import ast
import math
import operator

from claimbench.config import ConfigError

VERDICTS = ("reproduced", "not_reproduced", "inconclusive", "out_of_scope", "not_run")  # the order tables list them


def _nanmax(*xs: float) -> float:
    """max ignoring NaN (an undefined seed SD must not hide a fixed tolerance)."""
    vals = [x for x in xs if not (isinstance(x, float) and math.isnan(x))]
    return max(vals) if vals else math.nan


def _nanmin(*xs: float) -> float:
    vals = [x for x in xs if not (isinstance(x, float) and math.isnan(x))]
    return min(vals) if vals else math.nan


def _pow(a: float, b: float) -> float:
    """Float power: an overflow is an ArithmeticError (the rule is false), never a giant integer."""
    return float(a) ** float(b)


FUNCTIONS = {"abs": abs, "min": _nanmin, "max": _nanmax, "isfinite": math.isfinite}
CONSTANTS = {"inf": math.inf, "true": True, "false": False}
_BIN = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
        ast.Pow: _pow}
_CMP = {ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge,
        ast.Eq: operator.eq, ast.NotEq: operator.ne}


MAX_DEPTH = 40  # nesting of the expression tree: a rule is a few comparisons, never a deep tower
MAX_EXPONENT = 64  # `x ** k` only with a number k, |k| <= 64: 9**9**9 would take the machine for hours


def _shown(expr: str) -> str:
    return repr(expr) if len(expr) <= 80 else repr(expr[:77] + "...")


def parse(expr: str) -> ast.Expression:
    """Parse and check an expression (only the allowed node types, bounded depth and exponents); ConfigError
    otherwise."""
    if not isinstance(expr, str):
        raise ConfigError(f"rule expression {expr!r}: not a string")
    try:
        tree = ast.parse(expr, mode="eval")
    except SyntaxError as e:
        raise ConfigError(f"rule expression {_shown(expr)}: not valid ({e.msg})") from None
    except (RecursionError, MemoryError, ValueError) as e:
        raise ConfigError(f"rule expression {_shown(expr)}: not valid ({type(e).__name__})") from None
    stack = [(tree, 0)]
    while stack:  # iterative: a deep tree must not blow the interpreter's stack here either
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ConfigError(f"rule expression {_shown(expr)}: nested more than {MAX_DEPTH} levels deep")
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow) and not _small_number(node.right):
            raise ConfigError(f"rule expression {_shown(expr)}: the exponent of '**' must be a number of at most "
                              f"{MAX_EXPONENT} in size, got '{ast.unparse(node.right)}'")
    for node in ast.walk(tree):
        ok = isinstance(node, (ast.Expression, ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.Not, ast.USub,
                               ast.BinOp, ast.Compare, ast.Name, ast.Load, ast.Constant, ast.Call,
                               *_BIN, *_CMP))
        if isinstance(node, ast.Call) and not (isinstance(node.func, ast.Name) and node.func.id in FUNCTIONS):
            ok = False
        if isinstance(node, ast.Constant) and not isinstance(node.value, (int, float)):
            ok = False
        if not ok:
            what = ast.unparse(node) if isinstance(node, ast.expr) else type(node).__name__
            raise ConfigError(f"rule expression {_shown(expr)}: '{what}' is not allowed "
                              "(numbers, names, + - * / **, comparisons, and/or/not, abs/min/max/isfinite)")
    return tree


def _small_number(node: ast.AST) -> bool:
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        node = node.operand
    return (isinstance(node, ast.Constant) and isinstance(node.value, (int, float))
            and not isinstance(node.value, bool) and abs(node.value) <= MAX_EXPONENT)


def names_in(expr: str) -> set[str]:
    """The variable names an expression reads (function names and constants excluded)."""
    tree = parse(expr)
    funcs = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call)}
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} - funcs - set(CONSTANTS)


def evaluate(expr: str, values: dict) -> bool:
    """Evaluate a checked expression; a missing/None value or an arithmetic error makes it false."""
    env = {**CONSTANTS, **{k: (math.nan if v is None else v) for k, v in values.items()}}

    def ev(node):
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            if node.id not in env:
                raise KeyError(node.id)
            return env[node.id]
        if isinstance(node, ast.BoolOp):
            vals = (bool(ev(v)) for v in node.values)
            return all(vals) if isinstance(node.op, ast.And) else any(vals)
        if isinstance(node, ast.UnaryOp):
            v = ev(node.operand)
            return (not v) if isinstance(node.op, ast.Not) else -v
        if isinstance(node, ast.BinOp):
            return _BIN[type(node.op)](ev(node.left), ev(node.right))
        if isinstance(node, ast.Compare):
            left = ev(node.left)
            for op, comp in zip(node.ops, node.comparators, strict=True):
                right = ev(comp)
                if not _CMP[type(op)](left, right):
                    return False
                left = right
            return True
        if isinstance(node, ast.Call):
            return FUNCTIONS[node.func.id](*(ev(a) for a in node.args))
        raise ConfigError(f"unsupported node {type(node).__name__}")

    try:
        return bool(ev(parse(expr)))
    except (ArithmeticError, TypeError, ValueError):
        return False


def decide(rule: dict, values: dict, profile: str) -> tuple[str, str]:
    """(verdict, why) for a study whose runs all exist."""
    env = {**values, "paper_effect": rule.get("paper_effect", math.nan)}
    from claimbench.tiers import chain

    at = rule.get("cannot_judge_at") or {}
    why_scale = next((at[t] for t in reversed(chain(profile)) if t in at), None)  # a tier: else its base's
    if evaluate(rule["reproduced_if"], env):
        verdict, why = "reproduced", f"{rule['reproduced_if']} holds"
    elif evaluate(rule["not_reproduced_if"], env):
        verdict, why = "not_reproduced", f"{rule['not_reproduced_if']} holds"
    else:
        verdict, why = "inconclusive", "neither rule holds"
    if why_scale:
        return "inconclusive", f"inconclusive at this scale ({profile}): {why_scale}; would be {verdict}: {why}"
    return verdict, why
