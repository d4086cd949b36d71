"""``offload logs JOB_ID``: the story of every request that touched one job.

A job's lines carry its ``job_id`` label (web once the job is recorded, worker for every
line of a delivery, web for a cancel or resubmit); the requests those lines belong to
(the submission, whose id the deliveries carry, a cancel, a resubmit) are then read in
full by their ``request_id``, so lines without the job label (the emulator's dispatches,
the access line) are part of the story too.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from offload.logs import LABELS, parse_line
from offload.logsearch import CLOUD_PAGE_SIZE, LocalTail, build_filter

__all__ = ["JobTail", "cloud_job_entries", "request_of"]

# Request ids per query: keeps a filter far below Cloud Logging's 20,000-character limit.
_IDS_PER_QUERY = 50


def request_of(entry: dict[str, Any]) -> str:
    """The request id of a local-shaped or Cloud Logging entry."""
    labels = entry.get(LABELS) or entry.get("labels") or {}
    return str(labels.get("request_id") or "")


def _labels(entry: dict[str, Any] | None) -> dict[str, Any]:
    return (entry or {}).get(LABELS) or {}


class JobTail(LocalTail):
    """The lines of every request that touched one job, in the local files, each read once."""

    def __init__(self, log_dir: str, job_id: str) -> None:
        super().__init__(log_dir, job_id)
        self.job_id = job_id
        self.request_ids: set[str] = set()

    def poll(self) -> list[dict[str, Any]]:
        """The story's entries written since the last poll (all of them the first time)."""
        lines = self.new_lines()
        for line in lines:
            if self._needle in line:
                labels = _labels(parse_line(line))
                if labels.get("job_id") == self.job_id and labels.get("request_id"):
                    self.request_ids.add(str(labels["request_id"]))
        needles = [self._needle, *(json.dumps(r) for r in self.request_ids)]
        found = []
        for line in lines:
            if not any(needle in line for needle in needles):
                continue
            entry = parse_line(line)
            labels = _labels(entry)
            if entry and (
                labels.get("job_id") == self.job_id or labels.get("request_id") in self.request_ids
            ):
                found.append(entry)
        return found


def _list(client: Any, filter_: str) -> list[dict[str, Any]]:
    entries = client.list_entries(
        filter_=filter_, order_by="timestamp asc", page_size=CLOUD_PAGE_SIZE
    )
    return [entry.to_api_repr() for entry in entries]


def cloud_job_entries(client: Any, job_id: str, since: dt.datetime) -> list[dict[str, Any]]:
    """Entries of every request that touched ``job_id`` from ``since`` on, each once."""
    tagged = _list(client, build_filter(job_id, since, label="job_id"))
    request_ids = sorted({r for r in (request_of(e) for e in tagged) if r})
    found = {str(e.get("insertId") or json.dumps(e, sort_keys=True)): e for e in tagged}
    for i in range(0, len(request_ids), _IDS_PER_QUERY):
        for entry in _list(client, build_filter(request_ids[i : i + _IDS_PER_QUERY], since)):
            found.setdefault(str(entry.get("insertId") or json.dumps(entry, sort_keys=True)), entry)
    return sorted(found.values(), key=lambda e: str(e.get("timestamp", "")))
