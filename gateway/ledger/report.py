"""`junction usage`: the ledger's daily rollups summed by key, model, route, day or provider (pure
formatting; the query is the store's `report`)."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from typing import Any, Sequence

from gateway.ledger import DAILY_SUMS
from gateway.ledger.sql import DIMENSIONS

NANO = 1_000_000_000


class UsageArgsError(ValueError):
    pass


def parse_by(text: str) -> tuple[str, ...]:
    by = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [d for d in by if d not in DIMENSIONS]
    if unknown or len(set(by)) != len(by):
        raise UsageArgsError(f"--by takes a comma-separated list of {', '.join(DIMENSIONS)}; got {text!r}")
    return by


def parse_since(text: str | None, today: dt.date) -> str:
    """First day to include, YYYY-MM-DD: a date, `Nd` (the last N days, today included), or by
    default the first of this month (UTC)."""
    if text is None:
        return today.replace(day=1).isoformat()
    days = re.fullmatch(r"(\d+)d", text.strip())
    if days:
        count = int(days.group(1))
        if count < 1:
            raise UsageArgsError("--since: at least 1d")
        return (today - dt.timedelta(days=count - 1)).isoformat()
    try:
        return dt.date.fromisoformat(text.strip()).isoformat()
    except ValueError:
        raise UsageArgsError(f"--since takes YYYY-MM-DD or a number of days such as 7d; got {text!r}") from None


def usd(nano: int) -> str:
    """Exact decimal dollars from integer nano-dollars."""
    sign = "-" if nano < 0 else ""
    whole, frac = divmod(abs(nano), NANO)
    return f"{sign}{whole}.{frac:09d}"


def complete(rows: Sequence[dict[str, Any]], by: tuple[str, ...]) -> list[dict[str, Any]]:
    """Rows with every sum a whole number and cost in dollars too; an empty ledger gives no rows."""
    out = []
    for row in rows:
        if not row.get("requests"):
            continue  # SUM over no rows at all
        item = {d: row[d] for d in by}
        item.update({s: int(row[s] or 0) for s in DAILY_SUMS})
        item["cost_usd"] = usd(item["cost_nano"])
        out.append(item)
    return out


def as_json(rows: list[dict[str, Any]], by: tuple[str, ...], since: str) -> dict[str, Any]:
    totals = {s: sum(r[s] for r in rows) for s in DAILY_SUMS}
    totals["cost_usd"] = usd(totals["cost_nano"])
    return {"since": since, "by": list(by), "rows": rows, "total": totals}


def as_csv(rows: list[dict[str, Any]], by: tuple[str, ...]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    columns = [*by, *DAILY_SUMS, "cost_usd"]
    writer.writerow(columns)
    for row in rows:
        writer.writerow([row[c] for c in columns])
    return out.getvalue()


def as_table(rows: list[dict[str, Any]], by: tuple[str, ...], since: str) -> str:
    headers = [*by, "requests", "errors", "input", "output", "cache read", "cache write", "cost (USD)"]
    body = [[*(str(r[d]) or "-" for d in by), *(f"{r[s]:,}" for s in DAILY_SUMS[:-1]), f"{r['cost_nano'] / NANO:.6f}"]
            for r in rows]  # fmt: skip
    totals = {s: sum(r[s] for r in rows) for s in DAILY_SUMS}
    body.append(["total", *([""] * (len(by) - 1)), *(f"{totals[s]:,}" for s in DAILY_SUMS[:-1]),
                 f"{totals['cost_nano'] / NANO:.6f}"] if by else
                [*(f"{totals[s]:,}" for s in DAILY_SUMS[:-1]), f"{totals['cost_nano'] / NANO:.6f}"])  # fmt: skip
    widths = [max(len(h), *(len(line[i]) for line in body)) for i, h in enumerate(headers)]
    text = [f"usage since {since} (UTC days)", "  ".join(h.ljust(w) if i < len(by) else h.rjust(w)
                                                           for i, (h, w) in enumerate(zip(headers, widths)))]  # fmt: skip
    for line in body:
        text.append("  ".join(c.ljust(w) if i < len(by) else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths))))
    return "\n".join(text)
