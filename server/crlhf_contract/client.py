"""A typed HTTP client of the store, used by crlhf-lsp, crlhf-train and the demo.

Errors (one hierarchy, so callers can tell "try again later" from "this will never work")::

    StoreError
     ├── StoreUnavailable   connection refused, timeout, 5xx, garbage: retry later
     └── StoreRejected      4xx; ``row_level`` tells the two kinds apart:
          │                 409/413/422: this request (a row of it) is wrong, retrying the
          │                 same rows will not help; any other 4xx (401 token refused, 403,
          │                 404, 408, 429 from the store or a proxy in front of it): the store
          │                 cannot take anything from us now, the rows themselves are fine
          └── AdapterUnverified  a downloaded adapter fails verification; never load it
               ├── ChecksumMismatch   it does not match its sha256
               └── UnsafeAdapter      its version, archive or size is not what a store
                                      that follows the contract can send

``retry_after`` carries the seconds of a ``Retry-After`` header (429, 503), when one came.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO, TypeVar
from uuid import UUID

import httpx
from pydantic import BaseModel, TypeAdapter, ValidationError

from crlhf_contract.digest import (
    MAX_BYTES,
    MAX_FILES,
    VERSION,
    UnsafeArchive,
    folder_digest,
    safe_extract,
)
from crlhf_contract.retention import RetentionExport
from crlhf_contract.schemas import (
    AdapterArtifact,
    AdapterOut,
    AggregationRunIn,
    AggregationRunOut,
    CompletionBatch,
    CompletionExport,
    CompletionIn,
    EventBatch,
    EventIn,
    LabelExport,
    Me,
    RatingBatch,
    RatingIn,
    ReviewTask,
    Stored,
)

M = TypeVar("M", bound=BaseModel)


ROW_REJECTIONS = frozenset({409, 413, 422})
"""Statuses that judge the rows sent (conflict, too large, invalid), not the sender."""


class StoreError(Exception):
    """Base class of the client's errors."""

    status: int | None = None
    retry_after: float | None = None


