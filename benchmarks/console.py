#!/usr/bin/env python3
"""How fast each console page shows in Debian's headless Chromium: first contentful paint and the time
until the page's data is on screen, for every page, after real traffic through the gateway.

One `junction serve` with the seed routes and an admin key in front of the mock upstream; 60 requests of
mixed prompts first, so the pages have rows to draw; then each page is loaded afresh `--rounds` times
(a new navigation every time, the session cookie kept) and the medians reported.

  .venv/bin/python benchmarks/console.py            # about 30 s
Tables to stdout, JSON to benchmarks/results/console.json. Needs chromium (`make servers`) and playwright.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.procs import start_gateway, start_mock_upstream  # noqa: E402

ADMIN = "jk-console-bench-admin-not-a-secret"
PAGES = {"live": "#live-tiles .tile", "requests": "#requests-table tbody tr", "playground": "#pg-routes .route",
         "usage": "#usage-table tbody tr", "models": "#models-table tbody tr", "config": "#config-text:not(:empty)"}  # fmt: skip
PROMPTS = ["Can you review this function for bugs?\n\ndef f(x):\n    return x / 0", "Write a haiku about the sea.",
           "Prove that there are infinitely many primes.", "What's the capital of Peru?"]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args(argv)
    browser_binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser_binary is None:
        print("chromium is not installed (make servers): nothing measured", file=sys.stderr)
        return 2
    from playwright.sync_api import sync_playwright

    results: dict[str, dict[str, list[float]]] = {name: {"fcp_ms": [], "ready_ms": []} for name in PAGES}
    with tempfile.TemporaryDirectory(prefix="junction-console-") as tmp, start_mock_upstream() as (_, mock):
        seed = yaml.safe_load((ROOT / "plano_config.yaml").read_text())
        for provider in seed["llm_providers"]:
            provider["base_url"] = f"{mock}/v1"
            provider["pricing"] = {"input": 0.27, "output": 1.10}
        seed["listeners"][0]["address"] = "127.0.0.1"
        seed["gateway_keys"] = [{"name": "ops", "key": ADMIN, "role": "admin"}]
        config = Path(tmp) / "console.yaml"
        config.write_text(yaml.safe_dump(seed))
        env = {"DEEPSEEK_API_KEY": "unused", "MOONSHOTAI_API_KEY": "unused"}
        gateway, base = start_gateway(config, env, "--log-level", "warning", "--no-access-log")
        with gateway, sync_playwright() as p:
            with httpx.Client(timeout=60) as client:
                for i in range(60):
                    client.post(f"{base}/v1/messages", headers={"x-api-key": ADMIN}, json={
                        "model": "claude-x", "max_tokens": 16,
                        "messages": [{"role": "user", "content": f"{PROMPTS[i % len(PROMPTS)]} ({i})"}]})  # fmt: skip
            time.sleep(1.5)  # the ledger's flush, for the usage page
            browser = p.chromium.launch(executable_path=browser_binary, headless=True, args=[
                "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run"])  # fmt: skip
            page = browser.new_context(viewport={"width": 1280, "height": 860}).new_page()
            page.goto(f"{base}/console")
            page.fill("input[name=key]", ADMIN)
            page.click("button[type=submit]")
            page.wait_for_selector(PAGES["live"])
            for _ in range(args.rounds):
                for name, ready in PAGES.items():
                    page.goto("about:blank")
                    started = time.perf_counter()
                    page.goto(f"{base}/console#{name}")
                    page.wait_for_selector(ready)
                    results[name]["ready_ms"].append((time.perf_counter() - started) * 1000)
                    fcp = page.evaluate("performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? null")
                    if fcp is not None:
                        results[name]["fcp_ms"].append(float(fcp))
            browser.close()
    rows = {name: {k: round(statistics.median(v), 1) if v else None for k, v in r.items()} for name, r in results.items()}
    print(f"\n### console pages in headless Chromium ({os.cpu_count()} cores, median of {args.rounds} fresh loads)\n")
    print("| page | first contentful paint | data on screen |")
    print("|---|---|---|")
    for name, row in rows.items():
        print(f"| {name} | {row['fcp_ms']} ms | {row['ready_ms']} ms |")
    out = ROOT / "benchmarks" / "results" / "console.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"rounds": args.rounds, "pages": rows, "loadavg": os.getloadavg()}, indent=2))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
