"""An optional code policy: refuse code by static rules before any provider runs it. Off by default.

sandbox-core's answer to hostile code is isolation (a fresh gVisor sandbox, no network, limits),
not a blacklist: static rules are easy to get around (``getattr(__builtins__, "ev" + "al")``,
``().__class__.__base__.__subclasses__()``) and refuse harmless code (``import os`` to build a
path). Some operators must still keep RAGFlow's executor behaviour, which rejected code that
imports ``os`` or ``subprocess`` or calls ``eval`` and friends. This plugin does that, *in
addition to* isolation, never instead of it.

It is a cross-cutting plugin (entry point ``code_policy`` in the group ``sandbox_core.plugins``):
a hook wrapper around every provider's ``sandbox_execute`` and ``sandbox_session_execute``. It
checks nothing until the ``SANDBOX_CODE_POLICY`` environment variable names a rule set; ``ragflow``
is the one there is.
Refused code never reaches a provider: the call raises :class:`CodePolicyError`, which lists each
rule that matched and its line. Python is checked on its syntax tree; JavaScript, for which the
standard library has no parser, by patterns. Code that does not parse is let through: it cannot
run either, and the runtime's ``SyntaxError`` says more than the policy could.
"""

from __future__ import annotations

import ast
import os
import re
from collections.abc import Generator, Sequence

import attrs

from sandbox_core.errors import ConfigurationError, SandboxError
from sandbox_core.hookspecs import hookimpl
from sandbox_core.model import ExecutionRequest, ExecutionResult

POLICY_ENV = "SANDBOX_CODE_POLICY"


@attrs.frozen
class Violation:
    """One rule the code broke, and where (line 1 is the first)."""

    rule: str
    line: int

    def __str__(self) -> str:
        return f"line {self.line}: {self.rule}"


class CodePolicyError(SandboxError, ValueError):
    """The code policy refused the code; nothing was run."""

    def __init__(self, policy: str, violations: Sequence[Violation]) -> None:
        self.policy = policy
        self.violations = tuple(violations)
        listed = "; ".join(str(v) for v in self.violations)
        super().__init__(
            f"code refused by the {policy!r} code policy ({POLICY_ENV}): {listed}; "
            "sandboxes isolate code, so the operator chose to keep static checks as well"
        )


@attrs.frozen
class RuleSet:
    """What a policy refuses.

    :param modules: modules that may not be imported (a submodule counts as its parent's).
    :param calls: names that may not be called (``eval(...)``), whatever they are bound to.
    :param attributes: attributes that may not be read (the usual routes out of a namespace).
    :param javascript: ``(pattern, rule)`` pairs searched in JavaScript source.
    """

    modules: frozenset[str]
    calls: frozenset[str]
    attributes: frozenset[str]
    javascript: tuple[tuple[re.Pattern[str], str], ...]


RAGFLOW = RuleSet(
    modules=frozenset({
        "os", "subprocess", "sys", "shutil", "socket", "ctypes", "pickle", "multiprocessing",
        "threading", "builtins", "importlib", "http.client", "ftplib", "telnetlib",
    }),
    calls=frozenset({
        "eval", "exec", "compile", "__import__", "open", "input", "globals", "locals", "vars",
        "getattr", "setattr", "delattr", "breakpoint",
    }),
    attributes=frozenset({"__builtins__", "__globals__", "__subclasses__", "__bases__", "__base__", "__mro__", "__code__"}),
    javascript=tuple(
        (re.compile(pattern), rule)
        for pattern, rule in (
            (
                r"""(?:require\s*\(|\bfrom\s+|\bimport\s*\(?)\s*['"`]"""
                r"""(?:node:)?(child_process|fs|worker_threads|vm|net|dgram|cluster)['"`]""",
                "module {0}",
            ),
            (r"\beval\s*\(", "call eval"),
            (r"\bFunction\s*\(", "call Function"),
            (r"\bprocess\s*\.\s*binding\s*\(", "call process.binding"),
        )
    ),
)