class StoreUnavailable(StoreError):
    """The store could not be reached or failed (5xx, bad reply): retry later."""

    def __init__(
        self, message: str, *, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class StoreRejected(StoreError):
    """The store refused the request (4xx); ``status`` and ``detail`` say why."""

    def __init__(self, status: int, detail: Any, *, retry_after: float | None = None) -> None:
        super().__init__(f"store refused the request ({status}): {detail}")
        self.status = status
        self.detail = detail
        self.retry_after = retry_after

    @property
    def row_level(self) -> bool:
        """True when the store judged the rows (409/413/422), False when it refused us."""
        return self.status in ROW_REJECTIONS


class AdapterUnverified(StoreRejected):
    """A downloaded adapter (or its registry record) fails verification."""

    def __init__(self, message: str) -> None:
        super().__init__(0, message)


class ChecksumMismatch(AdapterUnverified):
    def __init__(self, what: str, expected: str, got: str) -> None:
        super().__init__(f"{what}: sha256 {got} does not match {expected}")


class UnsafeAdapter(AdapterUnverified):
    pass


TAR_OVERHEAD = MAX_FILES * 3 * 512 + 64 * 1024
"""Most bytes a tar of an adapter adds to its files (headers, PAX headers, padding)."""


def adapter_version(version: str) -> str:
    """``version`` if it is one the registry could hold, else :class:`UnsafeAdapter`:
    a version becomes a URL path and a cache folder name (``../../x`` would leave it)."""
    if not VERSION.fullmatch(version):
        raise UnsafeAdapter(
            f"the store named an adapter version {version!r} that no upload can have "
            "(letters, digits, . _ + -): refused"
        )
    return version


class StoreClient:
    """``StoreClient("http://127.0.0.1:8765", token)``; methods map 1:1 to the API."""

    def __init__(
        self,
        base_url: str,
        token: str | None,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"), headers=headers, timeout=timeout, transport=transport
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> StoreClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- plumbing -------------------------------------------------------------------

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:  # connection refused, timeouts, protocol errors
            raise StoreUnavailable(f"{method} {path}: {exc!r}") from exc
        return _checked(response, method, path)

    def _download(
        self, path: str, sink: BinaryIO, *, limit: int, params: dict[str, str] | None = None
    ) -> tuple[str, str]:
        """Stream ``path`` into ``sink``, refusing more than ``limit`` bytes; (sha256 of what
        came, the ``X-Checksum-Sha256`` header)."""
        digest, size = hashlib.sha256(), 0
        try:
            with self._http.stream("GET", path, params=params) as response:
                if response.status_code >= 400:
                    response.read()
                    _checked(response, "GET", path)
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    if size > limit:
                        raise UnsafeAdapter(
                            f"GET {path}: the store sends more than the {limit} bytes the "
                            "registry recorded for it: refused"
                        )
                    digest.update(chunk)
                    sink.write(chunk)
                header = response.headers.get("X-Checksum-Sha256", "")
        except httpx.HTTPError as exc:
            raise StoreUnavailable(f"GET {path}: {exc!r}") from exc
        return digest.hexdigest(), header

    def _parse(self, model: type[M], response: httpx.Response) -> M:
        try:
            return model.model_validate_json(response.content)
        except ValidationError as exc:
            raise StoreUnavailable(f"unexpected reply from the store: {exc}") from exc

    # --- endpoints ------------------------------------------------------------------

    def healthy(self) -> bool:
        try:
            return self._http.get("/healthz").status_code == 200
        except httpx.HTTPError:
            return False

    def me(self) -> Me:
        return self._parse(Me, self._request("GET", "/v1/me"))

    def post_completions(self, completions: Sequence[CompletionIn]) -> Stored:
        body = CompletionBatch(completions=list(completions)).model_dump(mode="json")
        return self._parse(Stored, self._request("POST", "/v1/completions", json=body))

    def post_events(self, events: Sequence[EventIn]) -> Stored:
        # Unset optional fields left out: a store older than 'retained' events (which
        # forbids unknown fields) still takes the other kinds from a newer crlhf-lsp.
        body = EventBatch(events=list(events)).model_dump(mode="json", exclude_none=True)
        return self._parse(Stored, self._request("POST", "/v1/events", json=body))

    def post_ratings(self, ratings: Sequence[RatingIn]) -> Stored:
        body = RatingBatch(ratings=list(ratings)).model_dump(mode="json")
        return self._parse(Stored, self._request("POST", "/v1/ratings", json=body))

    def review_next(self) -> ReviewTask | None:
        response = self._request("GET", "/v1/review/next")
        return None if response.status_code == 204 else self._parse(ReviewTask, response)

    def review_skip(self, task_id: UUID) -> None:
        """Give a review task back unanswered; its slot goes to another annotator."""
        self._request("POST", f"/v1/review/{task_id}/skip")

    def export_labels(self, after: str | None = None, limit: int = 5000) -> LabelExport:
        params: dict[str, Any] = {"limit": limit} | ({"after": after} if after else {})
        return self._parse(LabelExport, self._request("GET", "/v1/labels/export", params=params))

    def iter_label_pages(
        self, after: str | None = None, limit: int = 5000
    ) -> Iterator[LabelExport]:
        """Pages until the export is exhausted; each page's ``next`` resumes after it."""
        while True:
            page = self.export_labels(after, limit)
            yield page
            if page.next is None or not page.labels:
                return
            after = page.next

    def export_completions(self, after: str | None = None, limit: int = 1000) -> CompletionExport:
        params: dict[str, Any] = {"limit": limit} | ({"after": after} if after else {})
        response = self._request("GET", "/v1/completions/export", params=params)
        return self._parse(CompletionExport, response)

    def export_retention(self, after: str | None = None, limit: int = 5000) -> RetentionExport:
        params: dict[str, Any] = {"limit": limit} | ({"after": after} if after else {})
        response = self._request("GET", "/v1/retention/export", params=params)
        return self._parse(RetentionExport, response)

    def post_aggregation_run(self, run: AggregationRunIn) -> AggregationRunOut:
        body = run.model_dump(mode="json")
        response = self._request("POST", "/v1/aggregation-runs", json=body)
        return self._parse(AggregationRunOut, response)

    # --- adapters -------------------------------------------------------------------

    def list_adapters(self) -> list[AdapterOut]:
        response = self._request("GET", "/v1/adapters")
        return TypeAdapter(list[AdapterOut]).validate_json(response.content)

    def latest_adapter(self) -> AdapterOut | None:
        try:
            return self._parse(AdapterOut, self._request("GET", "/v1/adapters/latest"))
        except StoreRejected as exc:
            if exc.status == 404:
                return None
            raise

    def upload_adapter(
        self,
        folder: Path,
        *,
        version: str,
        base_model: str,
        parent: str | None = None,
        metrics: dict[str, Any] | None = None,
        gguf: Path | None = None,
        signing_key: Path | None = None,
    ) -> AdapterOut:
        """Upload ``folder`` (and ``gguf``) as candidate ``version``; signed with the
        Ed25519 key in the file ``signing_key`` when given (:mod:`crlhf_contract.signing`)."""
        folder = Path(folder)
        names = sorted(p.name for p in folder.iterdir() if p.is_file())
        data = {
            "version": version,
            "base_model": base_model,
            "sha256": folder_digest(folder, names),
            "metrics": json.dumps(metrics or {}),
        } | ({"parent": parent} if parent else {})
        files: list[tuple[str, tuple[str, bytes]]] = [
            ("files", (name, (folder / name).read_bytes())) for name in names
        ]
        if gguf is not None:
            blob = Path(gguf).read_bytes()
            files.append(("gguf", (Path(gguf).name, blob)))
            data["gguf_sha256"] = hashlib.sha256(blob).hexdigest()
        if signing_key is not None:
            from crlhf_contract.signing import sign_adapter

            data["signature"] = sign_adapter(
                Path(signing_key),
                version=version,
                sha256=data["sha256"],
                gguf_sha256=data.get("gguf_sha256"),
            )
        response = self._request("POST", "/v1/adapters", data=data, files=files)
        return self._parse(AdapterOut, response)

    def publish_adapter(self, version: str) -> AdapterOut:
        return self._parse(AdapterOut, self._request("POST", f"/v1/adapters/{version}/publish"))

    def retire_adapter(self, version: str) -> AdapterOut:
        return self._parse(AdapterOut, self._request("POST", f"/v1/adapters/{version}/retire"))

    def download_adapter(self, adapter: AdapterOut, dest: Path) -> Path:
        """Download the PEFT files of ``adapter`` into ``dest`` and verify both digests;
        the archive and its files may hold no more than the registry's recorded size."""
        version = adapter_version(adapter.version)
        size = min(adapter.size, MAX_BYTES)
        buffer = io.BytesIO()
        got, header = self._download(
            f"/v1/adapters/{version}/download", buffer, limit=size + TAR_OVERHEAD
        )
        if got != header:
            raise ChecksumMismatch(f"adapter {version} archive", header, got)
        try:
            names = safe_extract(buffer.getvalue(), dest, max_bytes=size)
        except (UnsafeArchive, tarfile.TarError) as exc:
            raise UnsafeAdapter(f"adapter {version}: {exc}") from exc
        digest = folder_digest(dest, names)
        if digest != adapter.sha256:
            raise ChecksumMismatch(f"adapter {version} files", adapter.sha256, digest)
        return Path(dest)

    def download_gguf(self, adapter: AdapterOut, dest: Path) -> Path:
        """Download the GGUF LoRA artifact of ``adapter`` to the file ``dest``, verified
        (a file that fails is removed), no larger than the registry's recorded size."""
        version = adapter_version(adapter.version)
        artifact = gguf_artifact(adapter)
        if artifact is None:
            raise StoreRejected(404, f"adapter {version} has no gguf artifact")
        dest = Path(dest)
        try:
            with dest.open("wb") as sink:
                got, _ = self._download(
                    f"/v1/adapters/{version}/download",
                    sink,
                    limit=min(artifact.size, MAX_BYTES),
                    params={"artifact": "gguf"},
                )
            if got != artifact.sha256:
                raise ChecksumMismatch(f"adapter {version} gguf", artifact.sha256, got)
        except BaseException:
            dest.unlink(missing_ok=True)
            raise
        return dest


def gguf_artifact(adapter: AdapterOut) -> AdapterArtifact | None:
    """The registry's record of the adapter's GGUF file (sha256, size), if it has one."""
    return next((a for a in adapter.artifacts if a.kind == "gguf"), None)


def _checked(response: httpx.Response, method: str, path: str) -> httpx.Response:
    """``response`` if it succeeded, else the error its status means."""
    status = response.status_code
    if status >= 500:
        raise StoreUnavailable(
            f"{method} {path}: HTTP {status}",
            status=status,
            retry_after=_retry_after(response),
        )
    if status >= 400:
        try:
            detail = response.json().get("detail", response.text)
        except (ValueError, AttributeError):
            detail = response.text
        raise StoreRejected(status, detail, retry_after=_retry_after(response))
    return response


def _retry_after(response: httpx.Response) -> float | None:
    """The seconds of a ``Retry-After: <seconds>`` header (an HTTP date is ignored)."""
    try:
        return max(0.0, float(response.headers.get("Retry-After", "")))
    except ValueError:
        return None
