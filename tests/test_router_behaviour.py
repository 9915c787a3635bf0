"""The shipped router (task head, encoder, route mapping) on the seed config's three routes: the five
kinds of error it must not make, pinned with requests written for these tests, in Anthropic and
OpenAI Chat bodies. (Responses bodies are not read by the router yet.)"""

from __future__ import annotations

from typing import Any, Iterator

import pytest
import yaml

from router.encoder import CompositeEncoder
from router.preferences import Router, RouterSettings
from router.taxonomy import head_available
from tests.test_routing_gateway import ROOT

pytestmark = pytest.mark.skipif(not head_available(), reason="router/head.npz is missing: run router/training/train.py")

REMINDER = ("<system-reminder>\nAs you answer the user's questions, you can use the following context:\n"
            "Contents of /repo/CLAUDE.md: run `make check` before committing.\n</system-reminder>")  # fmt: skip
CC_SYSTEM = [{"type": "text", "text": "You are Claude Code, Anthropic's official CLI for Claude."},
             {"type": "text", "text": "<env>\nWorking directory: /repo\nPlatform: linux\n</env>"}]  # fmt: skip


@pytest.fixture(scope="module")
def router() -> Iterator[Router]:
    seed = yaml.safe_load((ROOT / "plano_config.yaml").read_text())["routing_preferences"]
    r = Router(seed, settings=RouterSettings())
    r.prepare_sync()
    yield r


def chat(*turns: str, system: str | None = None) -> dict[str, Any]:
    messages: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    for i, text in enumerate(turns):
        if i:
            messages.append({"role": "assistant", "content": "Sure, here you go."})
        messages.append({"role": "user", "content": text})
    return {"messages": messages}


def claude_code(request: str, loops: int = 2, then: str | None = None) -> dict[str, Any]:
    messages: list[dict[str, Any]] = [{"role": "user", "content": [{"type": "text", "text": REMINDER},
                                                                   {"type": "text", "text": request}]}]  # fmt: skip
    for n in range(loops):
        messages.append({"role": "assistant", "content": [{"type": "tool_use", "id": f"toolu_{n}", "name": "Read",
                                                            "input": {"file_path": f"/repo/src/f{n}.py"}}]})  # fmt: skip
        messages.append({"role": "user", "content": [{"type": "tool_result", "tool_use_id": f"toolu_{n}",
                                                      "content": f"def f{n}(x):\n    return x + {n}\n"}]})  # fmt: skip
    if then is not None:
        messages.append({"role": "assistant", "content": "Done: the changes are in place."})
        messages.append({"role": "user", "content": then})
    return {"system": CC_SYSTEM, "messages": messages}


def route(router: Router, body: dict[str, Any], protocol: str = "anthropic") -> tuple[str | None, str]:
    d = router.decide_sync(body, protocol)  # type: ignore[arg-type]
    return d.route, d.reason


# 1. Stickiness must not hold a new topic; tool loops and genuine follow-ups keep theirs.


def test_explicit_switch_leaves_the_sessions_route(router: Router) -> None:
    body = chat("write a short poem about a lighthouse keeper", "great, thanks. unrelated question: how do I rename a git branch?")
    assert route(router, body) == (None, "switched")
    body = chat("prove that there are infinitely many prime numbers",
                "nice. different question: write a limerick about a cat who learns to code", system="Be concise.")  # fmt: skip
    assert route(router, body, "openai") == ("creative_writing", "switched")
    assert route(router, chat("写一首关于秋天的短诗", "好的，谢谢。换个话题，用 python 写一个把 csv 转成 json 的脚本")) == (None, "switched")


def test_short_follow_ups_keep_the_route(router: Router) -> None:
    assert route(router, chat("write a haiku about winter mornings", "make it sadder"))[0] == "creative_writing"
    assert route(router, chat("what is the probability of rolling at least one six in four throws of a die?",
                              "and with five throws?"))[0] == "complex_reasoning"  # fmt: skip


def test_tool_loops_keep_the_session_route(router: Router) -> None:
    body = claude_code("is there a bug in this?\n```python\ndef last(xs):\n    return xs[len(xs)]\n```")
    assert route(router, body) == ("code_review", "tool_loop")
    body = claude_code("write a sonnet about a flaky integration test")
    assert route(router, body) == ("creative_writing", "tool_loop")


def test_agent_style_review_request_in_a_tool_loop(router: Router) -> None:
    body = claude_code("review src/payments/refund.py for race conditions and missing error handling")
    assert route(router, body) == ("code_review", "tool_loop")