RULE_SETS = {"ragflow": RAGFLOW}
"""The policies ``SANDBOX_CODE_POLICY`` may name."""


def check_python(source: str, rules: RuleSet) -> list[Violation]:
    """The rules ``source`` breaks (none when it does not parse: it cannot run either)."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return []
    found: list[Violation] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [Violation(f"import {a.name}", node.lineno) for a in node.names if _denied_module(a.name, rules)]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if _denied_module(node.module, rules):
                found.append(Violation(f"import from {node.module}", node.lineno))
            else:
                found += [
                    Violation(f"import {node.module}.{a.name}", node.lineno)
                    for a in node.names if _denied_module(f"{node.module}.{a.name}", rules)
                ]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in rules.calls:
            found.append(Violation(f"call {node.func.id}()", node.lineno))
        elif isinstance(node, ast.Attribute) and node.attr in rules.attributes:
            found.append(Violation(f"attribute {node.attr}", node.lineno))
        elif isinstance(node, ast.Name) and node.id in rules.attributes:
            found.append(Violation(f"name {node.id}", node.lineno))
    return sorted(set(found), key=lambda v: (v.line, v.rule))


def check_javascript(source: str, rules: RuleSet) -> list[Violation]:
    """The patterns ``source`` matches, each with its line."""
    found = []
    for pattern, rule in rules.javascript:
        for match in pattern.finditer(source):
            found.append(Violation(rule.format(*match.groups()), source.count("\n", 0, match.start()) + 1))
    return sorted(found, key=lambda v: (v.line, v.rule))


def check(code: str, language: str, rules: RuleSet) -> list[Violation]:
    """The rules ``code`` in ``language`` (``python`` or ``javascript``) breaks."""
    return check_python(code, rules) if language == "python" else check_javascript(code, rules)


def _denied_module(name: str, rules: RuleSet) -> bool:
    parts = name.split(".")
    return any(".".join(parts[:end]) in rules.modules for end in range(1, len(parts) + 1))


class CodePolicy:
    """Hook wrapper that refuses code breaking the policy ``SANDBOX_CODE_POLICY`` names (see module doc).

    :param policy: the rule set's name; None reads ``SANDBOX_CODE_POLICY`` on every execution,
        so an operator switches it on or off without touching code ("", "off" or "none": off).
        An unknown name raises :class:`~sandbox_core.errors.ConfigurationError` on execution.
    """

    def __init__(self, policy: str | None = None) -> None:
        self.policy = policy

    def rules(self) -> tuple[str, RuleSet] | None:
        """The active policy's name and rules, or None when the policy is off."""
        name = (self.policy if self.policy is not None else os.environ.get(POLICY_ENV, "")).strip().lower()
        if name in ("", "off", "none"):
            return None
        try:
            return name, RULE_SETS[name]
        except KeyError:
            # Fail closed: the operator meant some policy, so running code unchecked would be wrong.
            raise ConfigurationError(
                f"{POLICY_ENV}={name!r} names no code policy: choose one of: {', '.join(RULE_SETS)}, or off"
            ) from None

    @hookimpl(wrapper=True)
    def sandbox_execute(self, request: ExecutionRequest) -> Generator[None, ExecutionResult, ExecutionResult]:
        self.enforce(request)
        return (yield)

    @hookimpl(wrapper=True)
    def sandbox_session_execute(self, request: ExecutionRequest) -> Generator[None, ExecutionResult, ExecutionResult]:
        self.enforce(request)
        return (yield)

    def enforce(self, request: ExecutionRequest) -> None:
        """Raise :class:`CodePolicyError` when the active policy refuses ``request``'s code."""
        active = self.rules()
        if active is not None:
            name, rules = active
            violations = check(request.code, request.language, rules)
            if violations:
                raise CodePolicyError(name, violations)
