"""A real headless Chromium for the console's browser tests, provisioned by the project itself.

:func:`ensure_browser` finds Chromium and its chromedriver on the PATH; when either is missing
on a Debian or Ubuntu machine it installs Debian's ``chromium`` and ``chromium-driver``
packages with ``apt-get`` (as root, or through ``sudo -n`` when that needs no password), then
looks again. Anything else (no apt-get, no root, a failed install) raises
:class:`BrowserProvisioningError` with the reason, which the tests' fixture turns into a skip,
or a failure under ``FLOWLEDGER_REQUIRE_BACKENDS=1``.

``python -m services.dev_provisioning.browser`` does the same from ``make test`` (the
``browser`` target): it prints the paths, or the reason and exits 0 so that the test run goes
on and skips the browser tests, unless ``FLOWLEDGER_REQUIRE_BACKENDS=1`` (exit 1).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass

BROWSER_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
DRIVER_NAME = "chromedriver"
DEBIAN_PACKAGES = ("chromium", "chromium-driver")
INSTALL_TIMEOUT_S = 900


class BrowserProvisioningError(RuntimeError):
    """No browser could be found or installed; the message says why."""


@dataclass(frozen=True)
class Browser:
    binary: str
    driver: str


def find_browser() -> Browser | None:
    binary = next((path for name in BROWSER_NAMES if (path := shutil.which(name))), None)
    driver = shutil.which(DRIVER_NAME)
    if binary is None or driver is None:
        return None
    return Browser(binary, driver)


def _privileged_prefix() -> list[str]:
    if os.geteuid() == 0:
        return []
    sudo = shutil.which("sudo")
    if sudo is not None:
        probe = subprocess.run([sudo, "-n", "true"], capture_output=True, check=False)
        if probe.returncode == 0:
            return [sudo, "-n"]
    raise BrowserProvisioningError(
        "Chromium and chromedriver are not installed, and installing them needs root "
        f"(apt-get install {' '.join(DEBIAN_PACKAGES)})"
    )


def _install_debian_packages() -> None:
    apt_get = shutil.which("apt-get")
    if apt_get is None:
        raise BrowserProvisioningError(
            "Chromium and chromedriver are not installed, and there is no apt-get to install "
            "them with: install a Chromium and its chromedriver on the PATH"
        )
    prefix = _privileged_prefix()
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (
        [apt_get, "update"],
        [apt_get, "install", "-y", "--no-install-recommends", *DEBIAN_PACKAGES],
    ):
        try:
            result = subprocess.run(
                [*prefix, *command],
                capture_output=True,
                text=True,
                env=env,
                timeout=INSTALL_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired as error:
            raise BrowserProvisioningError(f"{' '.join(command)} took too long") from error
        if result.returncode != 0:
            last = (result.stderr or result.stdout).strip().splitlines()[-1:] or [""]
            raise BrowserProvisioningError(
                f"{' '.join(command[:2])} failed ({result.returncode}): {last[0]}"
            )


def ensure_browser(install: bool = True) -> Browser:
    """Chromium and chromedriver, installed first if need be (see the module's docstring)."""
    found = find_browser()
    if found is not None:
        return found
    if not install:
        raise BrowserProvisioningError("Chromium or chromedriver is not on the PATH")
    _install_debian_packages()
    found = find_browser()
    if found is None:
        raise BrowserProvisioningError(
            f"installed {' and '.join(DEBIAN_PACKAGES)}, yet Chromium or chromedriver is not "
            "on the PATH"
        )
    return found


def main() -> int:
    try:
        browser = ensure_browser()
    except BrowserProvisioningError as error:
        required = os.environ.get("FLOWLEDGER_REQUIRE_BACKENDS") == "1"
        print(f"browser: none ({error}); the browser tests will {'fail' if required else 'skip'}")
        return 1 if required else 0
    print(f"browser: {browser.binary}, driver: {browser.driver}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
