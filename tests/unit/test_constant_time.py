"""Secrets are compared in constant time (``hmac.compare_digest``), never with ``==``: an ordinary
comparison stops at the first differing byte, and its timing tells an attacker how much of a guess
was right.

A static check over the source: an equality between a value named like a secret (token, secret,
password, signature, API key, credential) and anything but a literal fails. Comparing SHA-256 digests
of keys (``key_hash == …``, also in SQL look-ups) is fine and not flagged: a key is 256 random bits,
and learning a prefix of its digest tells nothing about the key.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SECRET_NAME = re.compile(r"(token|secret|password|signature|api_?key|credential|whsec)", re.IGNORECASE)
NOT_A_SECRET = re.compile(r"(hash|digest|_id$|^id$|name|kind|count|prefix|scheme|type|url|path|expir|length|header)",
                          re.IGNORECASE)


def _name(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get_secret_value":
        return _name(node.func.value)
    if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, str):
        return node.slice.value
    return None


def _secretish(node: ast.AST) -> bool:
    name = _name(node)
    return bool(name and SECRET_NAME.search(name) and not NOT_A_SECRET.search(name))


def plain_secret_comparisons(source: str, filename: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if not isinstance(node, ast.Compare):
            continue
        operands = [node.left, *node.comparators]
        for op, left, right in zip(node.ops, operands, operands[1:]):
            if not isinstance(op, ast.Eq | ast.NotEq):
                continue
            if isinstance(left, ast.Constant) or isinstance(right, ast.Constant):
                continue
            if _secretish(left) or _secretish(right):
                found.append(f"{filename}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_no_secret_is_compared_with_equals_anywhere_in_the_services():
    found = []
    for path in sorted([*ROOT.glob("services/**/*.py"), *ROOT.glob("shared/**/*.py")]):
        found += plain_secret_comparisons(path.read_text(), str(path.relative_to(ROOT)))
    assert found == [], "compare secrets with hmac.compare_digest:\n" + "\n".join(found)


def test_the_check_catches_a_plain_comparison_and_passes_the_constant_time_one():
    bad = "def ok(token, expected_token):\n    return token == expected_token\n"
    good = "import hmac\ndef ok(token, expected_token):\n    return hmac.compare_digest(token, expected_token)\n"
    hashed = "def find(Key, presented_hash):\n    return Key.key_hash == presented_hash\n"
    assert len(plain_secret_comparisons(bad, "bad.py")) == 1
    assert plain_secret_comparisons(good, "good.py") == []
    assert plain_secret_comparisons(hashed, "hashed.py") == []
    assert len(plain_secret_comparisons("x = settings.service_token.get_secret_value() != sent\n", "s.py")) == 1
