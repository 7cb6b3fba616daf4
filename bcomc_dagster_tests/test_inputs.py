"""The second hostile sweep's inputs, row by row: each gives a clear error naming the file or field (exit 2
from the CLI), or the right behaviour; and a stored config re-reads as it was written, every field."""

import json
import os
import typing
from pathlib import Path

import dagster as dg
import pytest
from annotated_types import Ge, Gt, Le, Lt
from pydantic import BaseModel

from bcomc_dagster import cli, driver
from bcomc_dagster.artifacts import CONFIG, OUTCOME, ArtifactStore
from bcomc_dagster.config import CampaignConfig, load_config, parse_config
from bcomc_dagster.defs.partitions import campaigns
from bcomc_dagster.errors import InputError
from bcomc_dagster.evals.suite import load_suite
from bcomc_dagster.loop import Outcome

OK_DOC = "# Svc\n- default port: 6120\n"
OK_Q = {"id": "q1", "service": "svc", "question": "Port of svc?", "reference": "6120"}


# -- numbers: finite, bounded, and a stored config re-reads as written --------------------------------
def _numeric_fields(model: type, prefix: str = "") -> list[tuple[str, object]]:
    out: list[tuple[str, object]] = []
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        return out
    for name, f in model.model_fields.items():
        ann = f.annotation
        if typing.get_origin(ann) is dict:  # providers, prices: by name; one named entry stands for all
            out += _numeric_fields(typing.get_args(ann)[1], f"{prefix}{name}.openai.")
            continue
        inner = [a for a in typing.get_args(ann) if a is not type(None)] or [ann]
        for t in inner:
            if isinstance(t, type) and issubclass(t, BaseModel):
                out += _numeric_fields(t, f"{prefix}{name}.")
            elif t in (int, float):
                out.append((f"{prefix}{name}", f))
    return out


def _nested(path: str, value: object) -> dict:
    data: dict = {}
    cur = data
    *parents, leaf = path.split(".")
    for p in parents:
        cur = cur.setdefault(p, {})
    cur[leaf] = value
    return data


NUMERIC = _numeric_fields(CampaignConfig)


def test_every_numeric_field_has_an_upper_bound_in_its_schema():
    assert len(NUMERIC) > 30
    unbounded = [p for p, f in NUMERIC if not any(isinstance(m, Le | Lt) for m in f.metadata)]
    assert unbounded == []


@pytest.mark.parametrize("path", [p for p, f in NUMERIC if f.annotation in (float, float | None)])
def test_infinity_and_nan_are_refused_everywhere(path):
    for text in ("Infinity", "-Infinity", "NaN"):
        raw = json.dumps(_nested(path, 1.5)).replace("1.5", text)
        with pytest.raises(InputError, match=rf"{path.split('.')[-1]}: Input should be a finite number"):
            parse_config(raw)


@pytest.mark.parametrize("path", [p for p, _ in NUMERIC])
def test_absurd_sizes_are_refused(path):
    with pytest.raises(InputError, match=path.split(".")[-1]):
        parse_config(_nested(path, 10**18))


def _bounds(f) -> tuple[float | None, float | None]:
    lo = next((m.ge for m in f.metadata if isinstance(m, Ge)), None)
    lo = lo if lo is not None else next((m.gt for m in f.metadata if isinstance(m, Gt)), None)
    hi = next((m.le for m in f.metadata if isinstance(m, Le)), None)
    return lo, hi


def test_a_stored_config_reads_back_as_written_every_field():
    """The defaults (every field) and each numeric field at its bounds survive write and re-read."""
    whole = parse_config({})
    assert parse_config(whole.model_dump_json()) == whole
    assert set(json.loads(whole.model_dump_json())) == set(CampaignConfig.model_fields)
    tried = 0
    for path, f in NUMERIC:
        lo, hi = _bounds(f)
        for value in (lo, hi):
            if value is None:
                continue
            value = int(value) if f.annotation in (int, int | None) else float(value)
            try:
                cfg = parse_config(_nested(path, value))
            except InputError:
                continue  # a rule across fields (min above max, a rank vLLM cannot serve): refused
            assert parse_config(cfg.model_dump_json()) == cfg, path
            tried += 1
    assert tried >= len(NUMERIC)


