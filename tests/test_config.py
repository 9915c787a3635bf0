"""Config loading: the seed config, name resolution, and path-named errors."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gateway.config import ConfigError, load, parse

ROOT = Path(__file__).resolve().parent.parent
ENV = {"DEEPSEEK_API_KEY": "sk-deepseek", "MOONSHOTAI_API_KEY": "sk-kimi"}


def cfg(text: str, env: dict[str, str] | None = None):
    return parse(textwrap.dedent(text), ENV if env is None else env)


def problems(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        cfg(text, env)
    return info.value.problems


BASE = """
version: v0.4.0
llm_providers:
  - model: deepseek/deepseek-v4-pro
    access_key: $DEEPSEEK_API_KEY
  - model: deepseek/deepseek-v4-flash
    access_key: ${DEEPSEEK_API_KEY}
    default: true
"""


def test_seed_config_is_accepted_as_written() -> None:
    config = load(ROOT / "plano_config.yaml", ENV)
    assert [p.model for p in config.providers] == [
        "moonshotai/kimi-for-coding",
        "deepseek/deepseek-v4-pro",
        "deepseek/deepseek-v4-flash",
    ]
    assert config.default is not None and config.default.model == "deepseek/deepseek-v4-flash"
    assert config.aliases["arch.claude.code.small.fast"].model == "deepseek/deepseek-v4-flash"
    kimi = config.providers[0]
    assert kimi.url == "https://api.kimi.com/coding/v1/chat/completions"
    assert ("User-Agent", "KimiCLI/1.3") in kimi.headers
    assert kimi.access_key == "sk-kimi"
    routes = {p.name: [m.model for m in p.models] for p in config.preferences}
    assert routes == {
        "complex_reasoning": ["moonshotai/kimi-for-coding", "deepseek/deepseek-v4-pro"],
        "code_review": ["deepseek/deepseek-v4-pro"],
        "creative_writing": ["deepseek/deepseek-v4-flash"],
    }
    (listener,) = config.listeners
    assert (listener.address, listener.port) == ("0.0.0.0", 12000)
    assert not config.auth_enabled


def test_env_expansion_both_forms_and_unset_variable_marks_provider_unavailable() -> None:
    config = cfg(BASE, {"DEEPSEEK_API_KEY": "k1"})
    assert [p.access_key for p in config.providers] == ["k1", "k1"]
    config = cfg(BASE, {})
    assert all(not p.available for p in config.providers)
    assert config.providers[0].missing_env == ("DEEPSEEK_API_KEY",)
    assert any("DEEPSEEK_API_KEY" in w for w in config.warnings)


def test_short_and_long_names_resolve() -> None:
    config = cfg(BASE)
    assert config.lookup("deepseek-v4-pro") is config.lookup("deepseek/deepseek-v4-pro")
    assert config.lookup("nope") is None


def test_model_providers_key_is_accepted() -> None:
    config = cfg(BASE.replace("llm_providers", "model_providers"))
    assert len(config.providers) == 2


def test_unknown_model_in_route_names_the_path() -> None:
    found = problems(BASE + """
routing_preferences:
  - name: a
    description: b
    models: [deepseek-v4-flash]
  - name: c
    description: d
    models: [deepseek-v9]
""")
    assert len(found) == 1
    assert found[0].startswith("routing_preferences[1].models[0]: unknown model 'deepseek-v9' (known: ")
    assert "deepseek/deepseek-v4-pro" in found[0]


def test_ambiguous_bare_id_is_an_error() -> None:
    text = """
version: v0.4.0
llm_providers:
  - model: openai/gpt-x
  - model: groq/gpt-x
model_aliases:
  fast: {target: gpt-x}
"""
    (problem,) = problems(text)
    assert problem.startswith("model_aliases.fast.target: ambiguous model 'gpt-x'")
    assert "openai/gpt-x" in problem and "groq/gpt-x" in problem


def test_alias_chains_resolve_and_cycles_are_errors() -> None:
    config = cfg(BASE + """
model_aliases:
  a: {target: b}
  b: {target: deepseek-v4-pro}
""")
    assert config.aliases["a"].model == "deepseek/deepseek-v4-pro"
    found = problems(BASE + """
model_aliases:
  a: {target: b}
  b: {target: a}
""")
    assert any("alias cycle: a -> b -> a" in p for p in found)


def test_alias_target_must_resolve() -> None:
    (problem,) = problems(BASE + "model_aliases:\n  x: {target: missing-model}\n")
    assert problem.startswith("model_aliases.x.target: unknown model 'missing-model'")


def test_two_defaults_rejected() -> None:
    text = BASE.replace("access_key: $DEEPSEEK_API_KEY\n", "access_key: $DEEPSEEK_API_KEY\n    default: true\n", 1)
    assert any("at most one provider may have default: true" in p for p in problems(text))


def test_typos_and_bad_types_are_named() -> None:
    found = problems("""
