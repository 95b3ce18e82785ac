"""Bootstrap configuration bodies (Coiote-style camelCase; no key is ever returned)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from meadowlark.core.bootstrap import MAX_LIFETIME
from meadowlark.store.bootstrap_models import BootstrapConfig


class BootstrapConfiguration(BaseModel):
    """The management server account a bootstrap gives a device (or a group's devices).

    ``serverUri`` absent: this server's own CoAP (nosec) or CoAPS (psk) address. With
    ``psk``, every bootstrap generates a fresh identity and key for the device and stores
    them on its management record.
    """

    model_config = ConfigDict(extra="forbid")
    serverUri: str | None = Field(default=None, max_length=1024)
    securityMode: Literal["nosec", "psk"] = "nosec"
    shortServerId: int = Field(default=1, ge=1, le=65534)
    lifetime: int = Field(default=86400, ge=1, le=MAX_LIFETIME)
    binding: str = Field(default="U", max_length=8)
    notificationStoring: bool = True


class BootstrapConfigurationPublic(BootstrapConfiguration):
    model_config = ConfigDict(extra="ignore")
    target: Literal["device", "group"]
    id: str
    domain: str
    updateTime: datetime

    @classmethod
    def of(cls, config: BootstrapConfig) -> BootstrapConfigurationPublic:
        return cls(
            target=config.target_kind,  # type: ignore[arg-type]
            id=config.target_id,
            domain=config.domain_id,
            serverUri=config.server_uri,
            securityMode=config.security_mode,  # type: ignore[arg-type]
            shortServerId=config.short_server_id,
            lifetime=config.lifetime,
            binding=config.binding,
            notificationStoring=config.notification_storing,
            updateTime=config.updated_at,
        )
