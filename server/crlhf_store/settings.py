"""The store's settings, from the environment (``CRLHF_*``) and the command line."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "crlhf-store"


class StoreSettings(BaseSettings):
    """Every knob of the store; ``CRLHF_DATABASE_URL`` etc. override the defaults."""

    model_config = SettingsConfigDict(env_prefix="CRLHF_", extra="ignore")

    database_url: str | None = None
    """SQLAlchemy URL; default an SQLite file ``store.db`` in ``data_dir`` (WAL mode).
    PostgreSQL: ``postgresql+psycopg://user@host/db``."""
    data_dir: Path = Field(default_factory=default_data_dir)
    """Holds the SQLite file and the adapter storage folder."""
    host: str = "127.0.0.1"
    port: int = 8765
    workers: int = Field(default=1, ge=1, le=64)
    """Server processes sharing the port (``uvicorn --workers``). PostgreSQL scales with
    them; SQLite has one writer whatever the count, so one process is its best setting."""
    max_body_bytes: int = 16 * 1024 * 1024
    """Largest JSON body; a larger one gets 413 before it is read."""
    max_upload_bytes: int = 2 * 1024 * 1024 * 1024
    """Largest adapter upload (multipart ``POST /v1/adapters``)."""
    review_redundancy: int = 3
    """A completion stays in the review queue until this many annotators rated it."""
    honeypot_rate: float = 0.1
    """Share of review tasks that are honeypots once an annotator has answered enough."""
    honeypot_rate_new: float = 0.5
    """Share of honeypots for an annotator with fewer than ``honeypot_warmup`` answers."""
    honeypot_warmup: int = 10
    review_redundancy_max: int = Field(default=5, ge=1)
    """After an aggregation run, a completion whose reward interval is wide may get this
    many annotators (the widest served first)."""
    review_certain_width: float = Field(default=0.1, ge=0, le=1)
    """A completion whose reward interval is at most this wide is asked about no more."""
    review_assignment_ttl_s: float = Field(default=24 * 3600, gt=0)
    """A review task not answered this long after it was served frees its slot."""
    ratings_need_task: bool = True
    """An annotator may rate only their own completions and the review tasks served to
    them (anything else is refused with 422 naming the completion)."""
    rating_rate_per_minute: int = Field(default=10_000, ge=0)
    """Most line ratings one annotator may post in a minute (0: no limit); more get 429."""
    rating_quota_per_day: int = Field(default=200_000, ge=0)
    """Most line ratings one annotator may post in 24 hours (0: no quota); more get 429."""
    pool_size: int = 10
    max_overflow: int = 30

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(Path(self.data_dir) / 'store.db').resolve()}"


@lru_cache(maxsize=1)
def get_settings() -> StoreSettings:
    """The settings of this process, read once from the environment."""
    return StoreSettings()
