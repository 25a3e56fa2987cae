"""A reviewer approves a paused round in the Prefect UI, in a real (headless) Chromium.

Needs the Debian packages ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them);
selenium drives them directly, so nothing is downloaded.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from prefect.client.schemas.objects import StateType
from prefect.deployments import run_deployment

from cartoflow.catalog import Catalog
from tests.deployments.conftest import Server
from tests.deployments.support import (
    ROUND,
    Process,
    round_dir,
    tiny_round,
    true_labels,
    wait_for_state,
)

pytestmark = pytest.mark.slow

WAIT_S = 60  # the UI is a single-page app: first paint on 2 busy cores takes a while


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver") or "/usr/lib/chromium/chromedriver"
    if binary is None or not Path(driver_path).exists():
        pytest.fail(
            "The browser tests need Chromium and its driver: "
            "`apt-get install -y chromium chromium-driver` (.ci/run does this)."
        )
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root in a container
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1400,2400",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _field(label: str) -> str:
    """XPath of the form field whose label starts with ``label`` (e.g. "Approve (Optional)")."""
    return (
        "//div[contains(concat(' ', @class, ' '), ' schema-form-property ')]"
        f"[.//span[@class='schema-form-property__label'][starts-with(., '{label}')]]"
    )


def test_a_reviewer_approves_the_batch_in_the_prefect_ui(
    serving: Process, prefect_server: Server, browser: Any, tmp_path: Path, artifacts_dir: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    run = run_deployment(
        ROUND,
        # no expansion candidates: a batch small enough to type its labels into the form
        parameters={"config": tiny_round(expand=False), "workspace": str(tmp_path)},
        timeout=0,
    )
    wait_for_state(run.id, StateType.PAUSED, process=serving)
    folder = round_dir(tmp_path)
    labels = true_labels(tmp_path, folder / "batch.csv")
    assert labels

    wait = WebDriverWait(browser, WAIT_S)
    browser.get(f"{prefect_server.url}/runs/flow-run/{run.id}")
    wait.until(ec.element_to_be_clickable((By.XPATH, "//button[normalize-space()='Resume']")))
    browser.find_element(By.XPATH, "//button[normalize-space()='Resume']").click()

    # the form's description is the batch summary the round exported
    modal = wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, ".p-modal__card")))
    wait.until(ec.text_to_be_present_in_element((By.CSS_SELECTOR, ".p-modal__body"), "Approve"))
    summary = modal.find_element(By.CSS_SELECTOR, "article.markdown-renderer").text
    assert f"Annotation batch for round {folder.name}" in summary
    assert f"{len(labels)} samples to review" in summary
    pools = set(pd.read_csv(folder / "batch.csv", dtype=str)["pool"])
    assert all(f"Top of {pool}" in summary for pool in pools), (pools, summary)
    assert str(folder / "batch.csv") in summary

    toggle = modal.find_element(By.XPATH, _field("Approve") + "//label[@role='switch']")
    assert toggle.get_attribute("aria-checked") == "false"  # safe default: not approved
    toggle.click()
    wait.until(lambda _: toggle.get_attribute("aria-checked") == "true")
    modal.find_element(By.XPATH, _field("Reviewer") + "//textarea").send_keys("ui-reviewer")
    inline = modal.find_element(By.XPATH, _field("Labels") + "//textarea")
    inline.send_keys(json.dumps(labels))
    assert json.loads(inline.get_attribute("value") or "{}") == labels

    screenshot = artifacts_dir / "approval-form.png"
    assert browser.save_screenshot(str(screenshot))
    print(f"screenshot of the approval form: {screenshot}")
    modal.find_element(By.XPATH, ".//button[normalize-space()='Submit']").click()

    wait_for_state(run.id, StateType.COMPLETED, process=serving)
    report = json.loads((folder / "report.json").read_text())
    assert report["state"] == "completed"
    assert report["annotator"] == "ui-reviewer"
    decisions = Catalog(tmp_path / "catalog.sqlite").decisions(folder.name)
    assert set(labels) <= set(decisions["sample_id"])  # every label typed in the form, recorded
    assert set(decisions["annotator"]) == {"ui-reviewer"}

    browser.get(f"{prefect_server.url}/runs/flow-run/{run.id}")
    wait.until(ec.text_to_be_present_in_element((By.CSS_SELECTOR, "body"), "Completed"))
    assert browser.save_screenshot(str(artifacts_dir / "round-completed.png"))
