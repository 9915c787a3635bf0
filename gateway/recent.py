"""The most recent LLM requests of this process (a bounded ring), for the console: each one's ledger
row and routing decision. Prompt text is kept only when prompt logging is on (`access_log.prompts`)."""

from __future__ import annotations

from collections import deque
from typing import Any

from gateway.ledger import UsageEvent


class RecentRequests:
    def __init__(self, size: int = 500, keep_text: bool = False) -> None:
        self.entries: deque[dict[str, Any]] = deque(maxlen=size)
        self.keep_text = keep_text

    def add(self, event: UsageEvent, decision: Any) -> None:
        entry = event._asdict()
        if decision is not None:
            detail = decision.as_dict()
            if not self.keep_text:
                detail.pop("text", None)
            entry["decision"] = detail
        self.entries.append(entry)

    def latest(self, limit: int = 100) -> list[dict[str, Any]]:
        return [self.summary(e) for e in list(self.entries)[-limit:][::-1]]

    @staticmethod
    def summary(entry: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in entry.items() if k != "decision"} | {
            "reason": (entry.get("decision") or {}).get("reason")}

    def find(self, request_id: str) -> dict[str, Any] | None:
        return next((e for e in reversed(self.entries) if e["request_id"] == request_id or e["id"] == request_id), None)
