"""Upstream TLS (security scenario S13) over real sockets: the mock upstream serves HTTPS with a
certificate from a private test CA (trustme); the gateway must refuse it unless the provider's
`tls_ca_file` trusts that CA, say why in the client's protocol, fail over like a refused
connection, and never let a client switch verification off."""

from __future__ import annotations

import ssl
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import anthropic
import httpx
import openai
import pytest
import trustme

from gateway.config import ConfigError, load, parse
from gateway.upstream import tls_context
from tests.procs import start_gateway, start_mock_upstream, write_config

USER = [{"role": "user", "content": "hello there"}]
REPLY = "Mock reply to: hello there"
Models = Callable[[], list[str]]  # the `upstream_models` fixture
UNTRUSTED = "TLS certificate verification failed (self-signed or unknown CA; set tls_ca_file to trust a private CA)"
WRONG_NAME = "TLS certificate verification failed (certificate does not match the upstream's host name)"

# Every way a client might try to turn verification off; none of them may have any effect.
DISABLE_BODY: dict[str, Any] = {"ssl_verify": False, "verify": False, "tls_verify": False, "verify_ssl": False,
                                "insecure": True}  # fmt: skip
DISABLE_QUERY = {"verify": "false", "ssl_verify": "false", "tls_verify": "false", "insecure": "true"}
DISABLE_HEADERS = {"x-ssl-verify": "false", "x-verify": "false", "x-tls-verify": "false", "x-insecure": "true"}


@dataclass(frozen=True)
class Certs:
    ca_file: Path  # the test CA that issued the mock's certificate
    other_ca_file: Path  # an unrelated CA
    cert_file: Path  # the mock's certificate chain, for 127.0.0.1 only
    key_file: Path
    trust: ssl.SSLContext  # a client context trusting the test CA (for the tests' own calls to the mock)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    folder = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1")
    paths = Certs(folder / "ca.pem", folder / "other-ca.pem", folder / "server.pem", folder / "server.key",
                  ssl.create_default_context())  # fmt: skip
    ca.cert_pem.write_to_path(str(paths.ca_file))
    trustme.CA().cert_pem.write_to_path(str(paths.other_ca_file))
    for i, pem in enumerate(server.cert_chain_pems):
        pem.write_to_path(str(paths.cert_file), append=i > 0)
    server.private_key_pem.write_to_path(str(paths.key_file))
    ca.configure_trust(paths.trust)
    return paths


@pytest.fixture(scope="module")
def tls_mock(certs: Certs) -> Iterator[str]:
    """The mock upstream over HTTPS: its base URL (https://127.0.0.1:<port>)."""
    args = ("--certfile", str(certs.cert_file), "--keyfile", str(certs.key_file))
    with start_mock_upstream(extra_args=args, verify=certs.trust) as (_, base_url):
        yield base_url


CONFIG = """
version: v0.4.0
llm_providers:
  - model: mock/untrusted               # HTTPS with a private CA, and no tls_ca_file
    base_url: {mock}/v1
  - model: mock/claude-untrusted
    base_url: {mock}
    provider_interface: anthropic
  - model: mock/trusted
    base_url: {mock}/v1
    tls_ca_file: {ca}
  - model: mock/claude-trusted
    base_url: {mock}
    provider_interface: anthropic
    tls_ca_file: {ca}
  - model: mock/wrong-ca                # trusts a CA, but not the one that signed the mock
    base_url: {mock}/v1
    tls_ca_file: {other_ca}
  - model: mock/wrong-name              # the right CA, reached by a name the certificate lacks
    base_url: https://localhost:{port}/v1
    tls_ca_file: {ca}
  - model: mock/untrusted-first
    base_url: {mock}/v1
    fallbacks: [trusted]
failover:
  failures_to_cool: 1000                # every request must reach the handshake, never a cooldown
"""


