"""A developer's fix of a line that breaks the ``conventions`` scenario's rules.

The learning benchmark's simulated developers rewrite some of the rule-breaking lines they
accepted, as a reviewer who knows the conventions would, and crlhf-lsp's retention check
would report each rewrite as a correction (:mod:`crlhf_contract.retention`). The rewrite
changes only the construct that breaks a rule and keeps the rest of the line as it was
typed (quotes, spacing, comments):

==================  ============================================  ==========================
rule                construct                                     rewrite
==================  ============================================  ==========================
``fstring``         ``"%s: %r" % (a, b)``, ``"{}: {!r}".format``  ``f"{a}: {b!r}"``
``pathlib``         ``os.path.join(a, b)``, ``os.path.isdir(p)``  ``Path(a, b)``,
                                                                  ``Path(p).is_dir()``
``logging``         ``print(x)``, ``print(x, file=sys.stderr)``   ``logger.info(x)``,
                                                                  ``logger.warning(x)``
``bare-except``     ``except:``                                   ``except Exception:``
==================  ============================================  ==========================

A line it cannot fix (a type hint needs the types; ``%(name)s``; ``os.path.splitext``;
a statement spread over lines) gets None, as a developer who leaves it for later. The
line is parsed with :mod:`ast` alone (wrapped where a line is no statement on its own,
``elif …:``), and each construct's source segment replaced: ast offsets are UTF-8 bytes.
"""

from __future__ import annotations

import ast
import re
import string

from crlhf_contract.schemas import completion_lines

from crlhf_cli.conventions import breaks

__all__ = ["conforming", "corrections"]

_BARE_EXCEPT = re.compile(r"^(\s*)except\s*:")
_PATH_CALLS = {
    "join": "Path({})",
    "exists": "Path({}).exists()",
    "isdir": "Path({}).is_dir()",
    "isfile": "Path({}).is_file()",
    "islink": "Path({}).is_symlink()",
    "isabs": "Path({}).is_absolute()",
    "basename": "Path({}).name",
    "dirname": "Path({}).parent",
    "abspath": "Path({}).absolute()",
    "realpath": "Path({}).resolve()",
    "expanduser": "Path({}).expanduser()",
    "getsize": "Path({}).stat().st_size",
    "getmtime": "Path({}).stat().st_mtime",
}
_GIVES_PATH = {"join", "dirname", "abspath", "realpath", "expanduser"}
_PATH_NAMES = {"sep": "os.sep", "curdir": "os.curdir", "pardir": "os.pardir"}
_PERCENT = re.compile(r"%([-+ 0#]*)(\d*)(?:\.(\d+))?([sdirfFeEgGxXo%])")


class _Unfixable(Exception):
    """A construct this module cannot rewrite."""


def conforming(line: str) -> str | None:
    """``line`` with every rule-breaking construct rewritten, or None when it breaks no
    rule or one that cannot be fixed on the line alone.

    >>> conforming('        msg = "%s items in %r" % (n, path)  # why')
    '        msg = f"{n} items in {path!r}"  # why'
    >>> conforming("    if os.path.isdir(os.path.join(root, name)):")
    '    if Path(root, name).is_dir():'
    >>> conforming("    except:"), conforming("def f(x):")
    ('    except Exception:', None)
    """
    if not breaks(line):
        return None
    fixed = _BARE_EXCEPT.sub(r"\1except Exception:", line)
    if breaks(fixed):
        try:
            fixed = _rewrite(fixed)
        except _Unfixable:
            return None
    return fixed if not breaks(fixed) else None


def corrections(text: str, head: str = "") -> list[str | None]:
    """Per line of ``completion_lines(text)``, a developer's rewrite of it, or None (it
    keeps the conventions, or cannot be fixed). Line 0 is judged with ``head``, the part
    of it the prompt holds, and its rewrite is the completion's part: a fix that has to
    change ``head`` gives None, as crlhf-lsp sends no correction for an edit that reaches
    into the text before the completion.

    >>> corrections("os.path.join(a, b)\\n    return p", head="    p = ")
    ['Path(a, b)', None]
    >>> corrections(' % n', head='    msg = "%s items"')
    [None]
    """
    out: list[str | None] = []
    for i, line in enumerate(completion_lines(text)):
        fixed = conforming(head + line if i == 0 else line)
        if i == 0 and fixed is not None:
            fixed = fixed[len(head) :] if fixed.startswith(head) and fixed != head else None
        out.append(fixed)
    return out


