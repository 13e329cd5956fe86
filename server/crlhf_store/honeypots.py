"""Honeypots: code whose per-line truth is known.

Imported as JSONL (see the README), or minted from one line of a real completion whose
truth an admin confirmed (:func:`mint_from_line`, the dashboard's disagreement list): the
honeypot is that line as ``text`` with the completion's prompt and the lines above it as
``prompt``, so it reads to an annotator like any completion of one line. Whoever wrote or
rated that completion is never served it.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime

from crlhf_contract.schemas import HoneypotIn, completion_lines
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from crlhf_store.errors import Invalid, NotFound
from crlhf_store.models import Completion, Honeypot, LineRating, ReviewAssignment
from crlhf_store.strictjson import NotStorable, check_storable


def parse_jsonl(lines: Iterable[str]) -> list[HoneypotIn]:
    """Parse and check every line first; a bad line raises :class:`Invalid` naming it."""
    out: list[HoneypotIn] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            honeypot = HoneypotIn.model_validate_json(line)
        except ValidationError as exc:
            raise Invalid(f"line {number}: {exc.errors()[0]['msg']}", loc=("line", number)) from exc
        try:  # a NUL fails on PostgreSQL (a 500 from the dashboard's import form)
            check_storable(honeypot.model_dump())
        except NotStorable as exc:
            raise Invalid(f"line {number}: {exc}", loc=("line", number, *exc.path)) from exc
        n = len(completion_lines(honeypot.text))
        if len(honeypot.truth) != n:
            raise Invalid(
                f"line {number}: `truth` has {len(honeypot.truth)} entries but `text` has "
                f"{n} lines; give one 1 (correct) or -1 (wrong) per line",
                loc=("line", number, "truth"),
            )
        out.append(honeypot)
    return out


def content_digest(language: str, prompt: str, text: str) -> str:
    """What tells one honeypot from another (importing the same one twice is a no-op)."""
    return hashlib.sha256(f"{language}\0{prompt}\0{text}".encode()).hexdigest()


def import_honeypots(session: Session, *, honeypots: Iterable[HoneypotIn]) -> tuple[int, int]:
    """Store honeypots as ordinary-looking completions; returns (imported, already there)."""
    imported = skipped = 0
    for h in honeypots:
        digest = content_digest(h.language, h.prompt, h.text)
        exists = session.scalar(
            select(Completion.id).where(
                Completion.content_hash == digest, Completion.is_honeypot.is_(True)
            )
        )
        if exists is not None:
            skipped += 1
            continue
        cid = uuid.uuid4()  # random: nothing in the id tells a honeypot apart
        session.add(
            Completion(
                id=cid,
                annotator_id=None,
                prompt=h.prompt,
                suffix="",
                language=h.language,
                text=h.text,
                n_lines=len(h.truth),
                model="",
                content_hash=digest,
                is_honeypot=True,
            )
        )
        session.flush()
        session.add(Honeypot(completion_id=cid, truth=list(h.truth)))
        imported += 1
    session.flush()
    return imported, skipped


def line_honeypot(completion: Completion, line: int, truth: int = 1) -> HoneypotIn:
    """Line ``line`` of ``completion`` as a one-line honeypot whose truth is ``truth``."""
    lines = completion_lines(completion.text)
    if not 0 <= line < len(lines):
        raise Invalid(
            f"completion {completion.id} has lines 0 to {len(lines) - 1}, not {line}",
            loc=("line",),
        )
    above = "".join(f"{text}\n" for text in lines[:line])
    return HoneypotIn(
        prompt=completion.prompt + above,
        text=lines[line],
        language=completion.language,
        truth=[truth],  # type: ignore[list-item]
    )


def minted(session: Session, honeypots: list[HoneypotIn]) -> list[bool]:
    """Whether each of ``honeypots`` is in the store already."""
    digests = [content_digest(h.language, h.prompt, h.text) for h in honeypots]
    if not digests:
        return []
    there = set(
        session.scalars(
            select(Completion.content_hash).where(
                Completion.content_hash.in_(set(digests)), Completion.is_honeypot.is_(True)
            )
        )
    )
    return [d in there for d in digests]


def mint_from_line(
    session: Session, *, completion_id: uuid.UUID, line: int, truth: int
) -> tuple[uuid.UUID, bool]:
    """Turn one line of a model's completion into a honeypot of known ``truth`` (1 / -1).

    Returns the honeypot's completion id and whether it is new (minting the same line
    twice keeps the first honeypot and its truth). Raises :class:`NotFound` for an unknown
    completion and :class:`Invalid` for a honeypot, a line out of range or another truth.
    """
    if truth not in (1, -1):
        raise Invalid(f"truth must be 1 (correct) or -1 (wrong), not {truth}", loc=("truth",))
    completion = session.get(Completion, completion_id)
    if completion is None:
        raise NotFound(f"no completion {completion_id}")
    if completion.is_honeypot:
        raise Invalid(f"completion {completion_id} is a honeypot already", loc=("completion_id",))
    honeypot = line_honeypot(completion, line, truth)
    imported, _ = import_honeypots(session, honeypots=[honeypot])
    digest = content_digest(honeypot.language, honeypot.prompt, honeypot.text)
    cid = session.scalar(
        select(Completion.id).where(
            Completion.content_hash == digest, Completion.is_honeypot.is_(True)
        )
    )
    assert cid is not None
    if imported:
        _seen_already(session, source=completion, honeypot=cid)
    return cid, bool(imported)


def _seen_already(session: Session, *, source: Completion, honeypot: uuid.UUID) -> None:
    """Whoever wrote or rated the source completion would know the minted line (and that
    it came back as a honeypot): record it as seen by them, a task given back at once, so
    the review queue never serves it to them."""
    raters = set(
        session.scalars(
            select(LineRating.annotator_id).where(LineRating.completion_id == source.id)
        )
    )
    if source.annotator_id is not None:
        raters.add(source.annotator_id)
    now = datetime.now(UTC)
    session.add_all(
        ReviewAssignment(
            id=uuid.uuid4(),
            annotator_id=a,
            completion_id=honeypot,
            created_at=now,
            expires_at=now,
            released_at=now,
        )
        for a in sorted(raters)
    )
    session.flush()