version: v0.4.0
llm_provider:
  - model: openai/gpt-4o
""")
    assert "llm_provider: unknown key (did you mean 'llm_providers'?)" in found
    assert "llm_providers: required: a list of providers" in found
    found = problems("""
version: v0.4.0
llm_providers:
  - model: gpt-4o
  - model: openai/gpt-4o
    default: "yes"
    base_url: ftp://example.com
""")
    assert "llm_providers[0].model: expected 'provider/model-id', got 'gpt-4o'" in found
    assert "llm_providers[1].base_url: must be an http(s) URL, got 'ftp://example.com'" in found


def test_custom_prefix_needs_interface_and_base_url() -> None:
    found = problems("version: v0.4.0\nllm_providers:\n  - model: acme/m1\n")
    assert found[0].startswith("llm_providers[0].provider_interface: required for the custom provider prefix 'acme'")
    config = cfg("""
version: v0.4.0
llm_providers:
  - model: acme/m1
    provider_interface: openai
    base_url: https://llm.acme.test/api/v2/
  - model: acme2/m2
    provider_interface: anthropic
    base_url: https://claude.acme.test
""")
    assert config.providers[0].url == "https://llm.acme.test/api/v2/chat/completions"
    assert config.providers[1].url == "https://claude.acme.test/v1/messages"
    assert not any(p.native_responses for p in config.providers)


def test_responses_interface_marks_an_openai_style_upstream_native() -> None:
    config = cfg("""
version: v0.4.0
llm_providers:
  - model: acme/m1
    provider_interface: responses
    base_url: https://llm.acme.test/v1
  - model: openai/local
    provider_interface: responses
    base_url: http://127.0.0.1:8000/v1
  - model: openai/gpt-5
    access_key: x
  - model: openai/via-deepseek
    base_url: https://api.deepseek.com/v1
""")
    native = {p.model: p.native_responses for p in config.providers}
    assert native == {"acme/m1": True, "openai/local": True, "openai/gpt-5": True, "openai/via-deepseek": False}
    assert config.providers[0].url == "https://llm.acme.test/v1/chat/completions"  # other clients: Chat
    assert config.providers[0].responses_url == "https://llm.acme.test/v1/responses"
    found = problems("version: v0.4.0\nllm_providers:\n  - model: anthropic/claude\n    provider_interface: responses\n")
    assert any("'anthropic' is a built-in provider that speaks anthropic" in p for p in found)


def test_gateway_keys_plain_env_and_hashed() -> None:
    import hashlib

    digest = hashlib.sha256(b"hashed-key").hexdigest()
    config = cfg(BASE + f"""
gateway_keys:
  - plain-key
  - name: team
    key: $TEAM_KEY
  - name: ops
    sha256: {digest}
