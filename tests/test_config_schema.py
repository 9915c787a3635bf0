"""The config file's JSON Schema: the committed file is what `junction schema` prints, it accepts the configs
users write (the repository's, the seed config, the docs' examples) and refuses broken ones with the path named,
and every docs example is also a config `junction validate` accepts."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_FILE = ROOT / "schema" / "plano_config.schema.json"
SEED = ROOT.parent / "shared" / "plano_config.seed.yaml"
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_VAR = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")


def junction(*args: str, env: dict[str, str] | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway.cli", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=60)  # fmt: skip


def docs_examples() -> list[Any]:
    """Every fenced YAML block of the docs that is a whole config (it has a provider list)."""
    found = []
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        for match in re.finditer(r"^```ya?ml\n(.*?)^```", text, re.S | re.M):
            block = match.group(1)
            if "llm_providers" in block or "model_providers" in block:
                line = text.count("\n", 0, match.start()) + 1
                found.append(pytest.param(block, id=f"{doc.name}:{line}"))
    return found


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def schema_problems(validator: jsonschema.Draft202012Validator, config: Any) -> list[str]:
    """Each error as `path: message`, the path in the loader's notation. An optional section's error is one of
    `anyOf: [section, null]`: the most relevant error inside it is the one that names the place."""
    problems = []
    for error in validator.iter_errors(config):
        error = jsonschema.exceptions.best_match([error])
        path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path).lstrip(".")
        problems.append(f"{path}: {error.message}")
    return problems


def test_committed_schema_is_what_junction_schema_prints() -> None:
    out = junction("schema")
    assert out.returncode == 0, out.stderr
    assert out.stdout == SCHEMA_FILE.read_text(encoding="utf-8"), "regenerate it with `make schema`"
    schema = json.loads(out.stdout)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema" and schema["title"]


def test_committed_reference_page_is_generated_from_the_schema() -> None:
    from gateway.config.document import json_schema
    from gateway.config.reference import reference

    page = reference(json_schema())
    assert page == (ROOT / "docs" / "configuration-reference.md").read_text(encoding="utf-8"), "regenerate it with `make schema`"
    # every key of every section is on the page, with its description
    schema = json_schema()
    for key, spec in schema["properties"].items():
        assert f"| `{key}` |" in page and " ".join(spec["description"].split()).replace("|", "\\|") in page
    for name in ("llm_providers[].access_key", "routing.similarity_encoder", "gateway_keys[].budget_usd", "ledger.backend"):
        assert f"| `{name}` |" in page


def test_every_key_has_a_description(validator: jsonschema.Draft202012Validator) -> None:
    """The descriptions are the configuration reference and editors' hover text: none may be missing."""
    schema = validator.schema
    missing = [f"{where}.{key}" for where, section in [("(top)", schema), *schema["$defs"].items()]
               for key, spec in section.get("properties", {}).items() if not spec.get("description")]  # fmt: skip
    assert not missing, missing


def test_schema_accepts_the_repository_config(validator: jsonschema.Draft202012Validator) -> None:
    config = yaml.safe_load((ROOT / "plano_config.yaml").read_text(encoding="utf-8"))
    assert schema_problems(validator, config) == []


def test_schema_accepts_the_seed_config(validator: jsonschema.Draft202012Validator) -> None:
    if not SEED.is_file():
        pytest.skip(f"the seed config is not at {SEED}")
    assert schema_problems(validator, yaml.safe_load(SEED.read_text(encoding="utf-8"))) == []


@pytest.mark.parametrize("block", docs_examples())
def test_schema_accepts_the_docs_examples(validator: jsonschema.Draft202012Validator, block: str) -> None:
    assert schema_problems(validator, yaml.safe_load(block)) == []


def test_docs_have_whole_config_examples() -> None:
    assert len(docs_examples()) >= 5  # the extraction above still finds them


@pytest.mark.parametrize(
    ("change", "path", "message"),
    [
        ({"routing_preferences": [{"name": "a", "description": "b", "models": "deepseek-v4-pro"}]},
         "routing_preferences[0].models", "is not of type 'array'"),
        ({"llm_providers": [{"model": "openai/x", "colour": "blue"}]},
         "llm_providers[0]", "'colour' was unexpected"),
        ({"llm_provider": []}, "", "'llm_provider' was unexpected"),
        ({"timeouts": {"idle": "soon"}}, "timeouts.idle", "'soon' does not match"),
        ({"gateway_keys": [{"name": "a", "key": "k", "rpm": 0}]}, "gateway_keys[0].rpm", "less than the minimum of 1"),
        ({"state": {"backend": "etcd"}}, "state.backend", "'etcd' is not one of"),
    ],
)
def test_schema_refuses_a_broken_config_naming_the_path(
    validator: jsonschema.Draft202012Validator, change: dict[str, Any], path: str, message: str
) -> None:
    config = yaml.safe_load((ROOT / "plano_config.yaml").read_text(encoding="utf-8")) | change
    found = schema_problems(validator, config)
    assert any(p.startswith(f"{path}: ") and message in p for p in found), found


@pytest.mark.parametrize("block", docs_examples())
def test_docs_examples_pass_junction_validate(block: str, tmp_path: Path) -> None:
    """As written, with each `$VAR` they name set (to a dummy) and a CA file where one is named beside them."""
    config = tmp_path / "config.yaml"
    config.write_text(block, encoding="utf-8")
    written = yaml.safe_load(block)
    for provider in written.get("llm_providers") or written.get("model_providers") or []:
        ca_file = provider.get("tls_ca_file") if isinstance(provider, dict) else None
        if isinstance(ca_file, str) and not Path(ca_file).is_absolute():
            import trustme

            trustme.CA().cert_pem.write_to_path(str(tmp_path / ca_file))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    env.update({a or b: f"dummy-{(a or b).lower()}" for a, b in _VAR.findall(block)})
    out = junction("validate", "--config", str(config), env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "OK (" in out.stdout
