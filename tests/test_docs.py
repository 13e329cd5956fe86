"""Every link and repository path the README and docs/ name exists.

Checked in README.md and docs/*.md:

- relative Markdown links ``[text](path#anchor)`` and images: the file exists, and an
  anchor names a heading of that file (GitHub's slugs);
- repository paths in backticks (``server/crlhf_lsp/outbox.py``, ``bench/learning.py``,
  ``trainer/configs/``): a path whose first part is a top-level entry of the repository,
  or a package of ``server/`` or ``trainer/`` (``crlhf_store/settings.py``), exists;
- dotted names of our packages in backticks (``crlhf_store.storage.AdapterStorage``): the
  module exists, and a name after it is defined there.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SOURCE_ROOTS = [ROOT / "server", ROOT / "trainer"]
PACKAGES = {p.name for base in SOURCE_ROOTS for p in base.iterdir() if (p / "__init__.py").exists()}
# Made by running things, never committed: named in the docs as where output lands.
GENERATED = {"artifacts", "crlhf-demo", "crlhf-work", "crlhf-learning", ".venv", "node_modules"}

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
CODE = re.compile(r"`([^`\n]+)`")
PATHLIKE = re.compile(r"[\w.\-]+(?:/[\w.\-]+)*/?")
DOTTED = re.compile(r"(?<![\w/.\-])(crlhf_\w+)((?:\.\w+)+)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def _prose(text: str) -> str:
    """The text outside fenced code blocks (commands and output there are not paths)."""
    return FENCE.sub("", text)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation (backticks too) dropped,
    spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    headings = re.findall(r"^#{1,6}\s+(.+?)\s*$", _prose(path.read_text(encoding="utf-8")), re.M)
    return {slug(h) for h in headings}


def _resolve(name: str) -> Path | None:
    """A backticked name as a repository path, or None when it is not one."""
    name = name.removeprefix("./")
    if not PATHLIKE.fullmatch(name) or "/" not in name:
        return None
    first = name.split("/", 1)[0]
    if first in GENERATED:
        return None
    if (ROOT / first).exists() or first in {"docs", "bench", "tests", "server", "trainer"}:
        return ROOT / name
    if first in PACKAGES:
        for base in SOURCE_ROOTS:
            if (base / first).exists():
                return base / name
    return None


def _module_problem(dotted: str) -> str | None:
    """None if ``crlhf_x.y.z`` names a module, or a module and a name defined in it."""
    parts = dotted.split(".")
    for base in SOURCE_ROOTS:
        if (base / parts[0]).is_dir():
            break
    else:
        return f"no package {parts[0]}"
    here = base / parts[0]
    for i, part in enumerate(parts[1:], start=1):
        if (here / part / "__init__.py").exists():
            here = here / part
            continue
        if (here / f"{part}.py").exists():
            here = here / f"{part}.py"
            rest = parts[i + 1 :]
            break
        rest = parts[i:]
        here = here / "__init__.py"
        break
    else:
        return None
    if not rest:
        return None
    source = here.read_text(encoding="utf-8")
    name = rest[0]
    defined = (
        rf"^\s*(?:def|class|async def)\s+{name}\b"  # a function or class
        rf"|^\s*{name}\s*(?::[^=\n]*)?="  # an assignment
        rf"|import .*\b{name}\b"  # a re-export
    )
    if re.search(defined, source, re.M) or re.search(rf'"{name}"', source):
        return None
    return f"{here.relative_to(ROOT)} defines no {name}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_and_anchors_exist(doc: Path) -> None:
    text = _prose(doc.read_text(encoding="utf-8"))
    broken = []
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        file, _, anchor = target.partition("#")
        path = (doc.parent / file).resolve() if file else doc
        if not path.exists():
            broken.append(f"{target}: no file {path}")
        elif anchor and path.suffix == ".md" and anchor not in anchors(path):
            broken.append(f"{target}: no heading #{anchor} in {path.name}")
    assert not broken, f"{doc.name}: broken links\n" + "\n".join(broken)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_repository_path_and_module_named_exists(doc: Path) -> None:
    text = _prose(doc.read_text(encoding="utf-8"))
    missing = []
    for code in CODE.findall(text):
        path = _resolve(code.strip())
        if path is not None and not path.exists():
            missing.append(f"`{code}`: no {path.relative_to(ROOT)}")
        for match in DOTTED.finditer(code):
            if match[1] not in PACKAGES:  # crlhf_client.lua, a file
                continue
            if problem := _module_problem(match[0]):
                missing.append(f"`{code}`: {problem}")
    assert not missing, f"{doc.name} names what does not exist:\n" + "\n".join(missing)


def test_the_checker_catches_what_it_should(tmp_path: Path) -> None:
    assert _resolve("server/crlhf_lsp/outbox.py") == ROOT / "server/crlhf_lsp/outbox.py"
    assert _resolve("crlhf_store/settings.py") == ROOT / "server/crlhf_store/settings.py"
    assert _resolve("bench/no_such.py") is not None
    assert _resolve("DATA_DIR/adapters/") is None
    assert _resolve("artifacts/vscode-e2e/") is None
    assert _module_problem("crlhf_contract.client.StoreClient") is None
    assert _module_problem("crlhf_trainer.aggregation.ESTIMATORS") is None
    assert _module_problem("crlhf_store.aggregation") is not None
    assert _module_problem("crlhf_contract.client.NoSuchThing") is not None
    assert slug("The store: ingest (`bench/store_ingest.py`)") == (
        "the-store-ingest-benchstore_ingestpy"
    )
    assert slug("The demo (crlhf demo)") == "the-demo-crlhf-demo"
