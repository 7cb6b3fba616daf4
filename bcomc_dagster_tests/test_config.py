import json

import pytest

from bcomc_dagster.config import DEMO_CONFIG, load_config, parse_config
from bcomc_dagster.errors import InputError


def test_demo_config_is_valid():
    cfg = load_config(DEMO_CONFIG)
    assert cfg.target_pass_rate == 80 and cfg.max_iterations == 5 and cfg.eval_suite == "demo"


def test_defaults_are_the_plans_but_training_rates_follow_the_base():
    cfg = parse_config({"model_name": "smollm2-135m"})
    assert cfg.finetune.rank == 16 and cfg.datagen.examples_per_service == 50 and cfg.auto_advance is True
    # a pretrained base: measured on SmolLM2 (README), the plan's 3 epochs at 2e-4 learn new facts too slowly
    assert cfg.finetune.epochs == 4 and cfg.finetune.learning_rate == 1e-3 and cfg.eval_max_tokens == 256
    # the random-weight embedded model keeps its own, under whatever the user sets
    tiny = parse_config({"finetune": {"epochs": 2}})
    assert tiny.finetune.epochs == 2 and tiny.finetune.learning_rate == 0.003 and tiny.eval_max_tokens == 48


@pytest.mark.parametrize(
    "data, expected",
    [
        ({"max_iterations": "five"}, r"max_iterations: Input should be a valid integer.*got 'five'"),
        ({"max_iterations": 0}, r"max_iterations: Input should be greater than or equal to 1"),
        ({"target_pass_rate": 0}, r"target_pass_rate: Input should be greater than 0"),
        ({"target_pass_rate": 120}, r"target_pass_rate: Input should be less than or equal to 100"),
        ({"colour": "blue"}, r"colour: unknown key"),
        ({"datagen": {"examples": 5}}, r"datagen.examples: unknown key"),
        ({"eval_suite": "hard_99"}, r"eval_suite: suite 'hard_99' is neither a built-in suite"),
        (
            {"model_backend": "tgi"},
            r"model_backend: unknown model backend 'tgi'; expected one of \['local', 'vllm', 'ollama'\]",
        ),
        ({"serving": {"mode": "swap"}}, r"serving.mode: Input should be 'hot-swap' or 'restart'"),
        (
            {"serving": {"final_model": "first"}},
            r"serving.final_model: Input should be 'last', 'best' or 'base'",
        ),
        ({"serving": {"promote": "sometimes"}}, r"serving.promote: Input should be 'always' or 'if_better'"),
        (
            {"serving": {"promote_max_lost": -1}},
            r"serving.promote_max_lost: Input should be greater than or equal to 0",
        ),
        (
            {"datagen": {"rehearsal_share": 2}},
            r"datagen.rehearsal_share: Input should be less than or equal to 1",
        ),
        (
            {"datagen": {"passage_tokens": 8}},
            r"datagen.passage_tokens: Input should be greater than or equal to 32",
        ),
        (
            {"eval_suite": "prose", "datagen": {"passage_tokens": "big"}},
            r"datagen.passage_tokens: Input should be a valid integer",
        ),
        (
            {"model_backend": "vllm", "serving": {"base_url": "gpu-host:8000"}},
            r"serving.base_url: expected an http",
        ),
        (
            {"model_backend": "ollama", "serving": {"mode": "restart"}},
            r"serving.mode: 'restart' is a vLLM mode",
        ),
        (
            {"model_backend": "vllm", "serving": {"mode": "restart", "base_url": "http://h:8000"}},
            r"serving.mode: 'restart' starts vLLM here; with serving.base_url use 'hot-swap'",
        ),
        (
            {"serving": {"base_url": "http://h:8000"}},
            r"serving.base_url: set model_backend to 'vllm' or 'ollama'",
        ),
        (
            {"datagen": {"generator_backend": "x"}},
            r"datagen.generator_backend: unknown backend 'x'; "
            r"expected one of \['embedded', 'bedrock', 'anthropic', 'openai'\]",
        ),
        (
            {"datagen": {"generator_backend": "bedrock"}},
            r"datagen.generator_model: name a model of the 'bedrock' backend",
        ),
        (
            {"datagen": {"generator_model": "claude-3-5-haiku"}},
            r"datagen.generator_model: the embedded backend's generators are \['extractive'\]",
        ),
        (
            {"datagen": {"generator_backend": "openai", "generator_model": "m", "synthesizer_enabled": True}},
            r"datagen.synthesizer_model: required when synthesizer_enabled",
        ),
        ({"analyzer_backend": "anthropic"}, r"analyzer_model: required with analyzer_backend 'anthropic'"),
        (
            {"judge": "llm", "judge_model": "m"},
            r"judge_backend, judge_model: the 'llm' judge needs a backend",
        ),
        ({"judge": "gpt"}, r"judge: unknown judge 'gpt'; expected one of \['strict', 'reference', 'llm'\]"),
        ({"llm": {"providers": {"azure": {}}}}, r"llm.providers: unknown backend 'azure'"),
        (
            {"llm": {"providers": {"openai": {"base_url": "localhost:8000"}}}},
            r"llm.providers.openai.base_url: expected an http",
        ),
        (
            {"llm": {"prices": {"m": {"input": -1, "output": 1}}}},
            r"llm.prices.m.input: Input should be greater than or equal to 0",
        ),
        ({"budget_usd": 0}, r"budget_usd: Input should be greater than 0"),
        ({"quality": {"grounding": "judge"}}, r"quality.grounding: 'judge' needs judge_backend"),
        (
            {"quality": {"decontamination_threshold": 0}},
            r"quality.decontamination_threshold: Input should be greater than 0",
        ),
        ({"finetune": {"rank": 12}}, r"finetune.rank: expected one of \[1, 8, 16"),
        ({"base_weights": "org/some-model"}, r"base_weights: only with an Ollama tag as model_name"),
        (
            {"model_name": "some model"},
            r"model_name: expected an embedded model \('bcomc-tiny', 'smollm2-135m'\), a local",
        ),
        ({"finetune": {"device": "cpu", "precision": "fp16"}}, r"finetune.precision: 'fp16' needs a GPU"),
        (
            {"serving": {"max_model_len": 8}},
            r"serving.max_model_len: Input should be greater than or equal to 64",
        ),
    ],
)
def test_bad_configs_name_the_field(data, expected):
    with pytest.raises(InputError, match=expected):
        parse_config(data)


