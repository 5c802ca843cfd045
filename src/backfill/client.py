"""Python client of the team API (``/v1``, docs/api.md).

    from backfill.client import BackfillClient

    client = BackfillClient.from_environment()      # BACKFILL_URL/TOKEN/TEAM_ID or ./.backfill/credentials.json
    bf = client.create_backfill("daily_sales", "2024-01-01", "2024-01-31")
    done = client.wait(bf["transfer_backfill_id"])
    print(done["status"], done["error_report"])

Every method returns the ``data`` of the response envelope as plain dicts and lists,
with the API's own field names (``transfer_backfill_id``, ``transfer_runs_total``, …)
and UPPERCASE statuses. An error response raises :class:`BackfillApiError` (status,
code, message, request id of the server); an unreachable server raises
:class:`BackfillConnectionError` naming the URL.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import date, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, TypedDict, Unpack

import httpx

from backfill.domain.model import ENDED_BACKFILL_STATUSES, BackfillStatus
from backfill.http.status_codes import code_for_status

__all__ = [
    "FINISHED_STATUSES",
    "BackfillApiError",
    "BackfillClient",
    "BackfillConfigError",
    "BackfillConnectionError",
    "BackfillError",
    "BackfillSettings",
]

DEFAULT_CREDENTIALS_PATH = Path(".backfill") / "credentials.json"

# Status names as the team API writes them (UPPERCASE), from the domain's one set of groups.
BACKFILL_STATUSES = tuple(s.value.upper() for s in BackfillStatus)
# A backfill in one of these has nothing left to run (FAILED can still be retried or cancelled).
FINISHED_STATUSES = frozenset(s.value.upper() for s in ENDED_BACKFILL_STATUSES)

_RETRY_STATUSES = frozenset({429, 503})
_MAX_RETRIES = 3
_MAX_RETRY_WAIT = 10.0
_PAGE = 1000


class BackfillSettings(TypedDict, total=False):
    """What a backfill request may set besides its range; a missing (or None) value is the
    server's default, except ``interval_type`` (default ``"day"``) and ``interval_units`` (1)."""

    interval_type: str
    interval_units: int | None
    cron: str | None
    timezone: str | None
    name: str | None
    variables: Mapping[str, Any] | None
    max_active_runs: int | None
    run_order: str | None
    reprocess: str | None
    retries: int | None
    block_uuids: Iterable[str] | None


class BackfillError(Exception):
    """Base class of the client's errors; ``str()`` is a one-line reason."""


class BackfillConfigError(BackfillError):
    """No server URL, token or team id could be found."""


class BackfillConnectionError(BackfillError):
    """The server could not be reached (or did not answer in time)."""

    def __init__(self, message: str, url: str) -> None:
        super().__init__(message)
        self.message = message
        self.url = url


