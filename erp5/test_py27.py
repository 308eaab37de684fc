# -*- coding: utf-8 -*-
"""The core and the External Method must load under Python 2.7 (ERP5 on Zope 2/4, Python 2)
as well as Python 3. No Python 2 runs here, so this is a static check: each file is parsed
with lib2to3's Python 2 grammar where the interpreter still has lib2to3 (it parses the print
statement, exec and backticks; it does not reject every Python 3 form), and its Python 3
syntax tree is searched for the forms Python 2.7 cannot parse or run."""

import ast
import os
import unittest
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
FILES = ["sync_gateway_receiver.py", os.path.join("extension", "SyncGatewayReceiver.py")]

# Python 3 only: modules that do not exist in 2.7 (imports guarded by try/except ImportError
# are allowed).
PY3_MODULES = {"compression", "pathlib", "typing", "dataclasses", "enum", "asyncio", "secrets"}


def py3_only(tree):
    """The Python-3-only constructs of a module: (line, what)."""
    found = []
    guarded = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(
                isinstance(h.type, ast.Name) and h.type.id == "ImportError" for h in node.handlers):
            for sub in node.body:
                for n in ast.walk(sub):
                    guarded.add(id(n))
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.JoinedStr):
            found.append((line, "f-string"))
        elif isinstance(node, ast.Nonlocal):
            found.append((line, "nonlocal"))
        elif isinstance(node, (ast.AsyncFunctionDef, ast.AsyncFor, ast.AsyncWith, ast.Await)):
            found.append((line, "async"))
        elif isinstance(node, ast.YieldFrom):
            found.append((line, "yield from"))
        elif isinstance(node, ast.NamedExpr):
            found.append((line, ":="))
        elif isinstance(node, ast.AnnAssign):
            found.append((line, "variable annotation"))
        elif isinstance(node, ast.MatMult):
            found.append((line, "@ operator"))
        elif isinstance(node, ast.Starred) and not isinstance(getattr(node, "ctx", None), ast.Load):
            found.append((line, "starred assignment"))
        elif isinstance(node, ast.Raise) and node.cause is not None:
            found.append((line, "raise ... from"))
        elif isinstance(node, (ast.FunctionDef, ast.Lambda)):
            a = node.args
            if a.kwonlyargs:
                found.append((line, "keyword-only argument"))
            if getattr(a, "posonlyargs", None):
                found.append((line, "positional-only argument"))
            if isinstance(node, ast.FunctionDef) and (node.returns is not None or any(
                    x.annotation is not None for x in a.args + a.kwonlyargs)):
                found.append((line, "annotation"))
        elif isinstance(node, ast.Call):
            f = node.func
            if isinstance(f, ast.Name) and f.id == "super" and not node.args:
                found.append((line, "super() without arguments"))
            if isinstance(f, ast.Name) and f.id == "print" and node.keywords:
                found.append((line, "print(..., keyword=) without print_function"))
        elif isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in guarded:
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [n.name for n in node.names]
            for name in names:
                if name.split(".")[0] in PY3_MODULES:
                    found.append((line, "import of %s (Python 3 only)" % name))
        elif isinstance(node, ast.Constant) and isinstance(node.value, bytes) and node.value and \
                any(b > 127 for b in node.value):
            found.append((line, "non-ASCII bytes literal"))
    return found


class TestPython27(unittest.TestCase):
    def read(self, name):
        with open(os.path.join(HERE, name)) as f:
            return f.read()

    def test_no_python3_only_syntax(self):
        for name in FILES:
            with self.subTest(file=name):
                self.assertEqual(py3_only(ast.parse(self.read(name))), [])

    def test_checker_catches_python3_forms(self):
        src = ("def f(a, *, b): nonlocal_x = f'{a}'\n"
               "def g():\n    x = 1\n    def h():\n        nonlocal x\n    raise ValueError() from None\n"
               "from pathlib import Path\n")
        kinds = set(k for _, k in py3_only(ast.parse(src)))
        self.assertTrue({"keyword-only argument", "f-string", "nonlocal", "raise ... from",
                         "import of pathlib (Python 3 only)"} <= kinds, kinds)

    def test_python2_grammar(self):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                from lib2to3 import pygram, pytree
                from lib2to3.pgen2 import driver
            except ImportError:  # Python 3.13 dropped lib2to3: the AST check above remains
                self.skipTest("lib2to3 is not in this interpreter")
        d = driver.Driver(pygram.python_grammar, convert=pytree.convert)  # with the print statement
        for name in FILES:
            with self.subTest(file=name):
                d.parse_string(self.read(name) + "\n")
        with self.assertRaises(Exception):
            d.parse_string("print('a', end='')\nx := 1\n")


if __name__ == "__main__":
    unittest.main()