def test_llm_roles_config():
    cfg = parse_config(
        {
            "datagen": {
                "generator_backend": "bedrock",
                "generator_model": "claude-3-5-haiku",
                "synthesizer_enabled": True,
                "synthesizer_model": "claude-3-5-sonnet",
            },
            "analyzer_backend": "anthropic",
            "analyzer_model": "claude-3-5-sonnet",
            "judge": "llm",
            "judge_backend": "openai",
            "judge_model": "qwen2.5:7b",
            "budget_usd": 2.5,
            "llm": {
                "providers": {
                    "openai": {"base_url": "http://127.0.0.1:11434/v1", "requests_per_minute": 120}
                },
                "aliases": {"fast": {"bedrock": "us.anthropic.claude-3-5-haiku-20241022-v1:0"}},
            },
        }
    )
    assert cfg.datagen.synthesizer == ("bedrock", "claude-3-5-sonnet")
    assert (
        cfg.llm.providers["openai"].requests_per_minute == 120
        and cfg.llm.providers["openai"].max_retries == 4
    )


def test_not_json(tmp_path):
    p = tmp_path / "c.json"
    p.write_text("{nope")
    with pytest.raises(InputError, match=rf"{p}: not valid JSON"):
        load_config(p)


def test_every_bad_field_is_reported_at_once():
    with pytest.raises(InputError) as e:
        parse_config(json.dumps({"max_iterations": 0, "target_pass_rate": 200}))
    assert "max_iterations" in str(e.value) and "target_pass_rate" in str(e.value)


def test_cuda_without_a_gpu_is_refused_at_validate(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(InputError, match=r"finetune.device: 'cuda', but torch sees no CUDA device here"):
        parse_config({"finetune": {"device": "cuda"}})
    assert (
        parse_config({"finetune": {"device": "cuda", "runner": "pipes"}}).finetune.device == "cuda"
    )  # trains elsewhere
