"""The registries every pluggable part goes through: lazy entries, the names the config accepts, and a part
added from outside the package."""

import pytest

from bcomc_dagster import registries
from bcomc_dagster.artifacts import ArtifactStore
from bcomc_dagster.config import parse_config
from bcomc_dagster.errors import InputError
from bcomc_dagster.llm.registry import PROVIDERS
from bcomc_dagster.registries import ANALYZERS, DEPLOYERS, GENERATORS, JUDGES, Env
from bcomc_dagster.registry import Registry
from bcomc_dagster.training.sources import SOURCES


def test_a_module_attr_entry_is_imported_on_first_use_and_unknown_names_are_listed():
    r: Registry[object] = Registry("widget", {"json": "json:dumps"})
    import json

    assert r.get("json") is json.dumps and "json" in r and r.names() == ["json"]
    with pytest.raises(ValueError, match=r"unknown widget 'yaml'; expected one of \['json'\]"):
        r.get("yaml")


def test_the_built_in_parts_are_registered():
    assert JUDGES.names() == ["strict", "reference", "llm"] and GENERATORS.names() == ["extractive"]
    assert ANALYZERS.names() == ["failure-rate"] and DEPLOYERS.names() == ["local", "vllm", "ollama"]
    assert PROVIDERS.names() == ["bedrock", "anthropic", "openai"]
    assert SOURCES.names() == ["embedded", "gguf", "folder", "ollama", "hub"]


def test_an_analyzer_added_from_outside_is_accepted_by_the_config_and_built_for_a_campaign(tmp_path):
    def first_two(env: Env):
        return lambda reports, regressed: ("first two", env.cfg.datagen.min_services, reports, regressed)

    with pytest.raises(
        InputError, match=r"analyzer_model: the embedded backend's analyzers are \['failure-rate'\]"
    ):
        parse_config({"analyzer_model": "first-two"})
    ANALYZERS.add("first-two", first_two)
    try:
        cfg = parse_config({"analyzer_model": "first-two"})
        built = registries.analyzer(Env(ArtifactStore(tmp_path), cfg, "c"))
        assert built([], ["x"]) == ("first two", 3, [], ["x"])
    finally:
        ANALYZERS.remove("first-two")


def test_the_deployer_of_each_backend(tmp_path):
    from bcomc_dagster.serving.ollama import OllamaDeployer
    from bcomc_dagster.serving.server import ServerDeployer

    store = ArtifactStore(tmp_path)
    cfg = parse_config({"model_backend": "vllm", "serving": {"request_timeout_s": 7, "request_retries": 1}})
    d = registries.deployer(Env(store, cfg, "c"))
    assert isinstance(d, ServerDeployer) and d.engine == "vllm"
    assert (d.request_timeout_s, d.request_retries) == (7, 1)
    assert d.workdir == store.campaign_dir("c") / "serving"
    o = registries.deployer(
        Env(store, parse_config({"model_backend": "ollama", "model_name": "bcomc-tiny"}), "c")
    )
    assert isinstance(o, OllamaDeployer) and o.base_tag is None


def test_a_part_registered_from_outside_shows_in_the_launchpads_descriptions():
    from bcomc_dagster.config import CampaignConfig
    from bcomc_dagster.defs import launch_schema

    JUDGES.add("exact", lambda env: None)
    DEPLOYERS.add("my-server", lambda env: None)
    try:
        schema = launch_schema.fields(CampaignConfig)
        assert "'exact'" in schema["judge"].description and "'strict'" in schema["judge"].description
        assert "'my-server'" in schema["model_backend"].description
        assert "{" not in schema["judge_backend"].description  # every placeholder filled
    finally:
        JUDGES.remove("exact")
        DEPLOYERS.remove("my-server")
    assert "'exact'" not in launch_schema.fields(CampaignConfig)["judge"].description
