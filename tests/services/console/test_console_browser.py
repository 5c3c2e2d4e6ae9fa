"""The console in a real headless Chromium (Selenium), against the live server over real HTTP
and Kafka: an instance driven as an engine would drive it (a step retried after a failure, a
sleep, a step named with `<script>`, a wait), then read, acted on and watched in the browser.

Selenium blocks and the server runs in this test's event loop: every browser step runs in a
worker thread (`asyncio.to_thread`), so the server keeps answering meanwhile.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from selenium.common.exceptions import NoAlertPresentException, StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from tests.fixtures.live_server import LiveServer, register_workflow
from tests.fixtures.service import KafkaClient

T = TypeVar("T")
HOSTILE_STEP = "<script>alert('step')</script>"
HOSTILE_PARAM = "<img src=x onerror=alert('param')>"
WAIT_S = 20


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    """SQLite only: the pages read views the same way on both stores (test_console_http.py
    and the views' own tests run on both), and a browser run is the slow part."""
    return f"sqlite:///{tmp_path / 'flowledger.db'}"


async def run(fn: Callable[..., T], *args: Any) -> T:
    return await asyncio.to_thread(fn, *args)


def wait_until(driver: WebDriver, check: Callable[[WebDriver], Any], what: str) -> Any:
    """The first truthy `check`; an element replaced meanwhile (a page loading, the live part
    refreshed) is looked for again."""
    wait = WebDriverWait(
        driver, WAIT_S, poll_frequency=0.1, ignored_exceptions=(StaleElementReferenceException,)
    )
    return wait.until(check, message=what)


def css(driver: WebDriver, selector: str) -> WebElement:
    return driver.find_element(By.CSS_SELECTOR, selector)


def status_word(driver: WebDriver) -> str:
    return css(driver, "#instance-status .status").text.strip()


def sign_in(driver: WebDriver, base_url: str, token: str, path: str) -> None:
    driver.get(f"{base_url}/console{path}")
    wait_until(driver, lambda d: d.find_elements(By.ID, "token"), "the sign-in form")
    assert "token" not in driver.current_url.split("?", 1)[0]
    css(driver, "#token").send_keys(token)
    css(driver, "form button[type=submit]").click()
    wait_until(driver, lambda d: "/sign-in" not in d.current_url, "signed in")
    assert token not in driver.current_url


def confirm(driver: WebDriver, button_id: str, screenshot: Path | None = None) -> str:
    """Clicks an action, confirms it, and returns the outcome banner's text."""
    css(driver, f"#{button_id}").click()
    wait_until(driver, lambda d: d.find_elements(By.ID, "confirm"), "the confirmation page")
    if screenshot is not None:
        driver.save_screenshot(str(screenshot))
    css(driver, "#confirm").click()
    banner = wait_until(driver, lambda d: d.find_elements(By.ID, "outcome"), "the outcome")
    return str(banner[0].text)


def screenshot(driver: WebDriver, width: int, path: Path) -> None:
    """The whole page at `width` CSS pixels (`<name>.png`), its first screen (`<name>-top.png`:
    what a reader sees before scrolling) and its timeline alone (`<name>-timeline.png`)."""
    driver.set_window_size(width, 900)
    driver.save_screenshot(str(path.with_name(f"{path.stem}-top.png")))
    timeline = driver.find_element(By.CSS_SELECTOR, "section.timeline")
    timeline.screenshot(str(path.with_name(f"{path.stem}-timeline.png")))
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(width, min(int(height) + 140, 6000))
    driver.save_screenshot(str(path))
    driver.set_window_size(1280, 900)


async def progress(
    kafka: KafkaClient, names: tuple[str, str, str], kind: str, **fields: Any
) -> None:
    """A progress command as the engine running the workflow's code would publish it."""
    account, workflow, instance = names
    command = {
        "type": kind,
        "command_id": str(uuid.uuid4()),
        "account_id": account,
        "workflow_name": workflow,
        "instance_id": instance,
        **fields,
    }
    await kafka.send(command)
    reply = await kafka.reply(command["command_id"])
    assert reply["outcome"] == "accepted", reply


async def driven_instance(live: LiveServer, kafka: KafkaClient) -> tuple[str, str, str]:
    """An instance of a new workflow in account A, left waiting for an `approved` event after
    a step that failed once and then succeeded, a sleep and a step named with `<script>`."""
    account = live.account_a
    workflow, instance = f"wf-{uuid.uuid4().hex[:8]}", f"order-{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(base_url=live.base_url) as client:
        await register_workflow(client, account, workflow, live.token_a)
        created = await client.post(
            f"/client/v4/accounts/{account}/workflows/{workflow}/instances",
            json={"instance_id": instance, "params": {"order": 42, "note": HOSTILE_PARAM}},
            headers={"Authorization": f"Bearer {live.token_a}"},
        )
        assert created.status_code == 200, created.text
    names = (account, workflow, instance)
    retried = {"retries": {"limit": 2, "delay": 150, "backoff": "constant"}, "timeout": 5000}
    steps: list[tuple[str, dict[str, Any]]] = [
        ("StartRun", {}),
        ("BeginStep", {"name": "charge card", "config": retried}),
        ("BeginAttempt", {"name": "charge card"}),
        ("EndAttempt", {"name": "charge card", "success": False,
                        "error": {"name": "CardDeclined", "message": "try again"}}),
        ("EndSleep", {"name": "charge card"}),  # the back-off, ended as the scheduler would
        ("BeginAttempt", {"name": "charge card"}),
        ("EndAttempt", {"name": "charge card", "success": True, "output": {"receipt": 7}}),
        ("EndStep", {"name": "charge card", "output": {"receipt": 7}}),
        ("BeginStep", {"name": "cool down", "step_type": "sleep", "sleep_ms": 300}),
        ("EndSleep", {"name": "cool down"}),
        ("BeginStep", {"name": HOSTILE_STEP}),
        ("BeginAttempt", {"name": HOSTILE_STEP}),
        ("EndAttempt", {"name": HOSTILE_STEP, "success": True, "output": HOSTILE_PARAM}),
        ("EndStep", {"name": HOSTILE_STEP, "output": HOSTILE_PARAM}),
        ("BeginStep", {"name": "approval", "step_type": "waitForEvent",
                       "event_type": "approved", "wait_timeout": "1 hour"}),
    ]  # fmt: skip
    for kind, fields in steps:
        await progress(kafka, names, kind, **fields)
        if kind in ("EndAttempt", "BeginStep"):
            await asyncio.sleep(0.15)  # bars with some length, as real work has
    await settled(live, names, len(steps) + 1)
    return names


async def settled(live: LiveServer, names: tuple[str, str, str], version: int) -> None:
    """Until the views show the instance at `version`: a reply comes from the commands role,
    the views follow a moment later (a page opened before would refresh itself under us)."""
    account, workflow, instance = names
    async with httpx.AsyncClient(base_url=live.base_url) as client:
        for _ in range(200):
            got = await client.get(
                f"/console/accounts/{account}/workflows/{workflow}/instances/{instance}/live",
                params={"since": version},
                headers={"Authorization": f"Bearer {live.token_a}"},
            )
            if got.status_code == 204:
                return
            await asyncio.sleep(0.05)
    raise AssertionError(f"the views never reached version {version} of {instance}")


def timeline_rows(driver: WebDriver) -> list[dict[str, Any]]:
    rows = []
    for row in driver.find_elements(By.CSS_SELECTOR, "#timeline .tl-row"):
        bars = [
            (bar.get_attribute("data-kind"), bar.get_attribute("data-outcome"))
            for bar in row.find_elements(By.CSS_SELECTOR, "rect.bar")
        ]
        rows.append(
            {
                "name": row.get_attribute("data-step-name"),
                "type": row.get_attribute("data-step-type"),
                "status": row.get_attribute("data-step-status"),
                "bars": bars,
                "shown_name": row.find_element(By.CSS_SELECTOR, ".tl-name").text,
            }
        )
    return rows


async def test_sign_in_list_open_an_instance_read_its_timeline_act_and_watch_it_change(
    live_server: LiveServer,
    live_kafka: KafkaClient,
    browser: WebDriver,
    screenshots_dir: Path,
) -> None:
    account, workflow, instance = await driven_instance(live_server, live_kafka)
    base = live_server.base_url

    # Sign in where the workflows are: the sign-in page comes first and brings us back.
    await run(sign_in, browser, base, live_server.token_a, f"/accounts/{account}/workflows")

    def workflows_page(d: WebDriver) -> None:
        d.save_screenshot(str(screenshots_dir / "workflows-1280.png"))
        row = css(d, f'#workflows tr[data-workflow="{workflow}"]')
        counts = row.find_elements(By.CSS_SELECTOR, "[data-count-status]")
        assert [
            (c.get_attribute("data-count-status"), " ".join(c.text.split())) for c in counts
        ] == [("waiting", "waiting 1")]
        row.find_element(By.LINK_TEXT, workflow).click()
        wait_until(d, lambda d: d.find_elements(By.ID, "instances"), "the instances list")

    await run(workflows_page, browser)

    def instances_page(d: WebDriver) -> None:
        d.save_screenshot(str(screenshots_dir / "instances-1280.png"))
        rows = d.find_elements(By.CSS_SELECTOR, "#instances tbody tr")
        assert [r.get_attribute("data-instance") for r in rows] == [instance]
        assert rows[0].find_element(By.CSS_SELECTOR, ".status").text == "waiting"
        # The status filter and the id search.
        css(d, "#status").send_keys("complete")
        css(d, "form.filters button").click()
        wait_until(d, lambda d: d.find_elements(By.ID, "no-instances"), "an empty filter")
        css(d, "#status").send_keys("any")
        css(d, "#q").send_keys(instance)
        css(d, "form.filters button").click()
        wait_until(d, lambda d: d.find_elements(By.ID, "instances"), "the search's answer")
        d.find_element(By.LINK_TEXT, instance).click()
        wait_until(d, lambda d: d.find_elements(By.ID, "timeline"), "the instance page")

    await run(instances_page, browser)

    def instance_page(d: WebDriver) -> None:
        assert status_word(d) == "waiting"
        assert "/console/accounts/" in d.current_url and live_server.token_a not in d.current_url
        rows = timeline_rows(d)
        assert [(r["name"], r["type"], r["status"]) for r in rows] == [
            ("charge card", "step", "complete"),
            ("cool down", "sleep", "complete"),
            (HOSTILE_STEP, "step", "complete"),
            ("approval", "waitForEvent", "waiting for approved"),
        ]
        assert rows[0]["bars"] == [
            ("attempt", "failed"),
            ("backoff", "done"),
            ("attempt", "succeeded"),
        ]
        assert rows[1]["bars"] == [("sleep", "done")]
        assert rows[3]["bars"] == [("wait", "waiting")]
        # The step's name and the params are shown as text, never run.
        assert rows[2]["shown_name"] == HOSTILE_STEP
        assert HOSTILE_PARAM in css(d, "#params").text
        assert d.execute_script("return document.scripts.length") == 1
        assert d.execute_script("return document.querySelectorAll('main img').length") == 0
        with pytest.raises(NoAlertPresentException):
            _ = d.switch_to.alert  # an alert would mean user text ran as script
        # Bars sit on one axis: each starts where the one before it ended, or later.
        xs = [
            float(r.get_attribute("x") or 0)
            for r in d.find_elements(By.CSS_SELECTOR, "#timeline rect.bar")
        ]
        assert xs == sorted(xs) and xs[0] < xs[-1]
        # The wait is open: its bar runs to now, the end of the axis.
        wait = d.find_element(By.CSS_SELECTOR, '#timeline rect[data-kind="wait"]')
        end = float(wait.get_attribute("x") or 0) + float(wait.get_attribute("width") or 0)
        assert end == pytest.approx(1000, abs=1)
        history = d.find_elements(By.CSS_SELECTOR, "#history tbody tr")
        assert history[0].text.startswith("v1 InstanceCreated")
        assert len(history) == int(history[-1].get_attribute("data-version") or 0)

    await run(instance_page, browser)
    await run(screenshot, browser, 1280, screenshots_dir / "instance-1280.png")
    await run(screenshot, browser, 400, screenshots_dir / "instance-400.png")

    def pause_and_resume(d: WebDriver) -> None:
        assert "now paused" in confirm(d, "action-pause", screenshots_dir / "confirm-1280.png")
        assert status_word(d) == "paused"
        d.save_screenshot(str(screenshots_dir / "outcome-1280.png"))
        assert not d.find_elements(By.ID, "action-pause")
        assert "now waiting" in confirm(d, "action-resume")
        assert status_word(d) == "waiting"

    await run(pause_and_resume, browser)

    def send_event(d: WebDriver) -> None:
        css(d, "#event_type").send_keys("approved")
        css(d, "#payload").send_keys('{"by": "ann"}')
        css(d, "#send-event-button").click()
        wait_until(d, lambda d: d.find_elements(By.ID, "confirm"), "the confirmation page")
        assert '"by": "ann"' in css(d, "#confirm-payload").text
        css(d, "#confirm").click()
        banner = wait_until(d, lambda d: d.find_elements(By.ID, "outcome"), "the outcome")
        assert "Send event approved: accepted" in banner[0].text
        assert status_word(d) == "running"
        approval = timeline_rows(d)[-1]
        assert (approval["name"], approval["status"], approval["bars"]) == (
            "approval",
            "event received",
            [("wait", "done")],
        )

    await run(send_event, browser)

    # The engine finishes the run; the open page shows it without a reload.
    await run(browser.execute_script, "window.__same_page = true;")
    await progress(live_kafka, (account, workflow, instance), "CompleteRun", output={"ok": True})

    def refreshed(d: WebDriver) -> None:
        wait_until(d, lambda d: status_word(d) == "complete", "the page refreshing itself")
        assert d.execute_script("return window.__same_page === true")
        assert '"ok": true' in css(d, "#output").text

    await run(refreshed, browser)

    def as_of(d: WebDriver) -> None:
        d.find_element(By.CSS_SELECTOR, '#history tr[data-version="10"] a').click()
        wait_until(d, lambda d: d.find_elements(By.ID, "as-of-note"), "the instance as of v10")
        assert "version 10 of" in css(d, "#as-of-note").text
        rows = timeline_rows(d)
        assert [r["name"] for r in rows] == ["charge card", "cool down"]
        assert rows[1]["bars"] == [("sleep", "waiting")]
        assert status_word(d) == "waiting"
        assert not d.find_elements(By.ID, "action-pause")  # no actions on the past

    await run(as_of, browser)


async def test_another_accounts_instance_is_a_404_page_and_a_form_without_csrf_is_refused(
    live_server: LiveServer, live_kafka: KafkaClient, browser: WebDriver
) -> None:
    base = live_server.base_url
    theirs, mine = live_server.account_b, live_server.account_a
    names = []
    async with httpx.AsyncClient(base_url=base) as client:
        for account in (theirs, mine):
            workflow, instance = f"wf-{uuid.uuid4().hex[:8]}", f"i-{uuid.uuid4().hex[:8]}"
            await register_workflow(client, account, workflow, live_server.token_for(account))
            created = await client.post(
                f"/client/v4/accounts/{account}/workflows/{workflow}/instances",
                json={"instance_id": instance},
                headers={"Authorization": f"Bearer {live_server.token_for(account)}"},
            )
            assert created.status_code == 200
            names.append((account, workflow, instance))
    (_, their_wf, their_instance), (_, my_wf, my_instance) = names
    their_url = f"/accounts/{theirs}/workflows/{their_wf}/instances/{their_instance}"
    my_url = f"/accounts/{mine}/workflows/{my_wf}/instances/{my_instance}"
    await run(sign_in, browser, base, live_server.token_a, my_url)

    def not_found(d: WebDriver) -> None:
        d.get(f"{base}/console{their_url}")
        assert css(d, "h1").text == "Not found"
        assert their_instance not in css(d, "main").text or "There is no" in css(d, "main").text

    await run(not_found, browser)

    def without_csrf(d: WebDriver) -> None:
        d.get(f"{base}/console{my_url}")
        wait_until(d, lambda d: d.find_elements(By.ID, "action-pause"), "the instance page")
        d.execute_script(
            "document.querySelector('#action-pause').form"
            ".querySelector('[name=csrf_token]').remove()"
        )
        css(d, "#action-pause").click()
        wait_until(d, lambda d: css(d, "h1").text == "Refused", "the refusal")
        assert "CSRF" in css(d, "main").text
        d.get(f"{base}/console{my_url}")
        assert status_word(d) == "queued"

    await run(without_csrf, browser)
