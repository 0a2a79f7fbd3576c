"""Arithmetic over covariates for ``I(...)``, ``log(...)``, ``exp(...)``, ``sqrt(...)``, ``scale(...)``
(SPEC 1): a small recursive-descent parser into tuples and a numpy evaluator. Nothing typed or
loaded by a user is ever handed to Python's ``eval``: the only operations are the ones below.

Grammar (inside the parentheses of one of those functions)::

    expr  := term (("+" | "-") term)*
    term  := unary (("*" | "/") unary)*
    unary := ("+" | "-")* power
    power := atom ["**" unary]                 # right-associative, binds tighter than unary minus
    atom  := NUMBER | "pi" | NAME | FUNC "(" expr ")" | "(" expr ")"      FUNC in log, exp, sqrt

Nodes: ``("num", x)``, ``("var", name)``, ``("neg", a)``, ``("bin", op, a, b)``, ``("call", fn, a)``.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from lmmvae.errors import DesignError

#: element-wise functions, also under numpy's names as patsy formulas write them (``np.log(age)``)
FUNCTIONS = {"log": np.log, "exp": np.exp, "sqrt": np.sqrt}
ALIASES = {f"{prefix}.{fn}": fn for fn in FUNCTIONS for prefix in ("np", "numpy")} | {fn: fn for fn in FUNCTIONS}
#: most operators and operands in one expression (keeps parse and evaluation recursion shallow)
MAX_NODES = 200
_PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2, "**": 4}


class ExpressionParser:
    """Parses one covariate expression from a :class:`lmmvae.model.design.formula._Parser`'s tokens."""

    def __init__(self, parser):
        self.p = parser
        self.nodes = 0

    def node(self, *parts) -> tuple:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            self.p.error(f"an expression of more than {MAX_NODES} operations")
        return parts

    def expr(self) -> tuple:
        value = self.term()
        while self.p.peek().kind == "op" and self.p.peek().text in ("+", "-"):
            value = self.node("bin", self.p.next().text, value, self.term())
        return value

    def term(self) -> tuple:
        value = self.unary()
        while self.p.peek().kind == "op" and self.p.peek().text in ("*", "/"):
            value = self.node("bin", self.p.next().text, value, self.unary())
        return value

    def unary(self) -> tuple:
        negative = False
        while True:  # a loop, not recursion: "- - - ... x" cannot exhaust the stack
            if self.p.accept("-"):
                negative = not negative
            elif not self.p.accept("+"):
                break
        value = self.power()
        return self.node("neg", value) if negative else value

    def power(self) -> tuple:
        base = self.atom()
        if self.p.accept("**"):
            return self.node("bin", "**", base, self.unary())
        return base

    def atom(self) -> tuple:
        tok = self.p.next()
        if tok.kind == "number":
            return self.node("num", float(tok.text))
        if tok.kind == "op" and tok.text == "(":
            value = self.expr()
            self.close(tok, "a parenthesised expression")
            return value
        if tok.kind == "name":
            if tok.text == "pi":
                return self.node("num", math.pi)
            if tok.text in ALIASES and self.p.accept("("):
                value = self.node("call", ALIASES[tok.text], self.expr())
                self.close(tok, f"{tok.text}(")
                return value
            return self.node("var", tok.text)
        what = "end of formula" if tok.kind == "end" else repr(tok.text)
        self.p.error(f"expected a covariate, a number or '(' in an expression, found {what}", tok)

    def close(self, opened, what: str) -> None:
        if self.p.peek().kind == "end":
            self.p.error(f"unbalanced parenthesis: '(' at position {opened.pos} is never closed", locate=False)
        self.p.expect(")", f"to close {what}")


def inputs(node: tuple) -> tuple[str, ...]:
    """The covariates an expression reads, in order of first appearance."""
    out: list[str] = []
    stack = [node]
    while stack:
        n = stack.pop()
        if n[0] == "var":
            if n[1] not in out:
                out.append(n[1])
        else:
            stack.extend(reversed([c for c in n[1:] if isinstance(c, tuple)]))
    return tuple(out)


def text(node: tuple, parent: int = 0) -> str:
    """Canonical text of an expression (patsy's spacing), for error messages."""
    kind = node[0]
    if kind == "num":
        return "pi" if node[1] == math.pi else f"{node[1]:g}"
    if kind == "var":
        return node[1]
    if kind == "call":
        return f"{node[1]}({text(node[2])})"
    if kind == "neg":
        out = f"-{text(node[1], 3)}"
        return f"({out})" if parent > 3 else out
    prec = _PRECEDENCE[node[1]]
    left = text(node[2], prec + (node[1] == "**"))
    right = text(node[3], prec + (node[1] != "**"))
    out = f"{left} {node[1]} {right}"
    return f"({out})" if prec < parent else out


def evaluate(node: tuple, read: Callable[[str], np.ndarray], where: str) -> np.ndarray:
    """Values ``[N]`` of ``node``; ``read(name)`` gives a covariate's float64 values ``[N]``.

    ``log`` of a value ``<= 0``, ``sqrt`` of a negative one, and any non-finite result (a division
    by zero, an overflow) are one-line :class:`DesignError` s naming the expression and the row.
    """
    kind = node[0]
    if kind == "num":
        return np.asarray(node[1], dtype=np.float64)
    if kind == "var":
        return read(node[1])
    if kind == "neg":
        return -evaluate(node[1], read, where)
    if kind == "call":
        arg = evaluate(node[2], read, where)
        bad = (arg <= 0) if node[1] == "log" else (arg < 0) if node[1] == "sqrt" else None
        if bad is not None and np.any(bad):
            need = "positive" if node[1] == "log" else "non-negative"
            _raise_at(np.broadcast_to(bad, np.shape(arg)), arg, f"{node[1]}() needs {need} values",
                      node[2], where)
        with np.errstate(over="ignore"):
            out = FUNCTIONS[node[1]](arg)
    else:
        a, b = evaluate(node[2], read, where), evaluate(node[3], read, where)
        with np.errstate(all="ignore"):
            out = {"+": np.add, "-": np.subtract, "*": np.multiply, "/": np.divide, "**": np.power}[node[1]](a, b)
    if not np.all(np.isfinite(out)):
        _raise_at(~np.isfinite(np.atleast_1d(out)), np.atleast_1d(out), "a division by zero, an overflow or "
                  "a fractional power of a negative number", node, where)
    return out


def _raise_at(bad: np.ndarray, values: np.ndarray, problem: str, node: tuple, where: str):
    row = int(np.flatnonzero(np.atleast_1d(bad))[0])
    value = float(np.atleast_1d(values)[row])
    names = ", ".join(repr(n) for n in inputs(node)) or "none"
    raise DesignError(f"{where}: {text(node)} is {value:g} at row {row} (covariate {names}): {problem}")
