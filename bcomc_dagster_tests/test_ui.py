"""The Dagster UI in a real browser: a short campaign runs into a real instance, ``dagster dev`` (webserver
and daemon) serves it on loopback, and headless Chromium (Debian's, driven by Playwright) finds the
asset lineage, the campaign's partitions and the plots in an eval report's metadata. Screenshots are
kept in ``$BCOMC_TEST_ARTIFACTS`` (default ``.bcomc/test-artifacts``). `make test` installs Chromium."""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import httpx
import pytest

from bcomc_dagster import driver
from bcomc_dagster.artifacts import ArtifactStore
from bcomc_dagster.config import parse_config
from bcomc_dagster.serving import process

pytestmark = [pytest.mark.slow, pytest.mark.server, pytest.mark.browser]
ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# flags for a headless root session on a closed network (the env doc's list)
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ASSETS = [
    "campaign_config",
    "baseline_eval",
    "failure_analysis",
    "generated_examples",
    "training_dataset",
    "checkpoint",
    "deployment",
    "eval_report",
    "campaign_outcome",
]


@pytest.fixture
def shots():
    out = Path(os.environ.get("BCOMC_TEST_ARTIFACTS", ROOT / ".bcomc" / "test-artifacts")) / "screenshots"
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.fixture
def finished_campaign(tmp_path, monkeypatch):
    """A one-iteration campaign run to its outcome in a persistent instance under DAGSTER_HOME."""
    home = tmp_path / "home"
    (home / "dagster").mkdir(parents=True)
    shutil.copy(ROOT / "dagster.yaml", home / "dagster" / "dagster.yaml")
    monkeypatch.setenv("BCOMC_HOME", str(home))
    monkeypatch.setenv("DAGSTER_HOME", str(home / "dagster"))
    cfg = parse_config(
        {
            "target_pass_rate": 100,
            "max_iterations": 1,
            "datagen": {"examples_per_service": 10},
            "finetune": {"epochs": 4, "learning_rate": 0.003},
        }
    )
    with dg.DagsterInstance.get() as instance:
        defs, store = driver.load_defs(), ArtifactStore(home)
        driver.launch(instance, defs, store, cfg, "ui-demo")
        outcome = driver.drive(instance, defs, store, "ui-demo", out=lambda s: None)
    assert outcome.status == "max_iterations_reached"
    return home


@pytest.fixture
def dagster_dev(finished_campaign):
    port = process.free_port()
    log = open(finished_campaign / "dagster-dev.log", "wb")  # noqa: SIM115 - closed below, after the server
    proc = subprocess.Popen(
        [sys.executable, "-m", "dagster", "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
        cwd=ROOT,
        env=dict(os.environ),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/server_info", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                pytest.fail(
                    "dagster dev did not come up:\n"
                    + (finished_campaign / "dagster-dev.log").read_text()[-3000:]
                )
            time.sleep(0.5)
        yield url
    finally:
        process.kill_group(proc.pid)
        log.close()


def test_lineage_partitions_and_plots_in_the_ui(dagster_dev, shots):
    if not Path(CHROMIUM).exists():
        pytest.fail(
            "Chromium is not installed: `make test` installs Debian's chromium (apt-get install chromium)"
        )
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.set_default_timeout(30_000)

        # the lineage of the loop, every stage's group and asset
        page.goto(f"{dagster_dev}/assets/campaign_outcome?view=lineage&lineageScope=upstream&lineageDepth=12")
        skip = page.get_by_role("button", name="Skip")  # a first-visit community dialog, sometimes
        page.wait_for_timeout(3000)
        if skip.count():
            skip.click()
        for name in ASSETS:
            expect(page.get_by_text(name, exact=True).first).to_be_visible()
        for group in ("launch", "evaluate", "analyze", "generate", "fine_tune", "deploy", "outcome"):
            expect(page.get_by_text(group, exact=True).first).to_be_visible()
        page.screenshot(path=shots / "lineage.png")

        # the campaign x iteration partitions of eval_report, and one partition's metadata with its plots
        page.goto(f"{dagster_dev}/assets/eval_report?view=partitions")
        page.get_by_text("ui-demo", exact=True).first.click()
        page.get_by_text("1", exact=True).first.click()
        expect(page.get_by_text("ui-demo|1").first).to_be_visible()
        page.screenshot(path=shots / "eval_report_partition.png")
        for plot, alt in (("pass_rate_plot", "pass rate"), ("service_heatmap", "per-service pass rate")):
            page.locator("tr", has_text=plot).get_by_text(
                "[Show Markdown]"
            ).click()  # Markdown opens in a dialog
            image = page.get_by_role("img", name=alt, exact=True)
            expect(image).to_be_visible()
            assert image.get_attribute("src").startswith("data:image/png;base64,")
            assert image.evaluate("img => img.complete && img.naturalWidth") > 200  # the PNG decoded
            page.screenshot(path=shots / f"{plot}.png")
            page.keyboard.press("Escape")
            expect(image).to_be_hidden()

        # the campaign's outcome and report
        page.goto(f"{dagster_dev}/assets/campaign_report?view=partitions")
        page.get_by_text("ui-demo", exact=True).first.click()
        expect(page.get_by_text("max_iterations_reached").first).to_be_visible()
        page.screenshot(path=shots / "campaign_report.png", full_page=True)
        browser.close()
    assert (shots / "lineage.png").stat().st_size > 10_000