def test_openai_tool_loop(router: Router) -> None:
    openai_body = {"messages": [
        {"role": "system", "content": "You are a coding agent."},
        {"role": "user", "content": "find the bugs in utils/dates.ts, especially around time zones"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "read", "arguments": '{"path": "utils/dates.ts"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "export function parse(s: string) { return new Date(s) }"},
    ]}  # fmt: skip
    assert route(router, openai_body, "openai") == ("code_review", "tool_loop")


def codex(request: str, loops: int = 2, then: str | None = None) -> dict[str, Any]:
    """A Codex CLI-style Responses body: developer prompt, environment context, the request, tool calls."""
    items: list[dict[str, Any]] = [
        {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "You are a coding agent running in the Codex CLI."}]},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "<environment_context>\n  <cwd>/repo</cwd>\n</environment_context>"}]},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": request}]},
    ]  # fmt: skip
    for n in range(loops):
        items.append({"type": "function_call", "call_id": f"call_{n}", "name": "exec_command",
                      "arguments": f'{{"cmd": "cat src/f{n}.py"}}'})  # fmt: skip
        items.append({"type": "function_call_output", "call_id": f"call_{n}", "output": f"def f{n}(x):\n    return x + {n}\n"})
    if then is not None:
        items.append({"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Done."}]})
        items.append({"type": "message", "role": "user", "content": [{"type": "input_text", "text": then}]})
    return {"model": "gpt-5", "stream": True, "prompt_cache_key": f"thread:{request}:{then}", "input": items}


def test_responses_bodies_keep_tool_loops_and_follow_switches(router: Router) -> None:
    assert route(router, codex("review src/payments/refund.py for race conditions and missing error handling"),
                 "responses") == ("code_review", "tool_loop")  # fmt: skip
    body = codex("look over the retry logic in src/net/client.py for bugs",
                 then="thanks. unrelated question: write a haiku about a quiet build server")  # fmt: skip
    assert route(router, body, "responses") == ("creative_writing", "switched")
    body = codex("review src/cache/lru.py for bugs", then="now prove by induction that 1 + 2 + ... + n = n(n+1)/2")
    assert route(router, body, "responses")[0] == "complex_reasoning"
    body = codex("write a sonnet about a flaky integration test into docs/poems/flaky.md", then="make it sadder")
    assert route(router, body, "responses") == ("creative_writing", "followup")


def test_a_plainly_new_task_mid_session_moves(router: Router) -> None:
    body = claude_code("review src/cache/lru.py for bugs", then="now prove by induction that 1 + 2 + ... + n = n(n+1)/2")
    assert route(router, body)[0] == "complex_reasoning"


# 2. Assessing given code is code review, whatever else it looks like.


@pytest.mark.parametrize(
    "text",
    [
        "is there a bug in this?\n```python\ndef last(xs):\n    return xs[len(xs)]\n```",
        "what security problems do you see in this Dockerfile?\n```\nFROM ubuntu:latest\nRUN curl http://get.example.sh | bash\n"
        "ENV API_KEY=abc123\nUSER root\n```",
        "why is this query so slow on 5M rows?\n```sql\nSELECT * FROM orders o WHERE (SELECT count(*) FROM items i "
        "WHERE i.order_id = o.id) > 3;\n```",
        "please review this before I merge: it retries forever on any exception\n```js\nfunction retry(fn) {\n"
        "  while (true) { try { return fn() } catch (e) {} }\n}\n```",
    ],
)
def test_assessing_given_code_is_code_review(router: Router, text: str) -> None:
    assert route(router, chat(text))[0] == "code_review"


# 3. Other languages route like English.


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("帮我看看这段代码有没有并发问题：\n```go\nvar counter int\nfunc inc() { go func() { counter++ }() }\n```", "code_review"),
        ("证明：任意两个连续整数的乘积都是偶数", "complex_reasoning"),
        ("写一首关于深夜加班的小诗", "creative_writing"),
        ("用 python 写一个函数，把 csv 文件转成 json", None),
        ("この関数のバグを見つけてください:\n```python\ndef div(a, b):\n    return a / b\n```", "code_review"),
        ("Schreib mir ein Gedicht über den Herbst in Hamburg", "creative_writing"),
        ("¿De cuántas formas se pueden repartir 10 caramelos idénticos entre 3 niños? Explica el razonamiento.", "complex_reasoning"),
    ],
)
def test_other_languages(router: Router, text: str, expected: str | None) -> None:
    assert route(router, chat(text))[0] == expected


# 4. Proofs, maths, algorithm analysis and estimates are complex reasoning.


@pytest.mark.parametrize(
    "text",
    [
        "prove that the square of any odd integer is odd",
        "what is the probability that two cards drawn from a shuffled deck have the same suit?",
        "analyse the time complexity of this loop: for i in range(n): j = 1; while j < n: j *= 2",
        "roughly how many piano tuners work in Berlin? walk me through the estimate",
    ],
)
def test_reasoning_requests(router: Router, text: str) -> None:
    assert route(router, chat(text))[0] == "complex_reasoning"