def test_a_config_from_before_the_paired_gate_still_reads():
    old = json.loads(parse_config({}).model_dump_json())
    old["serving"]["promote_margin"] = 10
    assert parse_config(old).serving.promote_max_lost == 1


# -- config files -------------------------------------------------------------------------------------
def test_config_files_that_are_not_json_text_are_clear_errors(tmp_path):
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(InputError, match=r"deep.json: JSON nested too deeply"):
        load_config(deep)
    for name, data in (
        ("utf16.json", '{"max_iterations": 2}'.encode("utf-16")),
        ("latin1.json", b'{"a": "\xe9"}'),
    ):
        (tmp_path / name).write_bytes(data)
        with pytest.raises(InputError, match=rf"{name}: not UTF-8 text"):
            load_config(tmp_path / name)
    bom = tmp_path / "bom.json"
    bom.write_bytes(b"\xef\xbb\xbf" + b'{"max_iterations": 2}')
    assert load_config(bom).max_iterations == 2
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    for path in (fifo, Path("/dev/zero"), tmp_path):
        with pytest.raises(InputError, match=r"not a regular file; expected a JSON config file"):
            load_config(path)
    with pytest.raises(InputError, match="no such config file"):
        load_config(tmp_path / "missing.json")
    assert cli.main(["validate", str(deep)]) == cli.EXIT_INPUT


def test_a_gguf_path_that_is_not_a_file_says_so(tmp_path):
    from bcomc_dagster.training import sources

    (tmp_path / "dir.gguf").mkdir()
    with pytest.raises(ValueError, match=r"dir.gguf: not a regular file; expected a GGUF file"):
        sources.source_of(str(tmp_path / "dir.gguf"), "local").check(str(tmp_path / "dir.gguf"), "local", "")
    with pytest.raises(ValueError, match="no such GGUF file"):
        sources.source_of(str(tmp_path / "no.gguf"), "local").check(str(tmp_path / "no.gguf"), "local", "")


def test_the_suite_error_names_it_once():
    with pytest.raises(InputError) as e:
        parse_config({"eval_suite": "nope"})
    assert "eval_suite: suite 'nope' is neither" in str(e.value) and "eval_suite: eval_suite" not in str(
        e.value
    )


# -- suites -------------------------------------------------------------------------------------------
def test_suite_inputs_are_clear_errors(write_suite):
    root = write_suite({"svc": OK_DOC}, [OK_Q])
    qfile = root / "questions.jsonl"
    qfile.write_bytes(b"\xef\xbb\xbf" + qfile.read_bytes())  # a BOM is not part of the text
    assert [q.id for q in load_suite(str(root)).questions] == ["q1"]
    (root / "docs" / "svc.md").write_text("# Svc\n- default port: 6120\x00\n")
    with pytest.raises(InputError, match=r"svc.md:2: control character '\\x00'"):
        load_suite(str(root))
    (root / "docs" / "svc.md").write_text(OK_DOC)
    (root / "docs" / "deep.html").write_text("<div>" * 10_000 + "x" + "</div>" * 10_000)
    with pytest.raises(InputError, match=r"deep.html: HTML nested too deeply"):
        load_suite(str(root))
    (root / "docs" / "deep.html").unlink()
    (root / "docs" / "brine\nstream.md").write_text(OK_DOC)
    with pytest.raises(InputError, match=r"a service's doc is named <service>.<ext>"):
        load_suite(str(root))
    (root / "docs" / "brine\nstream.md").unlink()
    (root / "docs" / "dir.md").mkdir()
    with pytest.raises(InputError, match=r"dir.md: not a regular file"):
        load_suite(str(root))
    (root / "docs" / "dir.md").rmdir()
    for bad, why in (
        ({**OK_Q, "service": "svc\nx"}, "service: String should match pattern"),
        ({**OK_Q, "question": "Port\nof svc?"}, "question: Value error, must be one line|must be one line"),
        ({**OK_Q, "reference": "61\x0720"}, "control character"),
        ({**OK_Q, "id": "q 1"}, "id: String should match pattern"),
    ):
        qfile.write_text(json.dumps(bad) + "\n")
        with pytest.raises(InputError, match=why):
            load_suite(str(root))


