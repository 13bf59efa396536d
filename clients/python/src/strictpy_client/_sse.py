"""A Server-Sent Events parser for ``GET /v1/jobs/{id}/events``, shared by
the sync and async clients: lines in, :class:`JobEvent` out."""

from __future__ import annotations

import json
from typing import Any, cast

from .models import JobEvent, JobEventKind

STREAM_READ_TIMEOUT = 60.0
"""Read timeout of an event stream: the server sends a comment every 15 s
while nothing happens, so a longer silence means the connection is gone."""


class EventParser:
    """Collects the fields of one event until its blank line."""

    def __init__(self) -> None:
        self._event = "message"
        self._id: str | None = None
        self._data: list[str] = []

    def feed(self, line: str) -> JobEvent | None:
        """Takes one line (without its line break); returns an event when
        the line ends one."""
        if line == "":
            if not self._data:
                self._event = "message"
                return None
            raw = "\n".join(self._data)
            kind, event_id = self._event, self._id or ""
            self._event, self._data = "message", []
            try:
                data: Any = json.loads(raw)
            except ValueError:
                data = {"text": raw}
            if not isinstance(data, dict):
                data = {"value": data}
            return JobEvent(kind=cast(JobEventKind, kind), id=event_id, data=data)
        if line.startswith(":"):
            return None  # a comment (keep-alive)
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id":
            self._id = value
        return None
