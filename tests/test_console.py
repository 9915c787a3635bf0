"""The team console (`/console`) against a real gateway with the seed routes, the mock upstream and real
traffic from the test: its JSON API with plain HTTP, then every page in a real headless Chromium."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest
import yaml

from tests.procs import ROOT, start_gateway

ADMIN, USER = "gw-console-admin-0123456789", "gw-console-user-0123456789"
REVIEW = "Can you review this function and point out bugs?\n\ndef mean(xs):\n    return sum(xs) / len(xs) + 1"


def console_config(mock: str, folder: Path, admin: bool = True) -> Path:
    seed = yaml.safe_load((ROOT / "plano_config.yaml").read_text())
    for provider in seed["llm_providers"]:
        provider["base_url"] = f"{mock}/v1"
        provider["pricing"] = {"input": 0.27, "output": 1.10}
    seed["listeners"][0]["address"] = "127.0.0.1"
    seed["gateway_keys"] = [{"name": "ops", "key": ADMIN, "role": "admin" if admin else "user"},
                            {"name": "dev", "key": USER}]  # fmt: skip
    seed["access_log"] = {"prompts": True}
    path = folder / "console.yaml"
    path.write_text(yaml.safe_dump(seed))
    return path


@pytest.fixture(scope="module")
def gateway(mock: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    path = console_config(mock, tmp_path_factory.mktemp("console"))
    env = {"DEEPSEEK_API_KEY": "sk-console-ds", "MOONSHOTAI_API_KEY": "sk-console-kimi"}
    proc, base = start_gateway(path, env, "--log-level", "warning")
    with proc:
        yield base


def ask(base: str, text: str, key: str = USER) -> httpx.Response:
    body = {"model": "claude-sonnet-4-5", "max_tokens": 32, "messages": [{"role": "user", "content": text}]}
    return httpx.post(f"{base}/v1/messages", json=body, headers={"x-api-key": key}, timeout=60)


def console_api(base: str, name: str, key: str = ADMIN, **kwargs: Any) -> httpx.Response:
    method = "POST" if "json" in kwargs else "GET"
    return httpx.request(method, f"{base}/console/api/{name}", headers={"authorization": f"Bearer {key}"},
                         timeout=60, **kwargs)  # fmt: skip


def test_only_admin_keys_open_the_console(gateway: str) -> None:
    login = httpx.get(f"{gateway}/console")
    assert login.status_code == 200 and 'name=key' in login.text and "role: admin" in login.text
    assert console_api(gateway, "live", USER).status_code == 403
    assert "not an admin key" in httpx.get(f"{gateway}/console", headers={"x-api-key": USER}).text
    assert httpx.get(f"{gateway}/console/api/live").status_code == 401
    refused = httpx.post(f"{gateway}/console/login", data={"key": USER})
    assert refused.status_code == 403 and "set-cookie" not in refused.headers
    assert httpx.post(f"{gateway}/console/login", data={"key": "wrong"}).status_code == 401
    signed = httpx.post(f"{gateway}/console/login", data={"key": ADMIN})
    assert signed.status_code == 303 and "httponly" in signed.headers["set-cookie"].lower()
    cookie = signed.cookies["junction_console"]
    assert ADMIN not in cookie  # a signed session, not the key
    page = httpx.get(f"{gateway}/console", cookies={"junction_console": cookie})
    assert page.status_code == 200 and "console.js" in page.text
    assert httpx.get(f"{gateway}/console/api/live", cookies={"junction_console": cookie}).status_code == 200
    forged = cookie[:-4] + ("0000" if not cookie.endswith("0000") else "1111")
    assert httpx.get(f"{gateway}/console/api/live", cookies={"junction_console": forged}).status_code == 401


def test_the_console_is_off_without_an_admin_key(mock: str, tmp_path: Path) -> None:
    proc, base = start_gateway(console_config(mock, tmp_path, admin=False), {"DEEPSEEK_API_KEY": "x"},
                               "--log-level", "warning")  # fmt: skip
    with proc:
        page = httpx.get(f"{base}/console")
        assert page.status_code == 404 and "no gateway key has role: admin" in page.text
        assert console_api(base, "live").status_code == 404


def test_a_request_shows_with_its_route_scores_and_what_decided_it(gateway: str) -> None:
    answer = ask(gateway, REVIEW)
    assert answer.status_code == 200 and answer.headers["x-junction-route"] == "code_review"
    request_id = answer.headers["x-junction-request-id"]
    listed = console_api(gateway, "requests").json()
    mine = next(r for r in listed["requests"] if r["request_id"] == request_id)
    assert (mine["key_name"], mine["route"], mine["model"]) == ("dev", "code_review", "deepseek/deepseek-v4-pro")
    assert mine["cost_nano"] > 0 and mine["input_tokens"] > 0
    detail = console_api(gateway, f"requests/{request_id}").json()
    decision = detail["request"]["decision"]
    assert decision["route"] == "code_review" and set(decision["scores"]) == {"code_review", "creative_writing",
                                                                              "complex_reasoning"}  # fmt: skip
    assert "review this function" in decision["text"]  # prompt logging is on in this config
    assert detail["nearest_training"] or detail["nearest_route_texts"]
    live = console_api(gateway, "live").json()
    assert live["requests"] >= 1 and live["latency_ms"]["p50"] is not None


def test_the_playground_agrees_with_the_routing_api_and_what_if_edits_change_it(gateway: str) -> None:
    poem = "Write a short poem about autumn rain falling on a quiet harbour town."
    body = {"model": "x", "messages": [{"role": "user", "content": poem}]}
    api = httpx.post(f"{gateway}/routing/v1/messages", json=body, headers={"x-api-key": USER}, timeout=60).json()
    played = console_api(gateway, "route", json={"input": poem}).json()
    assert played["decision"]["route"] == api["route"] == "creative_writing"
    import json

    as_json = console_api(gateway, "route", json={"input": json.dumps(body)}).json()
    assert as_json["decision"]["route"] == api["route"] and as_json["protocol"] == "anthropic"
    routes = console_api(gateway, "routes").json()["routes"]
    assert [r["name"] for r in routes] == ["complex_reasoning", "code_review", "creative_writing"]
    # what if creative_writing were only about marketing copy, and a new route took verse?
    edited = [r for r in routes if r["name"] != "creative_writing"] + [
        {"name": "creative_writing", "description": "marketing copy and product announcements for launches"},
        {"name": "verse", "description": "poems, poetry, verse and song lyrics", "examples": ["write me a haiku"]}]
    what_if = console_api(gateway, "route", json={"input": poem, "routes": edited}).json()
    assert what_if["decision"]["route"] == "verse"
    assert "name: verse" in what_if["yaml"] and "routing_preferences:" in what_if["yaml"]
    again = console_api(gateway, "route", json={"input": poem}).json()  # nothing was saved
    assert again["decision"]["route"] == "creative_writing"
    assert console_api(gateway, "route", json={"nope": 1}).status_code == 400


def test_usage_models_and_config_pages_have_their_data(gateway: str) -> None:
    ask(gateway, "Prove that the square root of 2 is irrational.")
    import time

    time.sleep(1.5)  # the ledger's flush
    usage = console_api(gateway, "usage", params={"by": "key,route"}).json()
    assert usage["source"] == "ledger" and any(r["key"] == "dev" for r in usage["rows"])
    models = console_api(gateway, "models").json()["models"]
    assert {m["model"] for m in models} >= {"deepseek/deepseek-v4-pro", "moonshotai/kimi-for-coding"}
    flash = next(m for m in models if m["model"] == "deepseek/deepseek-v4-flash")
    assert flash["default"] and "arch.claude.code.small.fast" in flash["aliases"] and flash["key"] == "set"
    kimi = next(m for m in models if m["model"] == "moonshotai/kimi-for-coding")
    assert kimi["requests_5m"] >= 1 and kimi["errors_5m"] == 0 and kimi["failures_in_a_row"] == 0
    assert kimi["in_flight"] == 0 and kimi["upstream_ms"] > 0
    older = console_api(gateway, "requests", params={"source": "ledger", "limit": 5}).json()
    assert older["source"] == "ledger" and older["requests"] and older["requests"][0]["key_name"] == "dev"
    assert [r["ts"] for r in older["requests"]] == sorted((r["ts"] for r in older["requests"]), reverse=True)
    config = console_api(gateway, "config").json()
    assert config["source"].endswith("console.yaml") and "gateway_keys" in config["text"]
    assert ADMIN not in config["text"] and USER not in config["text"]  # secrets masked


# -- in a real browser ------------------------------------------------------------------------------
def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    binary = chromium()
    if binary is None:
        reason = "Debian's chromium is not installed (make test installs it when it runs as root)"
        print(f"\nskipping the console's browser tests: {reason}")
        pytest.skip(reason)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (it is in the dev lock: make install)")
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=binary, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])  # fmt: skip
        yield launched
        launched.close()


@pytest.fixture()
def page(browser: Any, gateway: str, tmp_path: Path) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{gateway}/console")
    page.fill("input[name=key]", ADMIN)
    page.click("button[type=submit]")
    page.wait_for_selector("#live-tiles .tile")
    page.errors = errors  # type: ignore[attr-defined]
    yield page
    context.close()


SHOTS = Path(os.environ.get("JUNCTION_CONSOLE_SHOTS", "")) if os.environ.get("JUNCTION_CONSOLE_SHOTS") else None


def shot(page: Any, tmp_path: Path, name: str) -> None:
    page.screenshot(path=str(tmp_path / f"console-{name}.png"), full_page=True)
    if SHOTS is not None:  # `make screenshots`: the console page's pictures (docs/images)
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / f"console-{name}.png"), full_page=True)


def test_every_page_loads_without_errors_in_chromium(page: Any, gateway: str, tmp_path: Path) -> None:
    answer = ask(gateway, REVIEW)
    request_id = answer.headers["x-junction-request-id"]
    shot(page, tmp_path, "live")
    page.click("nav a[data-page=requests]")
    row = page.wait_for_selector(f"tr[data-id='{request_id}']")
    assert "code_review" in row.inner_text()
    page.click("#requests-older")  # the ledger's rows (every process's) below the recent ones
    page.wait_for_selector("#requests-older", state="hidden")
    row.click()
    page.wait_for_selector("#request-detail .bars")
    assert "code_review" in page.inner_text("#request-detail")
    shot(page, tmp_path, "requests")
    for name, ready in (("usage", "#usage-table tbody tr"), ("models", "#models-table tbody tr"),
                        ("config", "#config-text:not(:empty)")):  # fmt: skip
        page.click(f"nav a[data-page={name}]")
        page.wait_for_selector(ready)
        shot(page, tmp_path, name)
    assert page.errors == []  # type: ignore[attr-defined]
    assert all((tmp_path / f"console-{n}.png").stat().st_size > 5000 for n in ("live", "requests", "usage", "models", "config"))


def test_the_playground_in_chromium_matches_the_api_and_follows_an_edit(page: Any, gateway: str, tmp_path: Path) -> None:
    poem = "Write a short poem about autumn rain falling on a quiet harbour town."
    expected = httpx.post(f"{gateway}/routing/v1/messages", timeout=60, headers={"x-api-key": USER},
                          json={"model": "x", "messages": [{"role": "user", "content": poem}]}).json()["route"]  # fmt: skip
    page.click("nav a[data-page=playground]")
    page.wait_for_selector("#pg-routes .route")
    page.fill("#pg-input", poem)
    page.click("#pg-route")
    page.wait_for_selector("#pg-result[data-route]")
    assert page.get_attribute("#pg-result", "data-route") == expected == "creative_writing"
    creative = page.locator(".route[data-route=creative_writing] textarea").first
    creative.fill("marketing copy and product announcements for launches")
    page.click("#pg-add")
    added = page.locator(".route").last
    added.locator("input").fill("verse")
    added.locator("textarea").first.fill("poems, poetry, verse and song lyrics")
    page.evaluate("document.querySelector('#pg-result').removeAttribute('data-route')")
    page.click("#pg-route")
    page.wait_for_selector("#pg-result[data-route]")
    assert page.get_attribute("#pg-result", "data-route") == "verse"
    page.click("#pg-export")
    page.wait_for_selector("#pg-yaml:not([hidden])")
    assert "name: verse" in page.inner_text("#pg-yaml")
    shot(page, tmp_path, "playground")
    assert page.errors == []  # type: ignore[attr-defined]


def test_a_non_admin_key_is_refused_in_chromium(browser: Any, gateway: str, tmp_path: Path) -> None:
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{gateway}/console")
    page.fill("input[name=key]", USER)
    page.click("button[type=submit]")
    page.wait_for_selector("h1")
    assert "Not an admin key" in page.inner_text("h1") and "dev" in page.inner_text("main")
    page.goto(f"{gateway}/console")  # no session was given: the sign-in page again
    assert page.locator("input[name=key]").count() == 1
    page.screenshot(path=str(tmp_path / "console-refused.png"))
    context.close()
