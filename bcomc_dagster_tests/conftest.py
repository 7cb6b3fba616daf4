import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # no usage reports from the tests

from bcomc_dagster.training.base_model import BaseModelSpec, build_base_model  # noqa: E402

# the paid-API tests are collected only when asked for (`make test-paid`), and never in CI
if os.environ.get("BCOMC_PAID_TESTS") != "1" or os.environ.get("CI"):
    collect_ignore = ["test_paid_apis.py"]

TINY = BaseModelSpec(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2)
MODELS = Path(
    os.environ.get("BCOMC_TEST_MODELS", Path(__file__).resolve().parent.parent / ".bcomc" / "test-models")
)


@pytest.fixture(scope="session")
def tiny_base() -> Path:
    """A very small base model for training tests (built once, cached)."""
    return build_base_model(TINY, MODELS)


@pytest.fixture
def write_suite(tmp_path):
    """Write a suite folder from a dict of docs and a list of question dicts."""

    def make(docs: dict[str, str], questions: list[dict | str]) -> Path:
        root = tmp_path / "suite"
        (root / "docs").mkdir(parents=True)
        for name, text in docs.items():
            (root / "docs" / f"{name}.md").write_text(text)
        lines = [q if isinstance(q, str) else json.dumps(q) for q in questions]
        (root / "questions.jsonl").write_text("\n".join(lines) + "\n")
        return root

    return make
