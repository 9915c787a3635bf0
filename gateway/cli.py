"""The `junction` command: serve | validate | schema | models | mock-upstream."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any, Sequence

import uvicorn

from gateway import redact
from gateway.config import LOOPBACK, Config, ConfigError, load
from gateway.lifecycle import Lifecycle

log = logging.getLogger("junction")

EXIT_CONFIG = 2


def _load_or_exit(path: str) -> Config:
    try:
        return load(path)
    except ConfigError as exc:
        print(f"{path}: {len(exc.problems)} problem(s):", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None


def cmd_validate(args: argparse.Namespace) -> int:
    config = _load_or_exit(args.config)
    for warning in config.warnings:
        print(f"warning: {warning}")
    print(f"{args.config}: OK ({len(config.providers)} providers, {len(config.aliases)} aliases, "
          f"{len(config.preferences)} routing preferences)")  # fmt: skip
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    """The config file's JSON Schema (schema/plano_config.schema.json is this output, for editors and CI)."""
    from gateway.config import json_schema

    print(json.dumps(json_schema(), indent=2, ensure_ascii=False))
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    config = _load_or_exit(args.config)
    rows = [("MODEL", "API", "URL", "KEY", "NOTE")]
    for p in config.providers:
        if p.missing_env:
            key = "unset: " + ", ".join(p.missing_env)
        elif p.passthrough_auth:
            key = "client's"
        else:
            key = "set" if p.access_key else "none"
        note = "default" if p.default else ("wildcard" if p.wildcard else "")
        api = p.api.value + ("+responses" if p.native_responses else "")  # Responses clients relayed natively
        rows.append((p.model, api, p.url or "(base_url unset)", key, note))
    for alias, target in config.aliases.items():
        rows.append((alias, "alias", f"-> {target.model}", "", ""))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
    for pref in config.preferences:
        print(f"route {pref.name}: {', '.join(m.model for m in pref.models)}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    config = _load_or_exit(args.config)
    redact.install(redact.Redactor(config.secrets()))
    listen_host, listen_port = config.listen_address()
    host = args.host or listen_host
    port = args.port if args.port is not None else listen_port
    if not config.auth_enabled:
        exposure = "loopback only" if host in ("127.0.0.1", "::1", "localhost") else f"ALL clients that reach {host}"
        log.warning("no gateway_keys configured: the gateway is open to %s", exposure)
    if args.no_access_log:
        logging.getLogger("junction.access").setLevel(logging.WARNING)
    if args.workers < 1:
        log.error("--workers must be at least 1, got %d", args.workers)
        return 2
    if args.workers > 1:
        if config.state.backend == "memory" and not args.allow_local_state:
            log.error("--workers %d with per-key limits in each worker's memory would give every key %d times its "
                      "limits: configure a shared store (state: {backend: redis, url: ...}), or pass "
                      "--allow-local-state if that is what you want", args.workers, args.workers)  # fmt: skip
            return 2
        from gateway import workers

        if workers.needs_reexec():
            workers.reexec_with_metrics_folder()  # does not return
        return workers.supervise(args.workers, host, port, lambda sock: _serve(args, config, host, port, [sock]))
    _serve(args, config, host, port)
    return 0


def _serve(args: argparse.Namespace, config: Config, host: str, port: int, sockets: list[Any] | None = None) -> None:
    """One gateway process until it is stopped (on `sockets` when a supervisor bound them)."""
    from gateway.reload import Reloadable

    app = Reloadable(args.config, config)
    # uvicorn's own access log is replaced by the JSON access log (gateway/observe.py).
    # log_config=None: uvicorn's loggers propagate to the root handler and its redaction filter.
    # uvicorn's graceful shutdown comes after the drain: a short grace for what the drain left.
    server_config = uvicorn.Config(app, host=host, port=port, log_level=args.log_level, access_log=False,
                                   log_config=None, timeout_graceful_shutdown=1)  # fmt: skip
    server = DrainingServer(server_config, app.lifecycle, config.drain_s)
    # uvicorn re-raises the stop signal after a graceful shutdown; ending there is success.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: sys.exit(0))
    server.run(sockets=sockets)


class DrainingServer(uvicorn.Server):
    """uvicorn's server with a drain before its shutdown. On the first stop signal the gateway
    keeps listening: readiness answers 503, liveness 200, new LLM calls are refused (503/529),
    and calls in flight may finish. Once none is left, or after `drain` seconds, uvicorn's own
    shutdown runs: the listener closes and what still runs gets `grace` seconds, then is cancelled
    (streams end with an in-band error). A second signal skips the rest of the drain."""

    def __init__(self, config: uvicorn.Config, lifecycle: Lifecycle, drain: float) -> None:
        super().__init__(config)
        self.lifecycle = lifecycle
        self.drain = drain
        self.drain_ends = 0.0

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.lifecycle.draining:
            super().handle_exit(sig, frame)
            return
        self._captured_signals.append(sig)  # uvicorn raises it again once stopped: the exit status
        self.lifecycle.draining = True
        self.drain_ends = time.monotonic() + self.drain

    async def on_tick(self, counter: int) -> bool:
        if self.lifecycle.draining and not self.should_exit:
            self.should_exit = self.lifecycle.requests == 0 or time.monotonic() >= self.drain_ends
        return await super().on_tick(counter)


def cmd_route(args: argparse.Namespace) -> int:
    """Print the routing decision for a text or a JSON conversation on stdin, without an LLM call;
    `junction route eval FILE.jsonl` measures accuracy on labelled traffic instead."""

    from gateway.chain.routing import build_router

    if args.text and args.text[0] == "eval":
        return cmd_route_eval(args)
    config = _load_or_exit(args.config)
    router = build_router(config)
    if router is None:
        print(f"{args.config}: no routing_preferences; every request keeps its model", file=sys.stderr)
        return 1
    if args.text:
        body: Any = {"messages": [{"role": "user", "content": " ".join(args.text)}]}
    else:
        try:
            body = json.loads(sys.stdin.read())
        except ValueError as exc:
            print(f"stdin: expected a JSON request body or a list of messages ({exc})", file=sys.stderr)
            return EXIT_CONFIG
        if isinstance(body, list):
            body = {"messages": body}
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            print("stdin: expected a JSON request body with `messages`, or a list of messages", file=sys.stderr)
            return EXIT_CONFIG
    if args.explain:
        explained = router.explain(body, args.protocol, args.session)
        if args.json:
            print(json.dumps(explained, indent=2, ensure_ascii=False))
        else:
            print(explanation_text(explained))
        return 0
    decision = router.decide_sync(body, args.protocol, args.session)
    if args.json:
        print(json.dumps(decision.as_dict(), indent=2, ensure_ascii=False))
        return 0
    print(decision_text(decision.as_dict()))
    return 0


def decision_text(d: dict[str, Any]) -> str:
    models = ", ".join(d["models"]) or "-"
    lines = [f"route:   {d['route'] or 'none'} ({d['reason']}{', after switch ' + repr(d['switch']) if d.get('switch') else ''})",
             f"models:  {models}"]  # fmt: skip
    if d.get("previous") is not None:
        lines.append(f"previous route: {d['previous']}")
    if d.get("score") is not None:
        margin = f", margin {d['margin']:.3f} over {d['runner_up']}" if d.get("margin") is not None else ""
        lines.append(f"score:   {d['score']:.3f}{margin}")
    if d.get("unrouted"):
        lines.append(f"no route: the request is {d['unrouted']}, which no route claims")
    lines.append(f"route scores ({'probability' if d.get('mode') == 'head' else 'similarity'}):")
    for name, score in sorted(d["scores"].items(), key=lambda item: -item[1]):
        lines.append(f"  {score:7.3f}  {name}")
    if d.get("tasks"):
        lines.append("task classes: " + ", ".join(f"{k} {v:.2f}" for k, v in d["tasks"].items()))
    lines.append(f"text:    {d['text'][:200]!r}")
    lines.append(f"latency: {d['latency_ms']:.2f} ms")
    return "\n".join(lines)


def explanation_text(e: dict[str, Any]) -> str:
    lines = [decision_text(e["decision"]), ""]
    lines.append("routes:")
    for name, r in e["routes"].items():
        how = f"task classes {', '.join(r['tasks'])}" if r["tasks"] else "description similarity (matches no task class)"
        extra = f"; from its examples: {', '.join(r['tasks_from_examples'])}" if r.get("tasks_from_examples") else ""
        lines.append(f"  {name}: {how}{extra}")
    if "tasks" in e:
        lines.append("")
        lines.append(f"task classes (probability; no route {e['no_route']:.3f}, follow-up {e['followup']:.3f}):")
        for name, p in list(e["tasks"].items())[:10]:
            lines.append(f"  {p:7.3f}  {name}")
    if e.get("nearest_training"):
        lines.append("")
        lines.append("nearest training requests:")
        for n in e["nearest_training"]:
            lines.append(f"  {n['similarity']:.3f}  [{n['task']}, {n['lang']}] {n['text'][:110]!r}")
    if e.get("example_classifier"):
        c = e["example_classifier"]
        lines.append("")
        lines.append(f"classifier fitted on the routes' examples (probability; {c['weight']} x its log is added to each score):")
        for name, p in c["probability"].items():
            lines.append(f"  {p:7.3f}  {name}")
    if e.get("nearest_route_texts"):
        lines.append("")
        lines.append("nearest route descriptions and examples:")
        for n in e["nearest_route_texts"]:
            lines.append(f"  {n['similarity']:.3f}  [{n['route']}] {n['text'][:110]!r}")
    return "\n".join(lines)


def cmd_route_eval(args: argparse.Namespace) -> int:
    """`junction route eval FILE.jsonl [--out DIR]`: accuracy of the config's router on labelled traffic."""
    from gateway.chain.routing import build_router
    from router import evaluate

    if len(args.text) != 2:
        print("usage: junction route eval FILE.jsonl [--out DIR] [--config CONFIG]", file=sys.stderr)
        return EXIT_CONFIG
    path = Path(args.text[1])
    try:
        items = evaluate.read_items(path)
    except (OSError, evaluate.EvalError) as exc:
        print(f"{path}: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    config = _load_or_exit(args.config)
    router = build_router(config)
    if router is None:
        print(f"{args.config}: no routing_preferences; nothing to evaluate", file=sys.stderr)
        return 1
    known = {p.name for p in config.preferences} | {evaluate.NONE}
    unknown = sorted({i.gold for i in items} - known)
    if unknown:
        print(f"{path}: expected routes not in {args.config}: {', '.join(unknown)}", file=sys.stderr)
        return EXIT_CONFIG
    results = evaluate.run(items, lambda i: router.decide_sync(i.body, i.protocol, f"eval:{path}:{i.id}"))  # type: ignore[arg-type]
    summary = evaluate.summarise(results)
    print(evaluate.table(summary))
    paths = evaluate.write_outputs(results, summary, Path(args.out) if args.out else Path.cwd(), path.stem)
    print("\nwrote " + ", ".join(paths.values()))
    return 0


def cmd_usage(args: argparse.Namespace) -> int:
    """`junction usage [--by key,model] [--since 7d] [--json | --csv]`: spend and tokens from the ledger."""
    import asyncio
    import datetime as dt

    from gateway.ledger import report
    from gateway.ledger.build import build_store

    config = _load_or_exit(args.config)
    if not config.ledger.enabled:
        print(f"{args.config}: the usage ledger is off (ledger: {{backend: off}})", file=sys.stderr)
        return 1
    try:
        by = report.parse_by(args.by)
        since = report.parse_since(args.since, dt.datetime.now(dt.timezone.utc).date())
    except report.UsageArgsError as exc:
        print(f"usage: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if config.ledger.backend == "sqlite" and not Path(config.ledger.path or "").exists():
        print(f"no usage recorded yet ({config.ledger.path} does not exist)", file=sys.stderr)
        return 1
    store = build_store(config.ledger)

    async def read() -> list[dict[str, Any]]:
        try:
            return await store.report(by, since)
        finally:
            await store.close()

    try:
        rows = report.complete(asyncio.run(read()), by)
    except Exception as exc:  # noqa: BLE001 - a database that cannot be read: say which and why
        print(f"cannot read the usage ledger ({config.ledger.backend}): {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report.as_json(rows, by, since), indent=2))
    elif args.csv:
        sys.stdout.write(report.as_csv(rows, by))
    else:
        print(report.as_table(rows, by, since))
    return 0


def cmd_mock_upstream(args: argparse.Namespace) -> int:
    from gateway import mock_upstream

    if args.keyfile and not args.certfile:
        print("mock-upstream: --keyfile needs --certfile", file=sys.stderr)
        return EXIT_CONFIG
    mock_upstream.run(host=args.host or LOOPBACK, port=args.port if args.port is not None else 9100,
                      certfile=args.certfile, keyfile=args.keyfile)  # fmt: skip
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="junction", description="LLM gateway for coding agents")
    sub = parser.add_subparsers(dest="command", required=True)
    default_config = os.environ.get("JUNCTION_CONFIG", "plano_config.yaml")

    def add(name: str, func: object, help: str, config: bool = True) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help)
        if config:
            p.add_argument("--config", "-c", default=default_config, help="Plano-format YAML (default: %(default)s)")
        p.set_defaults(func=func)
        return p

    serve = add("serve", cmd_serve, "run the gateway")
    serve.add_argument("--host", help="bind address (default: the config's listener, else 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default: the config's listener, else 12000)")
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    serve.add_argument("--no-access-log", action="store_true", help="do not write the JSON access log")
    serve.add_argument("--workers", type=int, default=1, help="gateway processes sharing the port (default 1); more "
                       "than one needs a shared state store (state: {backend: redis})")  # fmt: skip
    serve.add_argument("--allow-local-state", action="store_true",
                       help="allow --workers N with per-key limits kept by each worker on its own")  # fmt: skip
    add("validate", cmd_validate, "check a config; exit 2 on errors")
    add("schema", cmd_schema, "print the config file's JSON Schema (draft 2020-12)", config=False)
    add("models", cmd_models, "list providers, models, aliases and which keys are set")
    route = add("route", cmd_route, "show the routing decision for a text (or a JSON conversation on stdin); "
                "`route eval FILE.jsonl`: accuracy on labelled traffic")
    route.add_argument("text", nargs="*", help="the user's message; omit to read a JSON body from stdin")
    route.add_argument("--json", action="store_true", help="print the decision as JSON")
    route.add_argument("--protocol", choices=["anthropic", "openai"], default="anthropic",
                       help="how to read a JSON body from stdin (default: anthropic)")  # fmt: skip
    route.add_argument("--session", help="session id, as the x-junction-session header would give")
    route.add_argument("--explain", action="store_true",
                       help="also print every task class's probability, each route's task classes and the nearest "
                            "training requests")  # fmt: skip
    route.add_argument("--out", help="route eval: folder for the decisions, summary and confusion PNG (default: .)")
    usage = add("usage", cmd_usage, "requests, tokens and spend from the usage ledger, by key, model, route, day")
    usage.add_argument("--by", default="key,model", help="comma-separated: key, model, route, day, provider "
                       "(default: %(default)s)")  # fmt: skip
    usage.add_argument("--since", help="first UTC day: YYYY-MM-DD or the last N days as Nd (default: this month)")
    form = usage.add_mutually_exclusive_group()
    form.add_argument("--json", action="store_true", help="print JSON (costs also in exact integer nano-USD)")
    form.add_argument("--csv", action="store_true", help="print CSV, for a spreadsheet")
    init = add("init", cmd_init, "write a commented starter config for the named providers (never overwrites)")
    init.add_argument("providers", nargs="+", help="any of: kimi, moonshot, deepseek, openai, anthropic, "
                      "openrouter, ollama, mock")  # fmt: skip
    init.add_argument("--out", help="where to write it (default: --config, plano_config.yaml)")
    for agent, what in (("claude", "Claude Code"), ("codex", "Codex CLI")):
        sub.add_parser(agent, help=f"run {what} against the gateway: `junction {agent} [--url U] [--key K] "
                       f"[--config F] [{agent} args...]`; starts a gateway for the session when none answers")  # fmt: skip
    mock = add("mock-upstream", cmd_mock_upstream, "run the local mock provider (tests and demos)", config=False)
    mock.add_argument("--host", help="bind address (default 127.0.0.1)")
    mock.add_argument("--port", type=int, help="port (default 9100)")
    mock.add_argument("--certfile", help="PEM certificate (chain): serve HTTPS instead of HTTP")
    mock.add_argument("--keyfile", help="PEM private key for --certfile (if not inside it)")
    return parser


def cmd_init(args: argparse.Namespace) -> int:
    """`junction init kimi deepseek [--out F]`: a commented starter config, validated, never overwriting."""
    from gateway import starter
    from gateway.config import ConfigError, parse

    out = Path(args.out or args.config)
    try:
        text = starter.starter_config(args.providers)
    except starter.UnknownProvider as exc:
        print(f"junction init: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if out.exists():
        print(f"junction init: {out} exists; not overwritten (choose another path with --out)", file=sys.stderr)
        return 1
    try:
        parse(text, {}, source=str(out))  # the key variables may be unset here: reported at start-up, not errors
    except ConfigError as exc:  # a broken preset is a bug here, never the user's
        print(f"junction init: the starter config is invalid: {'; '.join(exc.problems)}", file=sys.stderr)
        return 1
    out.write_text(text, encoding="utf-8")
    print(f"wrote {out}: {', '.join(args.providers)}; next: export the key variables it names, then "
          f"`junction validate --config {out}` and `junction serve --config {out}`")  # fmt: skip
    return 0


def cmd_launch(agent: str, argv: list[str]) -> int:
    """`junction claude|codex [--url U] [--key K] [--config F] [agent args...]`."""
    from gateway import launch

    logging.basicConfig(level="WARNING", format="%(levelname)s %(name)s: %(message)s")
    try:
        options = launch.split_args(argv, os.environ.get("JUNCTION_CONFIG", "plano_config.yaml"))
        config = _load_or_exit(options.config)
        return launch.launch(agent, options, config)
    except launch.LaunchError as exc:
        print(f"junction {agent}: {exc}", file=sys.stderr)
        return EXIT_CONFIG


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("claude", "codex"):  # the agent's own flags must reach it untouched
        return cmd_launch(argv[0], argv[1:])
    args = build_parser().parse_args(argv)
    level = getattr(args, "log_level", "info").upper()
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    # httpx logs every request at INFO: noise, and measurable CPU on the hot path.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLevelName(level)))
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
