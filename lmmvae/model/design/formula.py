"""Parsing lme4-style design formulas into terms (SPEC 1).

Grammar (whitespace is free)::

    formula  := ["~"] sum
    sum      := ["-"] summand (("+" | "-") summand)*
    summand  := "0" | "1" | "(" sum "|" NAME ")" | product
    product  := chunk ("*" chunk)*          # a*b  ->  a + b + a:b
    chunk    := factor (":" factor)*        # a:b  ->  one interaction term
    factor   := NAME | FUNC "(" NAME ("," arg)* ")"      FUNC in poly, fourier, rff, ns
              | "C(" NAME ["," "Treatment(" [reference "="] LEVEL ")"] ")"   LEVEL a string or number
              | TRANSFORM "(" expression ")"    TRANSFORM in I, scale, log, exp, sqrt (np.log, ...)
    arg      := [KEY "="] number-expression  (numbers, pi, + - * / and parentheses)

``(f || g)`` is lme4's uncorrelated form: ``(1 | g) + (0 + t | g)`` for every term ``t`` of ``f``.
``- 1`` and ``0`` remove the intercept; ``- <term>`` for any other term is not supported. Numeric
arguments and covariate expressions (:mod:`lmmvae.model.design.expressions`) are evaluated by small
recursive-descent evaluators, never by ``eval``. A left-hand side (``y ~ x``) is an error: the
responses of a design are the data's features.

The parse is pure syntax: a bare name ``v`` is a factor with basis ``"linear"`` here; the fitted
design resolves it to ``"categorical"`` when the covariate turns out to be categorical.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from itertools import combinations

from lmmvae.errors import DesignError
from lmmvae.model.design.expressions import ALIASES, ExpressionParser, inputs
from lmmvae.model.design.terms import Factor, ParsedFormula, RandomTerm, Term

#: function name -> (basis, positional parameter names after the covariate, required, integer-valued)
_FUNCTIONS = {
    "C": ("categorical", (), (), ()),
    "poly": ("poly", ("degree",), ("degree",), ("degree",)),
    "fourier": ("fourier", ("n_frequencies", "period"), ("n_frequencies", "period"), ("n_frequencies",)),
    "rff": ("rff", ("n_features", "lengthscale", "seed"), ("n_features", "lengthscale"), ("n_features", "seed")),
    "ns": ("ns", ("df",), ("df",), ("df",)),
}
#: functions of a covariate expression: a continuous column, standardised (``I``, ``scale``) after
#: the element-wise transform (``log``, ``exp``, ``sqrt``, also spelt ``np.log`` ...)
_TRANSFORMS = {"I", "scale"} | set(ALIASES)
_DEFAULTS = {"rff": {"seed": 0}}

#: limits that turn pathological formulas into one-line errors instead of a RecursionError or an
#: out-of-memory kill: formula length, parenthesis depth, factors of one ``a*b*...`` product
#: (it expands into 2^k - 1 terms) and the largest size argument of each basis
MAX_FORMULA_LENGTH = 10_000
MAX_DEPTH = 32
MAX_PRODUCT = 10
MAX_ARG = {"degree": 20, "n_frequencies": 10_000, "n_features": 10_000, "df": 50}


# -- tokens -----------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"\s*(?:(?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)|(?P<name>[A-Za-z_][A-Za-z0-9_.]*)"
    r"|(?P<string>'(?:[^'\\\n]|\\.)*'|\"(?:[^\"\\\n]|\\.)*\")"
    r"|(?P<op>\|\||\*\*|[~+\-*/:|(),=]))"
)


@dataclass(frozen=True)
class _Token:
    kind: str  # number | name | op | end
    text: str
    pos: int


def _tokenize(formula: str) -> list[_Token]:
    if len(formula) > MAX_FORMULA_LENGTH:
        raise DesignError(f"design formula of {len(formula)} characters; at most {MAX_FORMULA_LENGTH}")
    depth, deepest = 0, 0
    for ch in formula:
        depth += (ch == "(") - (ch == ")")
        deepest = max(deepest, depth)
    if deepest > MAX_DEPTH:
        raise DesignError(f"design {formula[:60]!r}...: parentheses nested {deepest} deep; at most {MAX_DEPTH}")
    tokens, pos = [], 0
    while pos < len(formula):
        if formula[pos:].strip() == "":
            break
        m = _TOKEN.match(formula, pos)
        if m is None or m.end() == pos:
            at = len(formula[pos:]) - len(formula[pos:].lstrip()) + pos
            raise DesignError(f"design {formula!r}: unexpected character {formula[at]!r} at position {at}")
        kind = m.lastgroup
        tokens.append(_Token(kind, m.group(kind), m.start(kind)))
        pos = m.end()
    tokens.append(_Token("end", "", len(formula)))
    return tokens


# -- parser -----------------------------------------------------------------------------------


class _Parser:
    def __init__(self, formula: str):
        self.formula = formula
        self.tokens = _tokenize(formula)
        self.i = 0

    # helpers
    def error(self, message: str, token: _Token | None = None, locate: bool = True):
        token = token or self.peek()
        where = "" if not locate else " at the end" if token.kind == "end" else f" at position {token.pos}"
        raise DesignError(f"design {self.formula!r}: {message}{where}")

    def peek(self, ahead: int = 0) -> _Token:
        return self.tokens[min(self.i + ahead, len(self.tokens) - 1)]

    def next(self) -> _Token:
        tok = self.peek()
        self.i += 1
        return tok

    def accept(self, text: str) -> _Token | None:
        if self.peek().kind == "op" and self.peek().text == text:
            return self.next()
        return None

    def expect(self, text: str, context: str) -> _Token:
        tok = self.accept(text)
        if tok is None:
            found = self.peek()
            what = "end of formula" if found.kind == "end" else repr(found.text)
            self.error(f"expected {text!r} {context}, found {what}", found)
        return tok

    # grammar
    def parse(self) -> ParsedFormula:
        if self.peek().kind == "end":
            self.error("empty formula", locate=False)
        tilde = next((t for t in self.tokens if t.kind == "op" and t.text == "~"), None)
        if tilde is not None and tilde is not self.tokens[0]:
            rhs = self.formula[tilde.pos + 1:].strip()
            raise DesignError(f"design {self.formula!r}: a design has no response (the data's features are the "
                              f"responses); write '~ {rhs}'")
        self.accept("~")
        terms, intercept = self.sum(allow_random=True)
        tok = self.peek()
        if tok.kind != "end":
            if tok.text == ")":
                self.error("unbalanced parenthesis: ')' without a matching '('", tok)
            self.error(f"unexpected {tok.text!r}", tok)
        return ParsedFormula(_assemble(terms, intercept))

    def sum(self, allow_random: bool):
        """Returns (terms in order, intercept flag)."""
        terms: list = []
        intercept = True
        sign = "-" if self.accept("-") else "+"
        while True:
            start = self.peek()
            if start.kind == "end" or (start.kind == "op" and start.text in "+-|)"):
                if start.kind == "end":
                    self.error("empty term at the end of the formula", start, locate=False)
                self.error(f"empty term before {start.text!r}", start)
            if start.kind == "number" and start.text in ("0", "1"):
                self.next()
                if sign == "-":
                    if start.text == "0":
                        self.error("'- 0' is not meaningful", start)
                    intercept = False
                else:
                    intercept = start.text == "1"
            elif start.kind == "op" and start.text == "(":
                if not allow_random:
                    self.error("nested random-effect terms are not supported", start)
                if sign == "-":
                    self.error("removing a term with '-' is only supported for '- 1'", start)
                terms.extend(self.random_term())
            else:
                product_terms = self.product()
                if sign == "-":
                    self.error("removing a term with '-' is only supported for '- 1'", start)
                terms.extend(product_terms)
            op = self.peek()
            if op.kind == "op" and op.text in "+-":
                self.next()
                sign = op.text
                continue
            return terms, intercept

    def random_term(self) -> list[RandomTerm]:
        open_tok = self.next()  # "("
        inner, intercept = self.sum(allow_random=False)
        bar = self.peek()
        uncorrelated = bar.kind == "op" and bar.text == "||"
        if not (self.accept("|") or self.accept("||")):
            if bar.kind == "end":
                self.error(f"unbalanced parenthesis: '(' at position {open_tok.pos} is never closed",
                           bar, locate=False)
            self.error("expected '|' in a random-effect term '(f | group)'", bar)
        group = self.next()
        if group.kind != "name":
            self.error("expected the name of a grouping covariate after '|'", group)
        if self.peek().kind == "end":
            self.error(f"unbalanced parenthesis: '(' at position {open_tok.pos} is never closed",
                       self.peek(), locate=False)
        self.expect(")", f"to close the random-effect term opened at position {open_tok.pos}")
        if not uncorrelated:
            return [RandomTerm(_assemble(inner, intercept), group.text)]
        # lme4: (1 + a + b || g) = (1 | g) + (0 + a | g) + (0 + b | g), each its own variance
        return ([RandomTerm((Term(),), group.text)] if intercept else []) + [
            RandomTerm((t,), group.text) for t in _assemble(inner, False)]

    def product(self) -> list[Term]:
        chunks = [self.chunk()]
        while self.accept("*"):
            if len(chunks) == MAX_PRODUCT:
                self.error(f"a product a*b*... of more than {MAX_PRODUCT} factors (it expands into "
                           f"2^k - 1 terms); write the interactions you need with ':'")
            chunks.append(self.chunk())
        if len(chunks) == 1:
            return [Term(tuple(chunks[0]))]
        expanded = []
        for size in range(1, len(chunks) + 1):
            for combo in combinations(chunks, size):
                expanded.append(Term(tuple(f for chunk in combo for f in chunk)))
        return expanded

    def chunk(self) -> list[Factor]:
        factors = [self.factor()]
        while self.accept(":"):
            factors.append(self.factor())
        return factors

    def factor(self) -> Factor:
        tok = self.next()
        if tok.kind != "name":
            what = "end of formula" if tok.kind == "end" else repr(tok.text)
            if tok.kind == "number":
                self.error(f"a number ({tok.text}) can only stand alone as 0 or 1, not in a product", tok)
            self.error(f"expected a covariate name or function, found {what}", tok)
        if not self.accept("("):
            return Factor(tok.text, "linear", {}, tok.text)
        if tok.text in _TRANSFORMS:
            return self.transform(tok)
        if tok.text == "C":
            return self.categorical(tok)
        if tok.text not in _FUNCTIONS:
            known = sorted(set(_FUNCTIONS) | {"I", "scale", "log", "exp", "sqrt"}, key=str.lower)
            self.error(f"unknown function {tok.text!r} (known: {', '.join(known)})", tok)
        return self.call(tok)

    def transform(self, fn: _Token) -> Factor:
        """``I(expr)``, ``scale(expr)``, ``log(expr)`` ...: one standardised column of an expression
        over continuous, time or binary covariates, named as patsy names it."""
        start = self.i - 2
        parser = ExpressionParser(self)
        node = parser.expr()
        parser.close(self.tokens[start + 1], f"{fn.text}(")
        if fn.text in ALIASES:
            node = ("call", ALIASES[fn.text], node)
        names = inputs(node)
        if not names:
            self.error(f"{fn.text}() needs a covariate", fn)
        return Factor(names[0], "transform", {"expr": node, "inputs": names}, _spaced(self.tokens[start:self.i]))

    def categorical(self, fn: _Token) -> Factor:
        """``C(v)`` and ``C(v, Treatment('level'))`` / ``Treatment(reference='level')``: the
        reference level (dropped when the rest of the term is in the model) chosen by value."""
        start = self.i - 2
        cov = self.next()
        if cov.kind != "name":
            self.error("C() needs a covariate name as its first argument", cov)
        args = {}
        if self.accept(","):
            coding = self.next()
            if coding.text != "Treatment" or not self.accept("("):
                self.error("C(v, ...) accepts only Treatment('level') (treatment coding with a chosen "
                           "reference level)", coding)
            key = self.peek()
            if key.kind == "name" and self.peek(1).text == "=":
                if key.text != "reference":
                    self.error(f"Treatment() has no argument {key.text!r} (valid: reference)", key)
                self.i += 2
            level = self.next()
            if level.kind not in ("string", "number"):
                self.error("Treatment() needs a reference level, a quoted string or a number", level)
            args["reference"] = _unquote(level.text) if level.kind == "string" else float(level.text)
            self.expect(")", "to close Treatment(")
        if self.peek().kind == "end":
            self.error(f"unbalanced parenthesis: '(' of C() at position {fn.pos} is never closed", locate=False)
        self.expect(")", "to close C(")
        label = _spaced(self.tokens[start:self.i]) if args else f"C({cov.text})"
        return Factor(cov.text, "categorical", args, label)

    def call(self, fn: _Token) -> Factor:
        basis, positional, required, integral = _FUNCTIONS[fn.text]
        cov = self.next()
        if cov.kind != "name":
            self.error(f"{fn.text}() needs a covariate name as its first argument", cov)
        args: dict = dict(_DEFAULTS.get(basis, {}))
        sources: dict = {}
        n_positional = 0
        while self.accept(","):
            key_tok = self.peek()
            if key_tok.kind == "name" and self.peek(1).text == "=" and self.peek(1).kind == "op":
                key = key_tok.text
                self.i += 2
                if key not in positional:
                    self.error(f"{fn.text}() has no argument {key!r} (valid: {', '.join(positional)})", key_tok)
            else:
                if n_positional >= len(positional) or any(k in sources for k in positional[n_positional:]):
                    self.error(f"too many positional arguments to {fn.text}()", key_tok)
                key = positional[n_positional]
                n_positional += 1
            if key in sources:
                self.error(f"argument {key!r} of {fn.text}() given twice", key_tok)
            start = self.peek().pos
            value = _Arithmetic(self).expr()
            end = self.peek().pos
            sources[key] = re.sub(r"\s+", "", self.formula[start:end])
            args[key] = self.check_arg(fn, key, value, key in integral, key_tok)
        if self.peek().kind == "end":
            self.error(f"unbalanced parenthesis: '(' of {fn.text}() at position {fn.pos} is never closed",
                       locate=False)
        self.expect(")", f"to close {fn.text}(")
        missing = [k for k in required if k not in args]
        if missing:
            self.error(f"{fn.text}({cov.text}, ...) needs {' and '.join(missing)}", fn)
        parts = [cov.text] + [
            (sources[k] if i == 0 else f"{k}={sources[k]}") for i, k in enumerate(positional) if k in sources
        ]
        return Factor(cov.text, basis, args, f"{fn.text}({', '.join(parts)})")

    def check_arg(self, fn: _Token, key: str, value: float, integral: bool, tok: _Token):
        if integral:
            if not float(value).is_integer():
                self.error(f"{fn.text}() argument {key} must be an integer, got {value:g}", tok)
            value = int(value)
            if key == "seed":
                if value < 0:
                    self.error(f"{fn.text}() seed must be >= 0, got {value}", tok)
            elif value < 1:
                self.error(f"{fn.text}() argument {key} must be >= 1, got {value}", tok)
            elif value > MAX_ARG.get(key, value):
                self.error(f"{fn.text}() argument {key} must be <= {MAX_ARG[key]}, got {value}", tok)
            return value
        if not (value > 0 and math.isfinite(value)):
            self.error(f"{fn.text}() argument {key} must be a positive number, got {value:g}", tok)
        return float(value)


class _Arithmetic:
    """Numbers, ``pi``, ``+ - * /`` and parentheses; nothing else (no ``eval``)."""

    def __init__(self, parser: _Parser):
        self.p = parser

    def expr(self) -> float:
        value = self.term()
        while True:
            if self.p.accept("+"):
                value += self.term()
            elif self.p.accept("-"):
                value -= self.term()
            else:
                return value

    def term(self) -> float:
        value = self.unary()
        while True:
            if self.p.accept("*"):
                value *= self.unary()
            elif self.p.accept("/"):
                tok = self.p.peek()
                divisor = self.unary()
                if divisor == 0:
                    self.p.error("division by zero in an argument", tok)
                value /= divisor
            else:
                return value

    def unary(self) -> float:
        sign = 1.0
        while True:  # a loop, not recursion: "- - - ... 1" cannot exhaust the stack
            if self.p.accept("-"):
                sign = -sign
            elif not self.p.accept("+"):
                return sign * self.atom()

    def atom(self) -> float:
        tok = self.p.next()
        if tok.kind == "number":
            return float(tok.text)
        if tok.kind == "name" and tok.text == "pi":
            return math.pi
        if tok.kind == "op" and tok.text == "(":
            value = self.expr()
            if self.p.peek().kind == "end":
                self.p.error(f"unbalanced parenthesis: '(' at position {tok.pos} is never closed", locate=False)
            self.p.expect(")", "to close a parenthesised argument")
            return value
        what = "end of formula" if tok.kind == "end" else repr(tok.text)
        self.p.error(f"expected a number, 'pi' or '(' in an argument, found {what}", tok)


def _unquote(literal: str) -> str:
    """The text of a quoted string token: quotes removed, backslash escapes resolved."""
    return re.sub(r"\\(.)", r"\1", literal[1:-1])


def _spaced(tokens: list[_Token]) -> str:
    """Tokens joined as patsy writes a term: ``I(age ** 2)``, ``C(arm, Treatment('a'))``."""
    out, previous = "", None
    for tok in tokens:
        binary = (tok.kind == "op" and tok.text in ("+", "-", "*", "/", "**") and previous is not None
                  and (previous.kind in ("name", "number", "string") or previous.text == ")"))
        if binary:
            out += f" {tok.text} "
        elif tok.kind == "op" and tok.text == ",":
            out += ", "
        else:
            out += tok.text
        previous = tok
    return out


def _assemble(terms: list, intercept: bool) -> tuple:
    """Intercept first, then terms in order; repeated terms (same factors, any order) dropped."""
    out, seen = ([Term()] if intercept else []), set()
    for term in terms:
        key = ("random", term.name) if isinstance(term, RandomTerm) else term.key
        if key not in seen:
            seen.add(key)
            out.append(term)
    return tuple(out)


def parse_formula(formula: str) -> ParsedFormula:
    """Parse ``formula``; a syntax error is a one-line :class:`DesignError` naming the position."""
    if not isinstance(formula, str):
        raise DesignError(f"a design formula must be a string, got {type(formula).__name__}")
    return _Parser(formula).parse()