_WRAPS = (("", ""), ("", " pass"), ("if 1: pass\n", " pass"), ("try: pass\n", " pass"))


def _parse(code: str) -> tuple[ast.AST, int]:
    """(tree, line number of ``code`` in it) of a line that may be no module on its own:
    wrapped in what makes it one, ``elif`` parsed as ``if`` (the same width)."""
    shown = "if  " + code[4:] if code.startswith("elif") else code
    for before, after in _WRAPS:
        try:
            tree = ast.parse(before + shown + after)
        except SyntaxError:
            continue
        return tree, before.count("\n") + 1
    raise _Unfixable("not a statement on one line")


def _rewrite(line: str) -> str:
    indent = line[: len(line) - len(line.lstrip())]
    code = line[len(indent) :]
    tree, lineno = _parse(code)
    src = code.encode()
    top = [n for n in ast.walk(tree) if getattr(n, "lineno", None) == lineno]
    fixer = _Fixer(src)
    # the outermost nodes of the line: statements' direct expressions are enough, as
    # render() recurses into every child
    out = src
    for node in sorted(_outermost(top), key=lambda n: -n.col_offset):
        new = fixer.render(node)
        if new is not None:
            out = out[: node.col_offset] + new + out[node.end_col_offset :]
    return indent + out.decode()


def _outermost(nodes: list[ast.AST]) -> list[ast.expr]:
    exprs = [n for n in nodes if isinstance(n, ast.expr) and n.end_lineno == n.lineno]
    inner = {id(c) for n in exprs for c in ast.walk(n) if c is not n}
    return [n for n in exprs if id(n) not in inner]


