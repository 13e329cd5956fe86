"""Importing honeypots: code whose per-line truth is known (JSONL, see the README)."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable

from crlhf_contract.schemas import HoneypotIn, completion_lines
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from crlhf_store.errors import Invalid
from crlhf_store.models import Completion, Honeypot
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


def import_honeypots(session: Session, *, honeypots: Iterable[HoneypotIn]) -> tuple[int, int]:
    """Store honeypots as ordinary-looking completions; returns (imported, already there)."""
    imported = skipped = 0
    for h in honeypots:
        digest = hashlib.sha256(f"{h.language}\0{h.prompt}\0{h.text}".encode()).hexdigest()
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
