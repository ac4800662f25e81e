"""Where Genesys is: GENESYS_API_BASE_URL, or the API host of GENESYS_REGION."""

from __future__ import annotations

import re

from processor.settings import GenesysSettings, SettingsError


def api_base_url(settings: GenesysSettings) -> str:
    """The API base URL: the explicit one, else the region's host from the SDK's table.

    GENESYS_REGION takes an SDK region name (`eu_west_1`) or a domain
    (`mypurecloud.ie`). Raises `SettingsError` for an unknown region name.
    """
    if settings.api_base_url:
        return settings.api_base_url.rstrip("/")
    region = settings.region.strip()
    if "." in region:
        domain = re.sub(r"^(https?://)?(api\.|login\.)?", "", region).rstrip("/")
        return f"https://api.{domain}"
    from PureCloudPlatformClientV2.purecloud_region_hosts import PureCloudRegionHosts

    try:
        return str(PureCloudRegionHosts[region].get_api_host())
    except KeyError:
        names = ", ".join(h.name for h in PureCloudRegionHosts)
        raise SettingsError(f"GENESYS_REGION={region!r} is not a Genesys region: {names}") from None


def login_base_url(api_url: str) -> str:
    """The OAuth host: the API host with `api.` replaced by `login.` (as the SDK does).

    A local emulator URL has no `api.` and serves both.
    """
    return re.sub(r"//api\.", "//login.", api_url)
