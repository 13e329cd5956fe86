"""Files crlhf never reads for the model nor reports on: secrets, and opted-out workspaces.

A document is *excluded* when its name or path matches

- one of :data:`DEFAULT_EXCLUDE_GLOBS` (always: a setting cannot remove them),
- a pattern of the ``excludeGlobs`` setting, or
- a pattern of a ``.crlhfignore`` file in its folder or any folder above it (one pattern a
  line, ``#`` comments); a ``.crlhfignore`` holding ``*`` opts its whole folder out, which
  is the per-workspace opt-out: commit one at a repository's root and nobody's crlhf reads
  or sends anything of that repository.

An excluded document gets no completion (no model call either: an ``openai`` backend would
send the prompt to another machine), no 👍/👎 code actions, and nothing about it enters the
outbox: no completion row, no shown/accepted event, no rating, also for a suggestion made
before the file became excluded. Anything that adds other documents' text to a prompt (a
context of recently opened files) must ask :meth:`Exclusions.excluded` first as well.

Patterns: a pattern without ``/`` matches the file's name (``*.pem``), or the name of a
folder on its path below a ``.crlhfignore`` or workspace folder; a pattern with ``/``
matches the path from the ``.crlhfignore``'s folder, from a workspace folder, or (settings
only) the absolute path; ``**`` spans folders, ``*`` and ``?`` do not, a trailing ``/``
means everything below. Matching ignores case, and a symbolic link is judged by its target's
name too: both err on the side of excluding. There is no ``!`` negation.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache
from pathlib import PurePosixPath
from urllib.parse import unquote, urlsplit

DEFAULT_EXCLUDE_GLOBS: tuple[str, ...] = (
    ".env*",
    "*.pem",
    "*.key",
    "id_rsa*",
    "*.p12",
    "secrets.*",
)
IGNORE_FILE = ".crlhfignore"
MAX_IGNORE_BYTES = 64 * 1024
"""A ``.crlhfignore`` larger than this is read no further than that."""


class Exclusions:
    """Answers "is this document excluded, and by what?" for a URI.

    ``patterns`` are the setting's (the defaults are added); ``roots()`` gives the workspace
    folders' paths, asked at each call since the client may add and remove folders."""

    def __init__(
        self,
        patterns: Sequence[str] = (),
        roots: Callable[[], Iterable[str]] = tuple,
    ) -> None:
        self.patterns = tuple(dict.fromkeys((*DEFAULT_EXCLUDE_GLOBS, *patterns)))
        self.roots = roots
        self._ignore_files: dict[str, tuple[tuple[int, int], tuple[str, ...]]] = {}

    def excluded(self, uri: str) -> str | None:
        """Why ``uri`` is excluded (the pattern and where it comes from), or None."""
        path = uri_path(uri)
        if path is None:
            return None
        paths = [path]
        if os.path.isabs(path):
            real = os.path.realpath(path)
            if real != path:
                paths.append(real)
        for p in paths:
            reason = self._judge(p)
            if reason is not None:
                return reason
        return None

    def _judge(self, path: str) -> str | None:
        posix = path.replace(os.sep, "/")
        for pattern in self.patterns:
            if _matches(pattern, posix, None):
                return _reason(pattern)
        for root in self.roots():
            base = root.replace(os.sep, "/").rstrip("/")
            if posix.startswith(base + "/"):
                rel = posix[len(base) + 1 :]
                for pattern in self.patterns:
                    if _matches(pattern, rel, rel):
                        return _reason(pattern)
        if not os.path.isabs(path):
            return None
        folder = os.path.dirname(path)
        while True:
            patterns = self._ignore_patterns(folder)
            rel = os.path.relpath(path, folder).replace(os.sep, "/") if patterns else ""
            for pattern in patterns:
                if _matches(pattern, rel, rel):
                    return f"{pattern!r} ({os.path.join(folder, IGNORE_FILE)})"
            parent = os.path.dirname(folder)
            if parent == folder:
                return None
            folder = parent

    def _ignore_patterns(self, folder: str) -> tuple[str, ...]:
        """The patterns of ``folder``'s ``.crlhfignore``, read again whenever it changes."""
        file = os.path.join(folder, IGNORE_FILE)
        try:
            st = os.stat(file)
        except OSError:
            self._ignore_files.pop(file, None)
            return ()
        stamp = (st.st_mtime_ns, st.st_size)
        known = self._ignore_files.get(file)
        if known is not None and known[0] == stamp:
            return known[1]
        try:
            with open(file, encoding="utf-8", errors="replace") as f:
                text = f.read(MAX_IGNORE_BYTES)
        except OSError:
            # There, but unreadable: its author meant to exclude something; exclude all.
            patterns: tuple[str, ...] = ("**",)
        else:
            patterns = parse_ignore_file(text)
        self._ignore_files[file] = (stamp, patterns)
        return patterns