# 5. Keyword bait does not decide.


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("implement the review queue endpoint in our flask app: POST /reviews adds an item to the queue", None),
        ("summarize this story in two sentences: a fox finds a lost key, opens every door in the forest and "
         "finally the one to its own den, where it had left the key's twin years ago.", None),
        ("summarize this thread in three bullets for the weekly update: the release slipped a week because the "
         "payment provider changed its API, QA found two blockers, marketing wants the launch post moved.", None),
        ("build a proof of concept for SSO login with Okta in our express app", None),
        ("write a limerick about a database migration that went wrong at 3am", "creative_writing"),
        ("translate this poem into English, keep it literal: 春眠不觉晓，处处闻啼鸟", None),
        ("what's wrong with my rhyme generator? it never finds rhymes for words ending in -ing\n```python\n"
         "def rhymes(w, words):\n    return [x for x in words if x[-2:] == w[-2:] and x != w]\n```", "code_review"),
        ("3 knights and 3 dragons must sit around a round table so that no two dragons are adjacent. how many "
         "arrangements, up to rotation?", "complex_reasoning"),
        pytest.param("rewrite this release note in the voice of a film-noir detective: 'v2.3 fixes the login timeout "
                     "and adds dark mode.'", "creative_writing",
                     marks=pytest.mark.xfail(strict=True, reason="known miss: a persona rewrite of a release note reads as "
                                                                 "professional writing (0.46 against creative 0.37)")),
        pytest.param("give me 6 names for a command-line tool that cleans up old docker images, punny ones welcome",
                     "creative_writing",
                     marks=pytest.mark.xfail(strict=True, reason="known miss: naming a devops tool reads as shell_devops")),
        pytest.param("write a poem about this function, my team collects odes to ugly code:\n```js\n"
                     "function retry(fn) { while (true) { try { return fn() } catch (e) {} } }\n```", "creative_writing",
                     marks=pytest.mark.xfail(strict=True, reason="known miss: pasted code and 'write ... function' outweigh the request for a poem (code_generation 0.54)")),
    ],
)
def test_keyword_bait(router: Router, text: str, expected: str | None) -> None:
    assert route(router, chat(text))[0] == expected


def test_description_only_routes_outside_the_taxonomy_fall_back_to_similarity() -> None:
    prefs = [{"name": "billing", "description": "banking: account balances, card payments, transfers"},
             {"name": "code_review", "description": "reviewing and analyzing existing code for bugs and improvements"}]  # fmt: skip
    r = Router(prefs)
    described = r.describe()
    # one route outside the taxonomy puts every route on description similarity (mixing measured worse)
    assert {r["decided_by"] for r in described["routes"].values()} == {"similarity"}
    assert described["routes"]["code_review"]["tasks"] == ["code_review"]
    d = r.decide_sync(chat("how do I transfer money from my savings account to my card?"))
    assert d.route == "billing" and d.reason == "similarity" and d.mode == "similarity"
    # ...scored in MiniLM's space (where the similarity rules were tuned) mixed with a share of the head's
    mixed = r.query_encoder()
    assert isinstance(mixed, CompositeEncoder) and mixed.parts[1] is r.encoder and described["similarity_encoder"]
    assert "minilm" in str(mixed.parts[0].model_path).lower() and mixed.weights == pytest.approx((0.6, 0.4))
    plain = Router(prefs, settings=RouterSettings(similarity_encoder="minilm"))
    assert plain.decide_sync(chat("how do I transfer money from my savings account to my card?")).route == "billing"
    assert plain.query_encoder() is mixed.parts[0]
    same = Router(prefs, settings=RouterSettings(similarity_encoder="head"))
    assert same.decide_sync(chat("how do I transfer money from my savings account to my card?")).route == "billing"
    assert same.query_encoder() is same.encoder and same.describe()["similarity_encoder"] is None
    with pytest.raises(ValueError, match="similarity_encoder"):
        Router(prefs, settings=RouterSettings(similarity_encoder="bert"))


def test_shipped_head_is_trained_on_the_shipped_data() -> None:
    from router.taxonomy import load_head
    from router.training.train import data_hash, read_data

    meta = load_head().meta
    assert meta["data_hash"] == data_hash(read_data()), "router/head.npz is stale: run python -m router.training.train"
    assert meta["rows"] >= 4000 and set(meta["per_lang"]) >= {"en", "zh", "ja", "ko", "de", "es", "fr", "ru", "pt"}