""", {"TEAM_KEY": "team-key", "DEEPSEEK_API_KEY": "x"})
    assert config.auth_enabled
    assert [k.name for k in config.gateway_keys] == ["key0", "team", "ops"]
    assert config.gateway_keys[2].sha256 == bytes.fromhex(digest)


def test_unset_gateway_key_variable_disables_that_key_but_keeps_auth_on() -> None:
    config = cfg(BASE + "gateway_keys:\n  - {name: a, key: $UNSET_KEY}\n", {"DEEPSEEK_API_KEY": "x"})
    assert config.auth_enabled and config.gateway_keys == ()
    assert any("UNSET_KEY" in w for w in config.warnings)


def test_passthrough_auth_with_gateway_keys_is_refused() -> None:
    text = BASE.replace("default: true", "default: true\n    passthrough_auth: true") + "gateway_keys: [k]\n"
    assert any("passthrough_auth: cannot be combined with gateway_keys" in p for p in problems(text))


def test_invalid_yaml_reports_position() -> None:
    (problem,) = problems("version: v0.4.0\nllm_providers: [\n")
    assert "invalid YAML (line" in problem


def test_wildcard_provider_serves_any_model_of_its_prefix() -> None:
    config = cfg("version: v0.4.0\nllm_providers:\n  - model: openai/*\n    access_key: k\n")
    provider = config.lookup("openai/gpt-5")
    assert provider is not None and provider.model_id == "gpt-5"
    assert provider.url == "https://api.openai.com/v1/chat/completions"
    assert config.lookup("gpt-5") is None


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway.cli", *args], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=60)  # fmt: skip


def test_validate_cli_accepts_seed_and_exits_2_with_paths(tmp_path: Path) -> None:
    ok = run_cli("validate", "--config", "plano_config.yaml")
    assert ok.returncode == 0, ok.stderr
    assert "OK (3 providers, 1 aliases, 3 routing preferences)" in ok.stdout
    broken = tmp_path / "broken.yaml"
    broken.write_text((ROOT / "plano_config.yaml").read_text().replace("      - deepseek-v4-pro\n", "      - deepseek-v9\n"))
    bad = run_cli("validate", "--config", str(broken))
    assert bad.returncode == 2
    assert "routing_preferences[1].models[0]: unknown model 'deepseek-v9'" in bad.stderr


def test_models_cli_shows_keys_without_values() -> None:
    import os

    env = dict(os.environ, DEEPSEEK_API_KEY="sk-secret-value")
    env.pop("MOONSHOTAI_API_KEY", None)
    out = run_cli("models", "--config", "plano_config.yaml", env=env)
    assert out.returncode == 0
    assert "unset: MOONSHOTAI_API_KEY" in out.stdout
    assert "arch.claude.code.small.fast" in out.stdout
    assert "sk-secret-value" not in out.stdout + out.stderr


@pytest.mark.parametrize("url", ["http://169.254.169.254/latest", "http://[fe80::1]/v1", "http://metadata.google.internal/"])
def test_metadata_and_link_local_upstreams_are_refused(url: str) -> None:
    (problem,) = problems(f"version: v0.4.0\nllm_providers:\n  - model: openai/x\n    base_url: {url}\n")
    assert problem.startswith("llm_providers[0].base_url:") and "metadata" in problem


@pytest.mark.parametrize("url", ["file:///etc/passwd", "gopher://127.0.0.1:70/_x", "ftp://example.com/v1", "//no-scheme"])
def test_non_http_upstreams_are_refused(url: str) -> None:
    (problem,) = problems(f"version: v0.4.0\nllm_providers:\n  - model: openai/x\n    base_url: {url}\n")
    assert problem.startswith("llm_providers[0].base_url:") and "must be an http(s) URL" in problem


def test_timeouts_failover_routing_and_key_limits_sections() -> None:
    config = cfg(BASE + """
timeouts: {connect: 2s, first_byte: 1m, idle: 90, total: 1h}
failover: {retries: 2, cooldown: 5s, failures_to_cool: 1}
routing: {threshold: 0.3, sticky: false, explicit_model_wins: false}
gateway_keys:
  - {name: a, key: k, models: [deepseek-v4-pro], rpm: 10, max_parallel: 2}
""")
    assert (config.timeouts.connect, config.timeouts.first_byte, config.timeouts.idle, config.timeouts.total) == \
        (2.0, 60.0, 90.0, 3600.0)
    assert (config.failover.retries, config.failover.cooldown, config.failover.failures_to_cool) == (2, 5.0, 1)
    assert config.routing.settings == {"threshold": 0.3, "sticky": False}
    assert config.routing.explicit_model_wins is False
    (key,) = config.gateway_keys
    assert key.models == frozenset({"deepseek/deepseek-v4-pro"}) and (key.rpm, key.max_parallel) == (10, 2)
    found = problems(BASE + "timeouts: {idle: -1}\nfailover: {retries: x}\nrouting: {threshold: high}\n")
    assert any(p.startswith("timeouts.idle:") for p in found)
    assert any(p.startswith("failover.retries:") for p in found)
    assert any(p.startswith("routing.threshold:") for p in found)
    assert cfg(BASE + "routing: {similarity_encoder: head}\n").routing.settings == {"similarity_encoder": "head"}
    stored = cfg(BASE + "state_storage: {type: memory, max_entries: 50, ttl: 10m}\n").state_storage
    assert (stored.type, stored.max_entries, stored.ttl_s) == ("memory", 50, 600.0)
    assert cfg(BASE).state_storage.max_entries == 1000 and not cfg(BASE).warnings
    found = problems(BASE + "state_storage: {type: postgres, connection_string: x, max_entries: 0}\n")
    assert found == ["state_storage.type: only memory is supported so far, got 'postgres'",
                     "state_storage.max_entries: expected a positive whole number, got 0"]
    (problem,) = problems(BASE + "routing: {similarity_encoder: bert}\n")
    assert problem == "routing.similarity_encoder: expected both, minilm or head, got 'bert'"
    tuned = cfg(BASE + "routing: {similarity_mix: 0.5, example_weight: 0}\n").routing.settings
    assert tuned == {"similarity_mix": 0.5, "example_weight": 0.0}
    assert problems(BASE + "routing: {similarity_mix: 1, example_weight: -0.1}\n") == [
        "routing.similarity_mix: expected a share from 0 to below 1, got 1.0",
        "routing.example_weight: expected 0 or more, got -0.1"]


def test_fallbacks_resolve_and_must_exist() -> None:
    config = cfg(BASE.replace("    default: true", "    default: true\n    fallbacks: [deepseek-v4-pro]"))
    (fallback,) = config.fallbacks["deepseek/deepseek-v4-flash"]
    assert fallback.model == "deepseek/deepseek-v4-pro"
    found = problems(BASE.replace("    default: true", "    default: true\n    fallbacks: [nope]"))
    assert found[0].startswith("llm_providers[1].fallbacks[0]: unknown model 'nope'")


def test_state_block_for_shared_limits() -> None:
    config = cfg(BASE + """
