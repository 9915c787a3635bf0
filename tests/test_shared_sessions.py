"""A conversation keeps its route across replicas: two `junction serve` processes with the seed config's
routes share routing sessions through a real redis-server (`state: {backend: redis}`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest
import yaml

from tests.procs import start_gateway

ROOT = Path(__file__).resolve().parent.parent
REVIEW = "Can you review this function and point out bugs?\n\ndef mean(xs):\n    return sum(xs) / len(xs) + 1"
FOLLOW_UP = "ok, and the same for an empty list?"


def config(mock: str, redis: str | None, folder: Path) -> Path:
    seed = yaml.safe_load((ROOT / "plano_config.yaml").read_text())
    for provider in seed["llm_providers"]:
        provider["base_url"] = f"{mock}/v1"
    seed["listeners"][0]["address"] = "127.0.0.1"
    if redis is not None:
        seed["state"] = {"backend": "redis", "url": redis}
    path = folder / ("shared.yaml" if redis else "alone.yaml")
    path.write_text(yaml.safe_dump(seed))
    return path


@pytest.fixture(scope="module")
def pair(mock: str, redis_service: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    path = config(mock, redis_service.url, tmp_path_factory.mktemp("sessions"))
    env = {"DEEPSEEK_API_KEY": "sk-ds", "MOONSHOTAI_API_KEY": "sk-kimi"}
    first, a = start_gateway(path, env, "--log-level", "warning", "--no-access-log")
    second, b = start_gateway(path, env, "--log-level", "warning", "--no-access-log")
    with first, second:
        yield [a, b]


def decide(base: str, text: str, session: str) -> dict[str, Any]:
    # Only the new turn, as a client that keeps the conversation itself sends it: the session header links them.
    body = {"model": "claude-opus-4-8", "messages": [{"role": "user", "content": text}]}
    return httpx.post(f"{base}/routing/v1/messages", json=body, headers={"x-junction-session": session}, timeout=60).json()


def test_a_conversation_keeps_its_route_on_another_replica(pair: list[str]) -> None:
    first = decide(pair[0], REVIEW, "conversation-1")
    assert first["route"] == "code_review"
    second = decide(pair[1], FOLLOW_UP, "conversation-1")  # the other replica, same conversation
    assert second["route"] == "code_review" and second["reason"] in ("followup", "sticky")
    alone = decide(pair[1], FOLLOW_UP, "conversation-2")  # the same turn opening a conversation of its own
    assert alone["route"] != "code_review"


def test_a_config_with_other_routes_leaves_the_old_bindings_behind(pair: list[str], mock: str, redis_service: Any,
                                                                    tmp_path: Path) -> None:  # fmt: skip
    """Bindings live under a digest of the routes: a replica whose code_review route serves another model
    does not continue a conversation bound under the old routes (its follow-up is decided afresh)."""
    assert decide(pair[0], REVIEW, "conversation-3")["route"] == "code_review"
    changed = yaml.safe_load(config(mock, redis_service.url, tmp_path).read_text())
    review = next(p for p in changed["routing_preferences"] if p["name"] == "code_review")
    review["models"] = ["deepseek-v4-flash"]
    path = tmp_path / "changed.yaml"
    path.write_text(yaml.safe_dump(changed))
    other, base = start_gateway(path, {"DEEPSEEK_API_KEY": "sk-ds", "MOONSHOTAI_API_KEY": "sk-kimi"},
                                "--log-level", "warning", "--no-access-log")  # fmt: skip
    with other:
        assert decide(base, FOLLOW_UP, "conversation-3")["route"] != "code_review"
    assert decide(pair[1], FOLLOW_UP, "conversation-3")["route"] == "code_review"  # same routes: still bound
