"""The most recent LLM requests of this process (a bounded ring), for the console: each one's ledger
row and routing decision. Prompt text is kept only when prompt logging is on (`access_log.prompts`).

The request path only appends the objects it already has; they become dictionaries when the console
reads them, so a request pays nothing for a page nobody opens."""

from __future__ import annotations

from collections import deque
from typing import Any

from gateway.ledger import UsageEvent


class RecentRequests:
    def __init__(self, size: int = 500, keep_text: bool = False) -> None:
        self._items: deque[tuple[UsageEvent, Any, bool]] = deque(maxlen=size)
        self.keep_text = keep_text

    def add(self, event: UsageEvent, decision: Any) -> None:
        self._items.append((event, decision, self.keep_text))

    @staticmethod
    def _entry(item: tuple[UsageEvent, Any, bool]) -> dict[str, Any]:
        event, decision, keep_text = item
        entry = event._asdict()
        if decision is not None:
            detail = decision.as_dict()
            if not keep_text:
                detail.pop("text", None)
            entry["decision"] = detail
        return entry

    @property
    def events(self) -> list[dict[str, Any]]:
        """The ledger rows alone (what the live, models and usage views add up)."""
        return [item[0]._asdict() for item in list(self._items)]

    def latest(self, limit: int = 100) -> list[dict[str, Any]]:
        return [self.summary(self._entry(item)) for item in list(self._items)[-limit:][::-1]]

    @staticmethod
    def summary(entry: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in entry.items() if k != "decision"} | {
            "reason": (entry.get("decision") or {}).get("reason")}

    def find(self, request_id: str) -> dict[str, Any] | None:
        found = next((item for item in reversed(self._items) if request_id in (item[0].request_id, item[0].id)), None)
        return self._entry(found) if found is not None else None
