"""End to end: the settings page in headless Chromium against a live admin server.

Uses Debian's ``chromium`` and ``chromium-driver`` packages (never a downloaded browser). Without
them the test is skipped on a workstation and fails under CI (``CI`` set), so a CI image that
lost the browser cannot pass silently. It takes the screenshot shown in docs/admin.md: with
``SANDBOX_UPDATE_SCREENSHOTS=1`` it refreshes ``docs/images/admin-page.png``, otherwise it writes a
copy to the temporary directory so that a test run leaves the work tree clean.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from admin_support import TOKEN, GuardedLocalProvider

from sandbox_core import registry as registry_module
from sandbox_core.hookspecs import PROVIDER_GROUP
from sandbox_core.redaction import MASK
from sandbox_core.registry import ProviderEntry, ProviderRegistry
from sandbox_core.settings import SettingsStore
from sandbox_core.settings.secrets import decrypt_secrets
from sandbox_core.testing import UnsandboxedSubprocessProvider

CHROMIUM = os.environ.get("SANDBOX_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("SANDBOX_TEST_CHROMEDRIVER") or shutil.which("chromedriver") or "/usr/bin/chromedriver"
SCREENSHOT = (
    Path(__file__).resolve().parents[2] / "docs" / "images" / "admin-page.png"
    if os.environ.get("SANDBOX_UPDATE_SCREENSHOTS")
    else Path(tempfile.gettempdir()) / "sandbox-admin-page.png"
)
SECRET = "e2e-secret-token-value"
WAIT = 20


@pytest.fixture
def admin_registry(monkeypatch: pytest.MonkeyPatch) -> ProviderRegistry:
    """Overrides the shared fixture: one installed provider whose SDK is missing, plus the good ones."""

    def load() -> Any:
        raise ModuleNotFoundError("No module named 'example_sdk'")

    broken = ProviderEntry(name="example_cloud", package="sandbox-example-cloud", version="0.3.0", value="sandbox_example_cloud", load=load)

    def discover(group: str = PROVIDER_GROUP) -> list[tuple[str, ProviderEntry]]:
        return [("example_cloud", broken)] if group == PROVIDER_GROUP else []

    monkeypatch.setattr(registry_module, "discover_entries", discover)
    registry = ProviderRegistry()
    registry.register("local", UnsandboxedSubprocessProvider())
    registry.register("guarded", GuardedLocalProvider())
    return registry


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI must run the browser test (apt-get install chromium chromium-driver)")
    pytest.skip(reason)


@pytest.fixture
def browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _unavailable("selenium is not installed")
    if not os.access(CHROMIUM, os.X_OK) or not os.access(CHROMEDRIVER, os.X_OK):
        _unavailable(f"Chromium ({CHROMIUM}) or its driver ({CHROMEDRIVER}) is missing")
    monkeypatch.setenv("SE_OFFLINE", "true")  # never let Selenium Manager fetch anything
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-dev-shm-usage",
        "--window-size=1200,1000",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


def waiter(driver: Any) -> Callable[[Callable[[Any], Any], str], Any]:
    from selenium.common.exceptions import (
        NoSuchElementException,
        StaleElementReferenceException,
    )
    from selenium.webdriver.support.ui import WebDriverWait

    # The page re-renders the form when a provider is (re)selected: retry on vanished elements.
    retry_on = (NoSuchElementException, StaleElementReferenceException)

    def wait(condition: Callable[[Any], Any], what: str) -> Any:
        return WebDriverWait(driver, WAIT, ignored_exceptions=retry_on).until(condition, message=f"timed out waiting for {what}")

    return wait


def test_configure_test_and_save_a_provider_in_the_browser(
    browser: Any, live_server: str, sandbox_settings: SettingsStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cryptography.fernet import Fernet
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    monkeypatch.setenv("SANDBOX_SECRET_KEY", Fernet.generate_key().decode())

    driver = browser
    wait = waiter(driver)
    find = driver.find_element

    def text(element_id: str) -> str:
        return str(find(By.ID, element_id).text)

    def fill(element_id: str, value: str) -> None:
        field = find(By.ID, element_id)
        field.clear()
        field.send_keys(value)

    driver.get(live_server + "/")
    wait(lambda d: find(By.ID, "token-input").is_displayed(), "the token prompt")
    assert find(By.CSS_SELECTOR, "label[for='token-input']").text == "Admin token"
    fill("token-input", "not-the-token-at-all")
    find(By.ID, "token-submit").click()
    wait(lambda d: "refused" in text("token-error"), "the refused-token message")
    assert find(By.ID, "workspace").is_displayed() is False
    fill("token-input", TOKEN)
    find(By.ID, "token-submit").click()

    card = wait(lambda d: d.find_element(By.CSS_SELECTOR, ".card[data-provider='guarded']"), "the provider cards")
    assert text("encryption") == "secrets encrypted at rest"
    active = sandbox_settings.get("sandbox.provider_type")  # the packaged default, not installed here
    assert f'The active provider "{active}" is not installed' in text("providers-error")
    broken = find(By.CSS_SELECTOR, ".card[data-provider='example_cloud']")
    assert "broken" in broken.text and "No module named 'example_sdk'" in broken.text
    broken.click()
    wait(lambda d: "No module named 'example_sdk'" in text("editor-note"), "the broken provider's error")
    assert not find(By.ID, "config-form").is_displayed()
    assert "Local subprocess behind an API token" in card.text and "loaded" in card.text
    card.click()
    wait(lambda d: d.find_element(By.ID, "field-api_token").is_displayed(), "the guarded provider's form")
    wait(lambda d: d.find_element(By.ID, "editor").get_attribute("aria-busy") == "false", "the form to finish loading")
    for field in ("api_token", "endpoints", "region", "verbose", "labels", "max_output_bytes"):
        assert find(By.CSS_SELECTOR, f"label[for='field-{field}']").text, field
    assert find(By.ID, "field-api_token").get_attribute("type") == "password"
    assert find(By.ID, "field-max_output_bytes").get_attribute("type") == "number"
    assert find(By.ID, "field-max_output_bytes").get_attribute("min") == "64"
    assert find(By.ID, "field-verbose").get_attribute("type") == "checkbox"
    assert find(By.ID, "field-endpoints").tag_name == "textarea"
    assert find(By.ID, "field-region").tag_name == "select"

    fill("field-api_token", SECRET)
    fill("field-endpoints", "http://127.0.0.1:9000\nhttp://127.0.0.1:9001")
    Select(find(By.ID, "field-region")).select_by_visible_text("us-east")
    fill("field-labels", '{"team": "qa"}')
    fill("field-max_output_bytes", "10")
    find(By.ID, "save-button").click()
    wait(lambda d: "minimum of 64" in text("error-max_output_bytes"), "the inline error next to the field")
    assert find(By.ID, "field-max_output_bytes").get_attribute("aria-invalid") == "true"
    assert sandbox_settings.provider_config("guarded") == {}, "a refused save must store nothing"

    fill("field-max_output_bytes", "65536")
    find(By.ID, "test-button").click()
    wait(lambda d: d.find_element(By.ID, "test-result").is_displayed() and text("test-exit-code") != "", "the test result panel")
    assert text("test-verdict") == "succeeded"
    assert text("test-exit-code") == "0"
    assert text("test-time").endswith(" s")
    assert "sandbox-core connection test: ok" in text("test-stdout")
    assert text("error-max_output_bytes") == ""

    find(By.ID, "activate").click()
    find(By.ID, "save-button").click()
    wait(lambda d: text("form-status").startswith("Saved"), "the save confirmation")
    stored = sandbox_settings.provider_config("guarded")
    assert stored["api_token"].startswith("enc:v1:") and stored["max_output_bytes"] == 65536
    assert decrypt_secrets(stored, ["api_token"])["api_token"] == SECRET
    assert sandbox_settings.get("sandbox.provider_type") == "guarded"
    wait(lambda d: text("providers-error") == "", "the not-installed warning to go")

    # Switching providers loads each one's own saved config.
    find(By.CSS_SELECTOR, ".card[data-provider='local']").click()
    wait(lambda d: not d.find_elements(By.ID, "field-api_token") and d.find_element(By.ID, "field-python"), "the local provider's form")
    assert find(By.ID, "field-max_output_bytes").get_attribute("value") == ""
    find(By.CSS_SELECTOR, ".card[data-provider='guarded']").click()
    wait(lambda d: d.find_element(By.ID, "field-api_token").get_attribute("value") == MASK, "the guarded provider's saved config")

    driver.refresh()
    wait(lambda d: d.find_element(By.ID, "field-api_token").get_attribute("value") == MASK, "the saved config after reload")
    wait(lambda d: d.find_element(By.ID, "editor").get_attribute("aria-busy") == "false", "the form to finish loading")
    assert find(By.ID, "field-endpoints").get_attribute("value") == "http://127.0.0.1:9000\nhttp://127.0.0.1:9001"
    assert Select(find(By.ID, "field-region")).first_selected_option.text == "us-east"
    assert find(By.ID, "field-max_output_bytes").get_attribute("value") == "65536"
    assert '"team": "qa"' in str(find(By.ID, "field-labels").get_attribute("value"))
    assert "active" in find(By.CSS_SELECTOR, ".card[data-provider='guarded']").text
    assert SECRET not in driver.page_source

    # Testing again with the masked secret uses the saved one; this is the documented screenshot.
    find(By.ID, "test-button").click()
    wait(lambda d: text("test-exit-code") == "0", "the second test result")
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1200, min(int(height) + 160, 4000))
    driver.execute_script("document.activeElement.blur(); window.scrollTo(0, 0);")
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    assert driver.save_screenshot(str(SCREENSHOT))

    # The page's own errors only: the 401 and 422 answers above are logged by Chromium as network errors.
    severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE" and e.get("source") != "network"]
    assert severe == [], severe
    # The page needs no network but its own server: no CDN, fonts, analytics or anything else.
    requested = set()
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            requested.add(message["params"]["request"]["url"])
    assert any(u.startswith(live_server + "/api/") for u in requested), requested
    network = {u for u in requested if u.startswith(("http:", "https:", "ws:", "wss:"))}
    assert {u for u in network if not u.startswith(live_server + "/")} == set()


def test_the_page_shows_the_active_providers_runtimes(browser: Any, live_server: str, sandbox_settings: SettingsStore) -> None:
    from selenium.webdriver.common.by import By

    sandbox_settings.save_provider_config("guarded", {"api_token": SECRET, "verbose": True})
    sandbox_settings.set_active_provider("guarded")
    driver = browser
    wait = waiter(driver)
    driver.get(live_server + "/")
    wait(lambda d: d.find_element(By.ID, "token-input").is_displayed(), "the token prompt")
    driver.find_element(By.ID, "token-input").send_keys(TOKEN)
    driver.find_element(By.ID, "token-submit").click()
    row = wait(lambda d: d.find_element(By.CSS_SELECTOR, "#runtimes tr[data-runtime='python']"), "the runtimes table")
    assert driver.find_element(By.ID, "health-provider").text == "guarded"
    assert driver.find_element(By.ID, "health-verdict").text == "healthy"
    assert "numpy 2.4.6, pandas 3.1.1" in row.text
    assert "preloads numpy, pandas; restored from a checkpoint (5 restored, 1 booted)" in row.text
    broken = driver.find_element(By.CSS_SELECTOR, "#runtimes tr[data-runtime='broken']")
    assert "unavailable" in broken.text and "build failed: no such package" in broken.text
    assert SECRET not in driver.page_source
    severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert severe == [], severe