state:
  backend: redis
  url: redis://:$REDIS_PASSWORD@127.0.0.1:6379/0
  timeout: 20ms
  local_share: 0.25
""", {"DEEPSEEK_API_KEY": "x", "REDIS_PASSWORD": "s3cret-redis-pass"})
    assert (config.state.backend, config.state.timeout_s, config.state.local_share) == ("redis", 0.02, 0.25)
    assert config.state.url == "redis://:s3cret-redis-pass@127.0.0.1:6379/0"
    assert "s3cret-redis-pass" in config.secrets()  # redacted like every other secret
    assert cfg(BASE, {"DEEPSEEK_API_KEY": "x"}).state.backend == "memory"
    found = problems(BASE + "state:\n  backend: redis\n  local_share: 2\n  colour: blue\n", {"DEEPSEEK_API_KEY": "x"})
    assert "state.url: required with backend: redis" in found
    assert any(p.startswith("state.local_share: expected a fraction") for p in found)
    assert any(p.startswith("state.colour: unknown key") for p in found)
    found = problems(BASE + "state:\n  backend: etcd\n", {"DEEPSEEK_API_KEY": "x"})
    assert found == ["state.backend: expected memory or redis, got 'etcd'"]
    closed = cfg(BASE + "state: {backend: redis, url: 'redis://h:6379', budget_fail_mode: closed}\n", {"DEEPSEEK_API_KEY": "x"})
    assert closed.state.budget_fail_mode == "closed" and config.state.budget_fail_mode == "local"
    found = problems(BASE + "state: {backend: redis, url: 'redis://h', budget_fail_mode: open}\n", {"DEEPSEEK_API_KEY": "x"})
    assert found == ["state.budget_fail_mode: expected local or closed, got 'open'"]
    both = cfg(BASE + "state: {backend: redis, url: 'redis://h:6379', fail_mode: closed}\n", {"DEEPSEEK_API_KEY": "x"})
    assert (both.state.limits_fail_mode, both.state.budget_fail_mode) == ("closed", "closed")
    one = cfg(BASE + "state: {backend: redis, url: 'redis://h:6379', fail_mode: {limits: closed}}\n", {"DEEPSEEK_API_KEY": "x"})
    assert (one.state.limits_fail_mode, one.state.budget_fail_mode) == ("closed", "local")
    found = problems(BASE + "state: {backend: redis, url: 'redis://h', fail_mode: {sessions: closed}}\n", {"DEEPSEEK_API_KEY": "x"})
    assert found == ["state.fail_mode.sessions: unknown feature: expected limits or budgets"]


def test_planos_session_cache_in_redis_means_the_shared_state() -> None:
    text = BASE + "routing:\n  session_cache:\n    type: redis\n    url: redis://cache.internal:6379/2\n"
    config = cfg(text, {"DEEPSEEK_API_KEY": "x"})
    assert (config.state.backend, config.state.url) == ("redis", "redis://cache.internal:6379/2")
    assert not any("session_cache" in w for w in config.warnings)
    memory = cfg(BASE + "routing:\n  session_cache: {type: memory}\n", {"DEEPSEEK_API_KEY": "x"})
    assert memory.state.backend == "memory"
    found = problems(BASE + "routing:\n  session_cache: {type: memcached}\n", {"DEEPSEEK_API_KEY": "x"})
    assert found == ["routing.session_cache.type: expected memory or redis, got 'memcached'"]


def test_the_docs_deployment_example_is_a_valid_config() -> None:
    """The documentation's two-host example (Redis and PostgreSQL) as written, with its variables set."""
    readme = (ROOT / "docs" / "shared-state.md").read_text()
    section = readme[readme.index("A whole deployment"):]
    start = section.index("```yaml\n") + 8
    block = section[start:section.index("\n```", start)]
    env = {"DEEPSEEK_API_KEY": "x", "ALICE_KEY": "alice-0123456789abcdef", "CI_KEY": "ci-0123456789abcdef",
           "REDIS_PASSWORD": "redis-secret", "PG_PASSWORD": "pg-secret"}  # fmt: skip
    config = parse(block, env)
    assert (config.state.backend, config.ledger.backend) == ("redis", "postgres")
    assert config.gateway_keys[0].budget_window_s == 30 * 86400  # `30d`
    assert {"redis-secret", "pg-secret"} <= set(config.secrets())  # both passwords are redacted like keys