def test_a_large_suite_loads_in_linear_time(write_suite):
    """100,000 questions: duplicate ids are found with a counter (a quadratic scan took minutes)."""
    import time

    qs = [{**OK_Q, "id": f"q{i}"} for i in range(100_000)]
    root = write_suite({"svc": OK_DOC}, qs)
    t0 = time.monotonic()
    assert len(load_suite(str(root)).questions) == 100_000
    assert time.monotonic() - t0 < 60  # a guard against the quadratic scan, not a speed target
    with (root / "questions.jsonl").open("a") as f:
        f.write(json.dumps({**OK_Q, "id": "q7"}) + "\n")
    with pytest.raises(InputError, match=r"duplicate question ids \['q7'\]"):
        load_suite(str(root))


# -- campaigns: one bad one never hides the others; stop on a finished one --------------------------
def test_an_unreadable_campaign_is_reported_and_the_others_shown(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BCOMC_HOME", str(tmp_path))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    store = ArtifactStore(tmp_path)
    (tmp_path / "dagster").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster")) as instance:
        monkeypatch.setattr(cli, "_ctx", lambda: (instance, None, store))
        instance.add_dynamic_partitions(campaigns.name, ["good", "bad", "done"])
        for c in ("good", "bad", "done"):
            store.write_json(c, None, CONFIG, parse_config({}))
        stored = json.loads(store.path("bad", None, CONFIG).read_text())
        stored["serving"]["request_timeout_s"] = None  # what Infinity used to be stored as
        store.path("bad", None, CONFIG).write_text(json.dumps(stored))
        done = Outcome(
            campaign="done",
            status="target_reached",
            iterations=1,
            baseline_pass_rate=0.0,
            final_pass_rate=90.0,
            best_iteration=1,
            best_pass_rate=90.0,
            pass_rates={0: 0.0, 1: 90.0},
            final_model="last",
            final_iteration=1,
            live_model=None,
            live_endpoint=None,
            servers_stopped=True,
            finished_at=0.0,
        )
        store.write_json("done", None, OUTCOME, done)
        assert cli.main(["status", "--json"]) == 0
        rows = {r["campaign"]: r for r in json.loads(capsys.readouterr().out)}
        assert rows["good"]["status"] == "launched" and rows["done"]["status"] == "target_reached"
        assert rows["bad"]["status"] == "unreadable" and "request_timeout_s" in rows["bad"]["failure"]
        assert cli.main(["status", "--reap"]) == 0
        out = capsys.readouterr().out
        assert "bad: unreadable" in out and "campaign.json" in out
        # stop on a finished campaign: says so and changes nothing
        for _ in range(2):
            assert cli.main(["stop", "done"]) == 0
            assert "already finished (target_reached); nothing to stop" in capsys.readouterr().out
        assert not store.path("done", None, "stopped.json").exists()
        assert driver.finished(store, "good") is None


def test_the_launchpad_states_each_fields_bounds():
    from bcomc_dagster.config import ServingConfig
    from bcomc_dagster.defs.launch_schema import describe

    text = describe(ServingConfig.model_fields["request_timeout_s"])
    assert text.startswith("Per-attempt timeout") and text.endswith("(above 0, at most 86400)")