@pytest.fixture(scope="module")
def gateway(tls_mock: str, certs: Certs, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = tls_mock.rsplit(":", 1)[1]
    text = CONFIG.format(mock=tls_mock, port=port, ca=certs.ca_file, other_ca=certs.other_ca_file)
    config = write_config(tmp_path_factory.mktemp("tls-gateway"), text)
    proc, base_url = start_gateway(config, None, "--log-level", "warning", "--no-access-log")
    with proc:
        yield base_url


@pytest.fixture()
def upstream_models(tls_mock: str, certs: Certs) -> Models:
    """Clears the mock's record; returns a function listing the models it has been asked for since."""
    httpx.delete(f"{tls_mock}/_mock/requests", verify=certs.trust)

    def models() -> list[str]:
        recorded = httpx.get(f"{tls_mock}/_mock/requests", verify=certs.trust).json()
        return [r["body"]["model"] for r in recorded if r["body"]]

    return models


def claude(gateway: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gateway, api_key="x", max_retries=0, timeout=20)


def oa(gateway: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway}/v1", api_key="x", max_retries=0, timeout=20)


def anthropic_error(gateway: str, model: str, stream: bool, **extra: Any) -> dict[str, Any]:
    """The Anthropic SDK's call must fail with 502; returns the error body."""
    with pytest.raises(anthropic.APIStatusError) as info:
        if stream:
            with claude(gateway).messages.stream(model=model, max_tokens=20, messages=USER, **extra) as events:
                events.until_done()
        else:
            claude(gateway).messages.create(model=model, max_tokens=20, messages=USER, **extra)
    assert info.value.status_code == 502
    return info.value.response.json()


def openai_error(gateway: str, model: str, stream: bool, **extra: Any) -> dict[str, Any]:
    """The OpenAI SDK's call must fail with 502; returns the error body."""
    with pytest.raises(openai.APIStatusError) as info:
        if stream:
            with oa(gateway).chat.completions.stream(model=model, messages=USER, **extra) as events:
                events.until_done()
        else:
            oa(gateway).chat.completions.create(model=model, messages=USER, **extra)
    assert info.value.status_code == 502
    return info.value.response.json()


def assert_anthropic_shape(body: dict[str, Any], cause: str, model: str) -> None:
    assert body["type"] == "error" and body["error"]["type"] == "api_error"
    assert body["error"]["message"] == f"upstream '{model}' could not be reached ({cause})"


def assert_openai_shape(body: dict[str, Any], cause: str, model: str) -> None:
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["code"] == "upstream_error"
    assert body["error"]["message"] == f"upstream '{model}' could not be reached ({cause})"


# --- (a) an untrusted upstream is refused, with the reason, in the client's protocol -----------


@pytest.mark.parametrize("stream", [False, True], ids=["buffered", "stream"])
@pytest.mark.parametrize("model", ["mock/claude-untrusted", "mock/untrusted"], ids=["relay", "translated"])
def test_untrusted_upstream_is_502_in_anthropic_shape(gateway: str, upstream_models: Models, model: str,
                                                      stream: bool) -> None:  # fmt: skip
    body = anthropic_error(gateway, model, stream)
    assert_anthropic_shape(body, UNTRUSTED, model)
    assert upstream_models() == []  # the handshake failed: not one byte of the request was sent


@pytest.mark.parametrize("stream", [False, True], ids=["buffered", "stream"])
@pytest.mark.parametrize("model", ["mock/untrusted", "mock/claude-untrusted"], ids=["relay", "translated"])
def test_untrusted_upstream_is_502_in_openai_shape(gateway: str, upstream_models: Models, model: str,
                                                   stream: bool) -> None:  # fmt: skip
    body = openai_error(gateway, model, stream)
    assert_openai_shape(body, UNTRUSTED, model)
    assert upstream_models() == []


def test_error_names_no_host_or_url(gateway: str, tls_mock: str) -> None:
    port = tls_mock.rsplit(":", 1)[1]
    for model in ("untrusted", "wrong-name"):
        message = openai_error(gateway, model, False)["error"]["message"]
        assert "127.0.0.1" not in message and "localhost" not in message and port not in message
        assert "http" not in message


# --- (b) the client cannot turn verification off ---------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["buffered", "stream"])
def test_anthropic_client_cannot_disable_verification(gateway: str, upstream_models: Models, stream: bool) -> None:
    for model in ("mock/claude-untrusted", "mock/untrusted"):
        body = anthropic_error(gateway, model, stream, extra_body=DISABLE_BODY, extra_query=DISABLE_QUERY,
                               extra_headers=DISABLE_HEADERS)  # fmt: skip
        assert_anthropic_shape(body, UNTRUSTED, model)
    assert upstream_models() == []


@pytest.mark.parametrize("stream", [False, True], ids=["buffered", "stream"])
def test_openai_client_cannot_disable_verification(gateway: str, upstream_models: Models, stream: bool) -> None:
    for model in ("mock/untrusted", "mock/claude-untrusted"):
        body = openai_error(gateway, model, stream, extra_body=DISABLE_BODY, extra_query=DISABLE_QUERY,
                            extra_headers=DISABLE_HEADERS)  # fmt: skip
        assert_openai_shape(body, UNTRUSTED, model)
    assert upstream_models() == []


@pytest.mark.parametrize("field", sorted(DISABLE_BODY))
def test_each_disable_field_alone_has_no_effect(gateway: str, upstream_models: Models, field: str) -> None:
    """One field at a time, also on the raw wire, so no SDK default hides anything."""
    response = httpx.post(f"{gateway}/v1/chat/completions?{field}=false", headers={f"x-{field}": "false"},
                          json={"model": "untrusted", "messages": USER, field: DISABLE_BODY[field]})  # fmt: skip
    assert response.status_code == 502 and UNTRUSTED in response.json()["error"]["message"]
    assert upstream_models() == []


# --- (c) tls_ca_file trusts the private CA -----------------------------------------------------


@pytest.mark.parametrize("model", ["claude-trusted", "trusted"], ids=["relay", "translated"])
def test_anthropic_sdk_through_trusted_upstream(gateway: str, upstream_models: Models, model: str) -> None:
    message = claude(gateway).messages.create(model=model, max_tokens=20, messages=USER)
    assert message.content[0].text == REPLY
    with claude(gateway).messages.stream(model=model, max_tokens=20, messages=USER) as stream:
        assert stream.get_final_text() == REPLY
    assert upstream_models() == [model, model]


@pytest.mark.parametrize("model", ["trusted", "claude-trusted"], ids=["relay", "translated"])
def test_openai_sdk_through_trusted_upstream(gateway: str, upstream_models: Models, model: str) -> None:
    completion = oa(gateway).chat.completions.create(model=model, messages=USER)
    assert completion.choices[0].message.content == REPLY
    with oa(gateway).chat.completions.stream(model=model, messages=USER) as stream:
        assert stream.get_final_completion().choices[0].message.content == REPLY
    assert upstream_models() == [model, model]


def test_trusted_upstream_ignores_disable_fields_too(gateway: str, upstream_models: Models) -> None:
    completion = oa(gateway).chat.completions.create(model="trusted", messages=USER, extra_body=DISABLE_BODY,
                                                     extra_query=DISABLE_QUERY, extra_headers=DISABLE_HEADERS)
    assert completion.choices[0].message.content == REPLY
    assert upstream_models() == ["trusted"]


# --- (e) only the configured CA, and the host name is checked -------------------------------------


def test_ca_file_of_another_ca_is_refused(gateway: str, upstream_models: Models) -> None:
    assert_openai_shape(openai_error(gateway, "wrong-ca", False), UNTRUSTED, "mock/wrong-ca")
    assert upstream_models() == []


def test_certificate_for_another_host_name_is_refused(gateway: str, upstream_models: Models) -> None:
    assert_anthropic_shape(anthropic_error(gateway, "wrong-name", False), WRONG_NAME, "mock/wrong-name")
    assert upstream_models() == []


# --- (f) a TLS failure fails over like a refused connection -----------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["buffered", "stream"])
def test_tls_failure_fails_over_to_the_next_model(gateway: str, upstream_models: Models, stream: bool) -> None:
    response = claude(gateway).messages.with_raw_response.create(model="untrusted-first", max_tokens=20,
                                                                 messages=USER, stream=stream)  # fmt: skip
    assert response.headers["x-junction-fallback-from"] == "mock/untrusted-first"
    assert response.headers["x-junction-model"] == "mock/trusted"
    assert response.headers["x-junction-attempts"] == "2"
    if stream:
        text = "".join(e.delta.text for e in response.parse() if e.type == "content_block_delta")
    else:
        text = response.parse().content[0].text
    assert text == REPLY
    assert upstream_models() == ["trusted"]  # the untrusted first choice never saw the request


# --- (d) config -----------------------------------------------------------------------------------

PROVIDER = """
version: v0.4.0
llm_providers:
  - model: mock/private
    base_url: https://llm.internal.example/v1
    {extra}
"""


def problems(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse(textwrap.dedent(text), env or {})
    return info.value.problems


def test_config_accepts_a_ca_file_with_var_expansion(certs: Certs) -> None:
    text = textwrap.dedent(PROVIDER.format(extra="tls_ca_file: ${PRIVATE_CA}"))
    config = parse(text, {"PRIVATE_CA": str(certs.ca_file)})
    assert config.providers[0].tls_ca_file == str(certs.ca_file)
    assert parse(textwrap.dedent(PROVIDER.format(extra="")), {}).providers[0].tls_ca_file is None


def test_config_missing_ca_file_is_an_error_naming_both_paths(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "ca.pem"
    assert problems(PROVIDER.format(extra=f"tls_ca_file: {missing}")) == [
        f"llm_providers[0].tls_ca_file: file not found: {missing}"
    ]


def test_config_ca_file_that_is_not_pem_is_an_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    assert problems(PROVIDER.format(extra=f"tls_ca_file: {junk}")) == [
        f"llm_providers[0].tls_ca_file: cannot use {junk} as a CA bundle: not a PEM CA bundle"
    ]
    assert problems(PROVIDER.format(extra=f"tls_ca_file: {tmp_path}")) == [
        f"llm_providers[0].tls_ca_file: cannot use {tmp_path} as a CA bundle: Is a directory"
    ]
    assert problems(PROVIDER.format(extra="tls_ca_file: [a, b]")) == [
        "llm_providers[0].tls_ca_file: expected a path to a PEM CA bundle, got list"
    ]


def test_config_unset_ca_variable_makes_the_provider_unavailable(certs: Certs) -> None:
    config = parse(textwrap.dedent(PROVIDER.format(extra="tls_ca_file: $UNSET_CA")), {})
    assert config.providers[0].missing_env == ("UNSET_CA",)


def test_config_relative_ca_file_is_read_beside_the_config(tmp_path: Path, certs: Certs) -> None:
    (tmp_path / "ca.pem").write_bytes(certs.ca_file.read_bytes())
    config = load(write_config(tmp_path, PROVIDER.format(extra="tls_ca_file: ca.pem")), {})
    assert config.providers[0].tls_ca_file == str(tmp_path.resolve() / "ca.pem")


@pytest.mark.parametrize("key", ["tls_verify", "verify", "ssl_verify", "insecure_skip_verify"])
def test_config_has_no_way_to_disable_verification(key: str) -> None:
    found = problems(PROVIDER.format(extra=f"{key}: false"))
    assert found and found[0].startswith(f"llm_providers[0].{key}: unknown key")


def test_upstream_contexts_always_verify(certs: Certs) -> None:
    for context in (tls_context(None), tls_context(str(certs.ca_file))):
        assert context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname
    # The CA file replaces the default store: only the test CA is trusted.
    assert len(tls_context(str(certs.ca_file)).get_ca_certs()) == 1


def test_junction_mock_upstream_command_serves_https(certs: Certs) -> None:
    """`junction mock-upstream --certfile --keyfile` is the same HTTPS mock the tests use."""
    import sys

    from tests.procs import free_port, start_process

    port = free_port()
    args = [sys.executable, "-m", "gateway.cli", "mock-upstream", "--port", str(port),
            "--certfile", str(certs.cert_file), "--keyfile", str(certs.key_file)]  # fmt: skip
    with start_process(args, f"https://127.0.0.1:{port}/_mock/health", verify=certs.trust):
        assert httpx.get(f"https://127.0.0.1:{port}/_mock/stats", verify=certs.trust).status_code == 200