class _Fixer:
    """Rewrites one line's expressions, by their source segments."""

    def __init__(self, src: bytes) -> None:
        self.src = src

    def seg(self, node: ast.AST) -> bytes:
        return self.src[node.col_offset : node.end_col_offset]  # type: ignore[attr-defined]

    def text(self, node: ast.AST) -> str:
        """The node's source, its own constructs rewritten."""
        new = self.render(node)
        return (new if new is not None else self.seg(node)).decode()

    def render(self, node: ast.AST) -> bytes | None:
        """The rewritten source of ``node``, or None when nothing in it changes."""
        own = self._own(node)
        if own is not None:
            return own.encode()
        children = [
            c
            for c in ast.iter_child_nodes(node)
            if isinstance(c, ast.expr) and getattr(c, "end_col_offset", None) is not None
        ]
        out, changed = self.seg(node), False
        start = node.col_offset  # type: ignore[attr-defined]
        for c in sorted(children, key=lambda c: -c.col_offset):
            new = self.render(c)
            if new is not None:
                a, b = c.col_offset - start, c.end_col_offset - start
                out, changed = out[:a] + new + out[b:], True
        return out if changed else None

    def _own(self, node: ast.AST) -> str | None:
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod) and _is_str(node.left):
            args = node.right.elts if isinstance(node.right, ast.Tuple) else [node.right]
            return self._percent(node.left, args)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr == "format" and _is_str(node.func.value):
                return self._format(node)
            if _is_os_path(node.func.value):
                return self._path_call(node)
        if isinstance(node, ast.Attribute) and _is_os_path(node.value):
            if node.attr not in _PATH_NAMES:
                raise _Unfixable(f"os.path.{node.attr}")
            return _PATH_NAMES[node.attr]
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "print"
        ):
            return self._print(node)
        return None

    def _literal(self, node: ast.expr) -> tuple[str, str, str]:
        """(prefix, quote, body) of a one-literal string's source."""
        m = re.fullmatch(r"([rRuU]?)('''|\"\"\"|'|\")(.*)\2", self.seg(node).decode(), re.S)
        if m is None:
            raise _Unfixable("implicitly concatenated or bytes literal")
        prefix, quote, body = m.groups()
        return ("r" if prefix in ("r", "R") else ""), quote, body  # u"…" needs no prefix

    def _field(self, expr: str, quote: str) -> str:
        if quote[0] in expr or "\\" in expr or "{" in expr:
            raise _Unfixable("the expression needs quoting inside the f-string")
        return expr

    def _percent(self, literal: ast.expr, args: list[ast.expr]) -> str:
        prefix, quote, body = self._literal(literal)
        values = [self.text(a) for a in args]
        if any(isinstance(a, ast.Starred) for a in args) or "%(" in body:
            raise _Unfixable("printf-style with a mapping or starred arguments")
        out, used, pos = [], 0, 0
        for m in _PERCENT.finditer(body):
            out.append(body[pos : m.start()].replace("{", "{{").replace("}", "}}"))
            pos = m.end()
            flags, width, precision, kind = m.groups()
            if kind == "%":
                out.append("%")
                continue
            if used >= len(values):
                raise _Unfixable("fewer arguments than conversions")
            value = self._field(values[used], quote)
            used += 1
            if kind == "r":
                value += "!r"
            spec = _spec(flags, width, precision)
            if spec or kind not in "sdir":
                spec += {"s": "", "r": "", "i": "d"}.get(kind, kind)
                value += f":{spec}"
            out.append("{" + value + "}")
        if used != len(values) or "%" in body[pos:]:
            raise _Unfixable("a conversion this rewrite does not know")
        out.append(body[pos:].replace("{", "{{").replace("}", "}}"))
        return f"{prefix}f{quote}{''.join(out)}{quote}"

    def _format(self, call: ast.Call) -> str:
        prefix, quote, body = self._literal(call.func.value)  # type: ignore[attr-defined]
        if any(isinstance(a, ast.Starred) for a in call.args) or any(
            k.arg is None for k in call.keywords
        ):
            raise _Unfixable("format() with * or ** arguments")
        positional = [self.text(a) for a in call.args]
        named = {k.arg: self.text(k.value) for k in call.keywords}
        out, auto = [], 0
        try:
            parts = list(string.Formatter().parse(body))
        except ValueError as exc:
            raise _Unfixable(str(exc)) from exc
        for text, field, spec, conversion in parts:
            out.append(text.replace("{", "{{").replace("}", "}}"))
            if field is None:
                continue
            if field == "":
                field, auto = str(auto), auto + 1
            if field.isdigit() and int(field) < len(positional):
                value = positional[int(field)]
            elif field in named:
                value = named[field]
            else:
                raise _Unfixable(f"format field {field!r}")
            value = self._field(value, quote)
            value += f"!{conversion}" if conversion else ""
            value += f":{spec}" if spec else ""
            out.append("{" + value + "}")
        return f"{prefix}f{quote}{''.join(out)}{quote}"

    def _path_call(self, call: ast.Call) -> str:
        name = call.func.attr  # type: ignore[attr-defined]
        if name not in _PATH_CALLS or call.keywords or not call.args:
            raise _Unfixable(f"os.path.{name}")
        if any(isinstance(a, ast.Starred) for a in call.args):
            raise _Unfixable("starred path arguments")
        if name != "join" and len(call.args) != 1:
            raise _Unfixable(f"os.path.{name} with {len(call.args)} arguments")
        template = _PATH_CALLS[name]
        if name != "join" and _gives_path(call.args[0]):
            template = template.replace("Path({})", "{}", 1)  # already a Path: no Path(Path(…))
        return template.format(", ".join(self.text(a) for a in call.args))

    def _print(self, call: ast.Call) -> str:
        level = "info"
        for k in call.keywords:
            if k.arg == "file" and self.seg(k.value) == b"sys.stderr":
                level = "warning"
            else:
                raise _Unfixable("print() with keywords other than file=sys.stderr")
        if len(call.args) > 1 or any(isinstance(a, ast.Starred) for a in call.args):
            raise _Unfixable("print() of several values")
        arg = self.text(call.args[0]) if call.args else '""'
        return f"logger.{level}({arg})"


def _spec(flags: str, width: str, precision: str | None) -> str:
    """printf flags, width and precision as a format spec: ``-`` aligns left (``<``),
    ``0`` pads with zeros, ``+``/space/``#`` mean the same in both."""
    align = "<" if "-" in flags else ""
    sign = "+" if "+" in flags else " " if " " in flags else ""
    alternate = "#" if "#" in flags else ""
    zero = "0" if "0" in flags and not align else ""
    return align + sign + alternate + zero + width + (f".{precision}" if precision else "")


def _gives_path(node: ast.AST) -> bool:
    """An ``os.path`` call whose rewrite is a ``Path`` itself (``Path(a, b)``, ``.parent``)."""
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and _is_os_path(node.func.value)
        and node.func.attr in _GIVES_PATH
    )


def _is_str(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, str)


def _is_os_path(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Attribute)
        and node.attr == "path"
        and isinstance(node.value, ast.Name)
        and node.value.id == "os"
    )