def _reason(pattern: str) -> str:
    source = "default" if pattern in DEFAULT_EXCLUDE_GLOBS else "setting excludeGlobs"
    return f"{pattern!r} ({source})"


def parse_ignore_file(text: str) -> tuple[str, ...]:
    """The patterns of a ``.crlhfignore``: one a line, blank lines and ``#`` comments skipped."""
    lines = (line.strip() for line in text.splitlines())
    return tuple(line for line in lines if line and not line.startswith("#"))


def uri_path(uri: str) -> str | None:
    """The path a URI names: the file's for ``file:``, the URI's path for other schemes
    (``vscode-notebook-cell:``, ``untitled:`` …), None when it has none."""
    parts = urlsplit(uri)
    if parts.scheme == "file":
        from pygls.uris import to_fs_path

        return to_fs_path(uri)
    path = unquote(parts.path)
    return path or None


def _matches(pattern: str, path: str, rel: str | None) -> bool:
    """Whether ``pattern`` matches ``path`` (absolute, or relative to a base when ``rel``)."""
    pattern = pattern.strip()
    if not pattern or pattern.startswith("!"):
        return False
    if pattern.endswith("/"):
        pattern += "**"
    if "/" not in pattern:
        # A name: the file's, or (below a base) a folder's on the way to it.
        names = PurePosixPath(rel).parts if rel is not None else (PurePosixPath(path).name,)
        regex = _regex(pattern)
        return any(regex.fullmatch(name) for name in names)
    regex = _regex(pattern.lstrip("/"))
    if rel is not None:
        return regex.fullmatch(rel) is not None
    # A setting's pattern with a folder in it: against the absolute path, or its tail
    # (``config/prod.yaml`` matches ``/any/where/config/prod.yaml``).
    if pattern.startswith("/"):
        return regex.fullmatch(path.lstrip("/")) is not None
    parts = path.lstrip("/").split("/")
    return any(regex.fullmatch("/".join(parts[i:])) for i in range(len(parts)))


@lru_cache(maxsize=512)
def _regex(glob: str) -> re.Pattern[str]:
    """``glob`` as a regular expression: ``**`` any folders, ``*``/``?`` within a name."""
    out, i, n = [], 0, len(glob)
    while i < n:
        c = glob[i]
        if glob.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif glob.startswith("**", i):
            out.append(".*")
            i += 2
        elif c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[" and (end := glob.find("]", i + 2)) != -1:
            body = glob[i + 1 : end]
            if body.startswith("!"):
                body = "^" + body[1:]
            out.append("[" + body.replace("\\", "\\\\").replace("/", "") + "]")
            i = end + 1
        else:
            out.append(re.escape(c))
            i += 1
    try:
        return re.compile("".join(out), re.IGNORECASE | re.DOTALL)
    except re.error:  # a set such as ``[z-a]``: the pattern is taken literally
        return re.compile(re.escape(glob), re.IGNORECASE | re.DOTALL)