class BackfillApiError(BackfillError):
    """The server answered with an error envelope (or an unusable response)."""

    def __init__(self, status: int, code: str, message: str, request_id: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.request_id = request_id

    def __str__(self) -> str:
        return f"{self.message} ({self.code}, HTTP {self.status})" if self.status else f"{self.message} ({self.code})"


def _text(value: str | date | datetime) -> str:
    return value.isoformat() if isinstance(value, date | datetime) else str(value)


def _single_line(text: str) -> str:
    return " ".join(text.split())


class BackfillClient:
    """A synchronous client of one team of a ``backfill`` server."""

    def __init__(
        self,
        url: str,
        token: str,
        team_id: int,
        *,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not url:
            raise BackfillConfigError("no server URL given")
        if not token:
            raise BackfillConfigError("no token given")
        if isinstance(team_id, bool) or not isinstance(team_id, int) or team_id < 1:
            raise BackfillConfigError(f"team id must be a positive integer, got {team_id!r}")
        base = url.strip().rstrip("/")
        if "://" not in base:
            base = "http://" + base
        if base.endswith("/v1"):
            base = base[: -len("/v1")]
        self.url = base
        self.team_id = team_id
        self._sleep: Callable[[float], None] = time.sleep
        self._http = httpx.Client(
            base_url=base,
            timeout=timeout,
            transport=transport,
            headers={
                "Authorization": f"Bearer {token}",
                "Accept": "application/json",
                "User-Agent": "backfill-client",
            },
        )

    # ---- construction -----------------------------------------------------------------

    @classmethod
    def from_environment(
        cls,
        credentials_path: Path = DEFAULT_CREDENTIALS_PATH,
        *,
        url: str | None = None,
        token: str | None = None,
        team_id: int | None = None,
        timeout: float = 10.0,
    ) -> BackfillClient:
        """Connection settings from arguments, else ``BACKFILL_URL`` / ``BACKFILL_TOKEN`` /
        ``BACKFILL_TEAM_ID``, else the credentials file ``backfill serve`` writes on its
        first start (``./.backfill/credentials.json``), field by field in that order."""
        env_team = os.environ.get("BACKFILL_TEAM_ID") or None
        found: dict[str, Any] = {
            "url": url or os.environ.get("BACKFILL_URL") or None,
            "token": token or os.environ.get("BACKFILL_TOKEN") or None,
            "team_id": team_id if team_id is not None else env_team,
        }
        path = Path(credentials_path)
        if any(v is None for v in found.values()) and path.exists():
            try:
                creds = json.loads(path.read_text())
            except (OSError, ValueError) as exc:
                raise BackfillConfigError(f"cannot read credentials file {path}: {exc}") from exc
            if not isinstance(creds, dict):
                raise BackfillConfigError(f"credentials file {path} is not a JSON object")
            for key in found:
                if found[key] is None:
                    found[key] = creds.get(key)
        missing = [key for key, value in found.items() if value is None or value == ""]
        if missing:
            names = {"url": "BACKFILL_URL", "token": "BACKFILL_TOKEN", "team_id": "BACKFILL_TEAM_ID"}
            where = f"{path} does not exist" if not path.exists() else f"{path} lacks {', '.join(missing)}"
            raise BackfillConfigError(
                f"no server connection settings ({', '.join(missing)}): set "
                f"{', '.join(names[m] for m in missing)} in the environment, or run `backfill serve` "
                f"in this directory to write {path} ({where})"
            )
        raw_team = found["team_id"]
        try:
            team = int(raw_team)
        except (TypeError, ValueError):
            raise BackfillConfigError(f"team id must be an integer, got {raw_team!r}") from None
        return cls(str(found["url"]), str(found["token"]), team, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> BackfillClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"BackfillClient(url={self.url!r}, team_id={self.team_id})"

    # ---- transport ----------------------------------------------------------------------

    def _team_path(self, path: str) -> str:
        return f"/v1/teams/{self.team_id}{path}"

    def _send(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        url = self._team_path(path)
        clean = {k: v for k, v in (params or {}).items() if v is not None}
        # GET/PATCH are idempotent and a POST with an Idempotency-Key returns the same backfill.
        retriable = method in ("GET", "PATCH") or bool(headers and "Idempotency-Key" in headers)
        attempt = 0
        while True:
            try:
                response = self._http.request(method, url, params=clean, json=body, headers=headers)
            except httpx.TimeoutException as exc:
                raise BackfillConnectionError(
                    f"the backfill server at {self.url} did not answer in time ({type(exc).__name__})", self.url
                ) from exc
            except httpx.TransportError as exc:
                reason = _single_line(str(exc)) or type(exc).__name__
                raise BackfillConnectionError(
                    f"cannot reach the backfill server at {self.url}: {reason}", self.url
                ) from exc
            status = response.status_code
            if status in _RETRY_STATUSES and (retriable or status == 429) and attempt < _MAX_RETRIES:
                attempt += 1
                self._sleep(self._retry_after(response, attempt))
                continue
            return response

    @staticmethod
    def _retry_after(response: httpx.Response, attempt: int) -> float:
        try:
            seconds = float(response.headers.get("Retry-After", ""))
        except ValueError:
            seconds = 0.5 * 2 ** (attempt - 1)
        return max(0.0, min(seconds, _MAX_RETRY_WAIT))

    def _error(self, response: httpx.Response) -> BackfillApiError:
        status = response.status_code
        request_id = response.headers.get("X-Request-ID")
        code = code_for_status(status)
        message = ""
        try:
            payload = response.json()
        except ValueError:
            payload = None
        if isinstance(payload, dict):
            meta = payload.get("meta")
            if isinstance(meta, dict) and isinstance(meta.get("request_id"), str):
                request_id = meta["request_id"]
            error = payload.get("error")
            if isinstance(error, dict):
                code = str(error.get("code") or code)
                message = str(error.get("message") or "")
                if error.get("description"):
                    message = f"{message}: {error['description']}" if message else str(error["description"])
        if not message:
            snippet = _single_line(response.text)[:200]
            message = f"HTTP {status} {response.reason_phrase}" + (f" from {self.url}: {snippet}" if snippet else "")
        return BackfillApiError(status, code, _single_line(message), request_id)

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._unwrap(self._send(method, path, **kwargs))[0]

    def _unwrap(self, response: httpx.Response) -> tuple[Any, dict[str, Any]]:
        if response.status_code >= 400:
            raise self._error(response)
        try:
            payload = response.json()
        except ValueError:
            payload = None
        if not isinstance(payload, dict) or "data" not in payload:
            raise BackfillApiError(
                response.status_code,
                "INVALID_RESPONSE",
                f"unexpected response from {self.url}{response.request.url.path} (is this a backfill server?)",
                response.headers.get("X-Request-ID"),
            )
        meta = payload.get("meta")
        return payload["data"], meta if isinstance(meta, dict) else {}

    def _pages(self, path: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """Every item of a paged list (``meta.total``)."""
        items: list[dict[str, Any]] = []
        offset = 0
        while True:
            data, meta = self._unwrap(
                self._send("GET", path, params={**(params or {}), "limit": _PAGE, "offset": offset})
            )
            items.extend(data)
            offset += len(data)
            total = meta.get("total")
            if not data or not isinstance(total, int) or offset >= total:
                return items

    # ---- transfers (pipelines) --------------------------------------------------------

    def pipelines(self) -> list[dict[str, Any]]:
        """Every pipeline (transfer) of the team."""
        return self._pages("/transfers")

    def pipeline(self, id_or_uuid: int | str) -> dict[str, Any]:
        """One pipeline by numeric id, or by uuid (looked up in the team's pipelines)."""
        if isinstance(id_or_uuid, int) and not isinstance(id_or_uuid, bool):
            data: dict[str, Any] = self._request("GET", f"/transfers/{id_or_uuid}")
            return data
        key = str(id_or_uuid).strip()
        if not key:
            raise BackfillApiError(404, "NOT_FOUND", "no pipeline given")
        found = self.pipelines()
        for item in found:
            if item.get("uuid") == key:
                return item
        if key.isdigit():
            return self.pipeline(int(key))
        known = ", ".join(sorted(str(p.get("uuid")) for p in found)[:20]) or "none"
        raise BackfillApiError(404, "NOT_FOUND", f"no pipeline {key!r} in team {self.team_id} (pipelines: {known})")

    def _pipeline_id(self, pipeline: int | str) -> int:
        if isinstance(pipeline, int) and not isinstance(pipeline, bool):
            return pipeline
        return int(self.pipeline(pipeline)["id"])

    # ---- backfills --------------------------------------------------------------------

    @staticmethod
    def _backfill_body(
        start: str | date | datetime, end: str | date | datetime, settings: BackfillSettings
    ) -> dict[str, Any]:
        unknown = sorted(set(settings) - set(BackfillSettings.__annotations__))
        if unknown:
            raise TypeError(f"unknown backfill setting(s): {', '.join(unknown)}")
        body: dict[str, Any] = {
            "range_start": _text(start),
            "range_end": _text(end),
            "interval_type": settings.get("interval_type", "day"),
            "interval_units": settings.get("interval_units", 1),
        }
        body.update({k: v for k, v in settings.items() if v is not None and k not in body})
        variables, blocks = settings.get("variables"), settings.get("block_uuids")
        if variables is not None:
            body["variables"] = dict(variables)
        if blocks is not None:
            body["block_uuids"] = list(blocks)
        return body

    def create_backfill(
        self,
        pipeline: int | str,
        start: str | date | datetime,
        end: str | date | datetime,
        *,
        idempotency_key: str | None = None,
        **settings: Unpack[BackfillSettings],
    ) -> dict[str, Any]:
        """Create a backfill of ``pipeline`` (id or uuid) over ``[start, end]`` (both
        inclusive) with :class:`BackfillSettings` and start it. The same
        ``idempotency_key`` returns the same backfill."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        path = f"/transfers/{self._pipeline_id(pipeline)}/backfills"
        data: dict[str, Any] = self._request(
            "POST", path, body=self._backfill_body(start, end, settings), headers=headers
        )
        return data

    def dry_run(
        self,
        pipeline: int | str,
        start: str | date | datetime,
        end: str | date | datetime,
        **settings: Unpack[BackfillSettings],
    ) -> dict[str, Any]:
        """The intervals a backfill with these settings would run and those ``reprocess``
        would skip, without saving anything."""
        path = f"/transfers/{self._pipeline_id(pipeline)}/backfills:dry_run"
        data: dict[str, Any] = self._request("POST", path, body=self._backfill_body(start, end, settings))
        return data

    def backfills(
        self,
        status: str | Iterable[str] | None = None,
        pipeline: int | str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[dict[str, Any]]:
        """Backfills of the team, newest first; by default the unfinished ones (CREATED,
        SCHEDULED, RUNNING, FAILED). ``status`` is one status, a comma-separated string or
        a list; ``"ALL"`` means every status."""
        statuses: str | None = None
        if status is not None:
            parts = status.split(",") if isinstance(status, str) else list(status)
            names = [p.strip().upper() for p in parts if p.strip()]
            if "ALL" in names:
                names = list(BACKFILL_STATUSES)
            statuses = ",".join(dict.fromkeys(names)) or None
        params: dict[str, Any] = {"status": statuses, "limit": limit, "offset": offset}
        if pipeline is not None:
            params["transfer_id"] = self._pipeline_id(pipeline)
        data: list[dict[str, Any]] = self._request("GET", "/backfills", params=params)
        return data

    def backfill(self, backfill_id: int) -> dict[str, Any]:
        """One backfill with its live counters, error report and metrics."""
        data: dict[str, Any] = self._request("GET", f"/backfills/{int(backfill_id)}")
        return data

    def latest_backfill(self, pipeline: int | str) -> dict[str, Any]:
        """The latest backfill of a pipeline, any status (404 if it has none)."""
        data: dict[str, Any] = self._request("GET", f"/transfers/{self._pipeline_id(pipeline)}/backfills/latest")
        return data

    def coverage(
        self,
        pipeline: int | str,
        start: str | date | datetime,
        end: str | date | datetime,
        *,
        interval_type: str = "day",
        interval_units: int = 1,
        cron: str | None = None,
        timezone: str | None = None,
        split: str | None = None,
    ) -> dict[str, Any]:
        """Which intervals of a pipeline are completed, failed, running, queued, cancelled
        or never ran (MISSING), over all its backfills: ``{"total", "counts", "spans":
        [{"start", "end", "last_start", "status", "count", "backfill_id"}]}``.
        ``split="day"``: spans cut at every local midnight of the series' zone."""
        params: dict[str, Any] = {
            "start": _text(start),
            "end": _text(end),
            "interval_type": interval_type,
            "interval_units": interval_units,
        }
        if cron is not None:
            params["cron"] = cron
        if timezone is not None:
            params["timezone"] = timezone
        if split is not None:
            params["split"] = split
        data: dict[str, Any] = self._request("GET", f"/transfers/{self._pipeline_id(pipeline)}/coverage", params=params)
        return data

    def backfill_coverage(self, backfill_id: int, *, split: str | None = None) -> dict[str, Any]:
        """The intervals of one backfill by the status of its own runs, as spans (the shape
        of :meth:`coverage`); ``split="day"`` cuts them at local midnight."""
        params = {} if split is None else {"split": split}
        data: dict[str, Any] = self._request("GET", f"/backfills/{int(backfill_id)}/coverage", params=params)
        return data

    def notifications(self, backfill_id: int) -> list[dict[str, Any]]:
        """The webhook notifications of a backfill with their delivery attempts."""
        data: list[dict[str, Any]] = self._request("GET", f"/backfills/{int(backfill_id)}/notifications")
        return data

    def _patch(self, backfill_id: int, body: Mapping[str, Any]) -> dict[str, Any]:
        data: dict[str, Any] = self._request("PATCH", f"/backfills/{int(backfill_id)}", body=body)
        return data

    def cancel(self, backfill_id: int) -> dict[str, Any]:
        """Cancel: queued runs are cancelled, running ones finish; the record stays readable."""
        return self._patch(backfill_id, {"status": "CANCELLED"})

    def retry(self, backfill_id: int) -> dict[str, Any]:
        """Re-run the failed and cancelled intervals of a FAILED backfill."""
        return self._patch(backfill_id, {"status": "SCHEDULED"})

    def pause(self, backfill_id: int) -> dict[str, Any]:
        """Start no new runs (running ones finish)."""
        return self._patch(backfill_id, {"paused": True})

    def resume(self, backfill_id: int) -> dict[str, Any]:
        return self._patch(backfill_id, {"paused": False})

    def set_notify(self, backfill_id: int, webhooks: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
        """Replace the webhooks of a backfill that is not final (``[]`` removes them):
        each ``{"url", "events"?, "secret"?}``; secrets are write-only, give them again."""
        return self._patch(backfill_id, {"notify": [dict(h) for h in webhooks]})

    def rerun(
        self,
        backfill_id: int,
        *,
        run_ids: Iterable[int] | None = None,
        data_dates: Iterable[str | date | datetime] | None = None,
        statuses: Iterable[str] | None = None,
    ) -> dict[str, Any]:
        """Re-queue chosen intervals (exactly one of ``run_ids``, ``data_dates``,
        ``statuses``) as new attempts; running ones are left alone. Returns
        ``{"requeued", "running", "backfill"}``. A FAILED backfill is SCHEDULED again."""
        body: dict[str, Any] = {}
        if run_ids is not None:
            body["run_ids"] = [int(i) for i in run_ids]
        if data_dates is not None:
            body["data_dates"] = [_text(d) for d in data_dates]
        if statuses is not None:
            body["statuses"] = [str(s).upper() for s in statuses]
        data: dict[str, Any] = self._request("POST", f"/backfills/{int(backfill_id)}/runs:rerun", body=body)
        return data

    def set_max_active_runs(self, backfill_id: int, n: int) -> dict[str, Any]:
        return self._patch(backfill_id, {"max_active_runs": n})

    def rename(self, backfill_id: int, name: str) -> dict[str, Any]:
        return self._patch(backfill_id, {"name": name})

    def wait(
        self,
        backfill_id: int,
        *,
        poll: float = 1.0,
        on_progress: Callable[[dict[str, Any]], None] | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Poll until the backfill is COMPLETED, FAILED or CANCELLED and return it.

        ``on_progress`` is called with every object read (the last one included).
        ``timeout`` (seconds) raises :class:`TimeoutError`; a paused backfill is waited for.
        """
        deadline = time.monotonic() + timeout if timeout is not None else None
        while True:
            current = self.backfill(backfill_id)
            if on_progress is not None:
                on_progress(current)
            if current.get("status") in FINISHED_STATUSES:
                return current
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"backfill {backfill_id} is still {current.get('status')} after {timeout:g} s")
            self._sleep(poll)

    # ---- runs ---------------------------------------------------------------------------

    def runs(
        self,
        backfill_id: int,
        status: str | Iterable[str] | None = None,
        issues_only: bool = False,
        limit: int = 100,
        offset: int = 0,
        *,
        sort_field: str | None = None,
        sort_direction: str | None = None,
    ) -> list[dict[str, Any]]:
        """Interval runs of a backfill (by data date, ascending, unless sorted otherwise)."""
        statuses = None
        if status is not None:
            parts = status.split(",") if isinstance(status, str) else list(status)
            statuses = ",".join(p.strip().upper() for p in parts if p.strip()) or None
        params = {
            "status": statuses,
            "filter_issues_only": "true" if issues_only else None,
            "sort_field": sort_field,
            "sort_direction": sort_direction,
            "limit": limit,
            "offset": offset,
        }
        data: list[dict[str, Any]] = self._request("GET", f"/backfills/{int(backfill_id)}/runs", params=params)
        return data

    def run(self, run_id: int) -> dict[str, Any]:
        """One interval run with per-block ``query_details``."""
        data: dict[str, Any] = self._request("GET", f"/transfer_runs/{int(run_id)}")
        return data

    def logs(self, run_id: int, offset: int = 0, attempt: int | None = None) -> dict[str, Any]:
        """One attempt's output (default the latest) from character ``offset``: ``{"content",
        "offset", "next_offset", "complete", "attempt", "attempts", "status",
        "pipeline_version", "error", "run_final"}``; pass ``next_offset`` back to tail,
        stop when ``complete`` (and ``run_final``, to follow later attempts too)."""
        params: dict[str, Any] = {"offset": offset, "attempt": attempt}
        data: dict[str, Any] = self._request("GET", f"/transfer_runs/{int(run_id)}/logs", params=params)
        return data
