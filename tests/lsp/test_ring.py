"""The ring buffer of code from other files: chunks around a line, similar ones evicted,
the oldest out past the bound, rendered within a token budget under file-path comments."""

from __future__ import annotations

from crlhf_lsp.ring import RingBuffer, similarity


def lines(name: str, n: int = 40) -> list[str]:
    return [f"def {name}_{i}(x):\n" if i % 2 == 0 else f"    return x + {i}\n" for i in range(n)]


def words(count: str) -> int:
    return len(count.split())


def test_a_chunk_is_the_lines_around_where_the_user_was() -> None:
    ring = RingBuffer(chunk_lines=8)
    assert ring.pick("file:///a.py", "a.py", lines("a"), 20)
    [chunk] = ring.chunks
    assert chunk.text.split("\n")[0] == "def a_16(x):"
    assert len(chunk.text.split("\n")) == 8
    assert not ring.pick("file:///a.py", "a.py", lines("a"), 20)  # already there
    assert not ring.pick("file:///b.py", "b.py", ["x = 1\n", "\n"], 0)  # too small


def test_a_similar_chunk_replaces_the_older_one_and_the_oldest_goes_past_the_bound() -> None:
    ring = RingBuffer(max_chunks=2, chunk_lines=8)
    ring.pick("file:///a.py", "a.py", lines("a"), 4)
    edited = lines("a")
    edited[3] = "    return x + 1000\n"  # the same region after an edit
    ring.pick("file:///a.py", "a.py", edited, 4)
    assert [c.text for c in ring.chunks] == ["".join(edited[:8]).rstrip("\n")]
    assert ring.evicted == 1
    ring.pick("file:///b.py", "b.py", lines("b"), 4)
    ring.pick("file:///c.py", "c.py", lines("c"), 4)
    assert [c.path for c in ring.chunks] == ["b.py", "c.py"]


def test_similarity_of_word_sets() -> None:
    assert similarity(frozenset("ab"), frozenset("ab")) == 1.0
    assert similarity(frozenset("ab"), frozenset("cd")) == 0.0
    assert similarity(frozenset("abc"), frozenset("abd")) == 2 / 3


def test_the_context_is_other_files_newest_within_budget_under_path_comments() -> None:
    ring = RingBuffer(chunk_lines=4)
    ring.pick("file:///a.py", "pkg/a.py", lines("a"), 2)
    ring.pick("file:///b.py", "pkg/b.py", lines("b"), 2)
    ring.pick("file:///here.py", "here.py", lines("here"), 2)
    text = ring.context("file:///here.py", "here.py", "python", 10_000, words)
    assert text.startswith("# pkg/a.py\ndef a_0(x):\n")
    assert "# pkg/b.py\ndef b_0(x):" in text
    assert "here_0" not in text  # the document's own code is in the prompt already
    assert text.endswith("# here.py\n")
    # A budget for one chunk: the newest.
    one = ring.context("file:///here.py", "here.py", "python", 16, words)
    assert "b_0" in one and "a_0" not in one
    assert ring.context("file:///x.ts", "x.ts", "typescript", 16, words).startswith("// ")
    assert ring.context("file:///here.py", "here.py", "python", 1, words) == ""
    ring.forget("file:///a.py")
    assert "a_0" not in ring.context("file:///here.py", "here.py", "python", 10_000, words)
