"""Settings of the HTTP face, from the environment (`STRATA_HTTP_…`) or `strata serve`."""

from __future__ import annotations

import ipaddress

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class HttpSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="STRATA_HTTP_", extra="ignore")

    host: str = Field(default="127.0.0.1", description="the address the server binds to")
    cors_origins: list[str] = Field(
        default_factory=list,
        description="origins allowed to call the API from a browser (JSON list); none: "
        "CORS closed")
    stream_poll_seconds: float = Field(
        default=0.2, gt=0, description="how often the event stream looks for new events")
    keepalive_seconds: float = Field(
        default=15.0, gt=0, description="a comment on an idle event stream this often")

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve anywhere
        return False
