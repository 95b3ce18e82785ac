"""Bootstrap accounts and configurations, and the store side of a bootstrap.

A *bootstrap account* is a device as the bootstrap server knows it (Coiote's
``connectorType: bootstrap`` device): an endpoint name, a domain and the credentials
the device bootstraps with. Its PSK is sealed at rest like a device's (``SecretBox``,
for the context ``BOOTSTRAP_PSKS.context(account id)``), never returned nor logged, and
every change reaches the bootstrap DTLS port's keyring (``note_psk_change``).

A *configuration* says which management server account the device is given; it
belongs to one bootstrap account, or to a group (it then applies to the devices whose
management record, the ``devices`` row of the same endpoint name, is a direct member;
a device's own configuration wins, then its groups in id order).

``SqlBootstrapConfigurations`` is the ``BootstrapConfigurations`` of the bootstrap
service: for a PSK configuration it makes a fresh identity and 16-byte key on each
bootstrap, and once the device took them it stores them on the management record
through ``core.devices.update_device`` (the one path that keeps keys, encrypted at
rest). Keys are never logged nor returned. ``BootstrapRecorder`` turns the service's
events into audit rows and device events (``EventKind.BOOTSTRAP``).
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

import structlog
from sqlalchemy import delete, exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from meadowlark.auth import permissions as catalog
from meadowlark.auth.principal import Principal
from meadowlark.core import audit, devices
from meadowlark.core.domains import in_scope, normalize_domain_id
from meadowlark.core.errors import Conflict, InvalidInput, NotFound
from meadowlark.core.events import EventBus
from meadowlark.core.secret_box import SealError, SecretBox
from meadowlark.server.bootstrap.accounts import SecurityMode, ServerAccount
from meadowlark.server.bootstrap.service import (
    BootstrapEvent,
    BootstrapPlan,
    Refusal,
    Step,
)
from meadowlark.server.registration import MAX_ENDPOINT_NAME_LENGTH
from meadowlark.server.security import Admission, DeviceSecurity, check_peer_security
from meadowlark.server.service import LwM2mServer
from meadowlark.server.transport import Peer
from meadowlark.store.bootstrap_models import BootstrapAccount, BootstrapConfig
from meadowlark.store.coiote_models import Group, GroupMembership
from meadowlark.store.db import Database
from meadowlark.store.device_models import Device
from meadowlark.store.models import Domain
from meadowlark.store.psk_keyring import BOOTSTRAP_PSKS, note_psk_change

_log = structlog.get_logger("meadowlark.bootstrap")

DEVICE = "device"
GROUP = "group"
CONFIG_SECURITY_MODES = frozenset({"nosec", "psk"})
"""Management credentials a configuration can provision (certificates: not yet)."""
BINDINGS = frozenset({"U", "UQ", "T", "TQ", "S", "SQ", "US", "UQS", "N"})
PSK_BYTES = 16
MAX_LIFETIME = 2**31 - 1


# --- bootstrap accounts ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NewBootstrapAccount:
    endpoint_name: str
    account_id: str | None = None
    domain: str | None = None
    friendly_name: str = ""
    description: str = ""
    security_mode: str | None = None
    dtls_identity: str | None = None
    dtls_psk_hex: str | None = None


def _sealed_psk(psk_box: SecretBox, account_id: str, psk_hex: str, current: str | None) -> str:
    """``psk_hex`` sealed for bootstrap account ``account_id``; ``current`` itself when it
    already holds that key (re-sending the same key changes nothing)."""
    key = bytes.fromhex(psk_hex)
    context = BOOTSTRAP_PSKS.context(account_id)
    if current is not None:
        try:
            if psk_box.open(current, context) == key:
                return current
        except SealError:
            pass
    return psk_box.seal(key, context)


async def create_account(
    session: AsyncSession, principal: Principal, new: NewBootstrapAccount, *, psk_box: SecretBox
) -> BootstrapAccount:
    """A bootstrap account; its id is the endpoint name unless given."""
    endpoint = _name("endpoint name", new.endpoint_name, MAX_ENDPOINT_NAME_LENGTH)
    account_id = _name("device id", new.account_id or endpoint, 255)
    domain_id = await _visible_domain(session, principal, new.domain)
    wants_psk = new.dtls_identity is not None or new.dtls_psk_hex is not None
    mode = new.security_mode or ("psk" if wants_psk else "nosec")
    if mode not in ("nosec", "psk"):
        raise InvalidInput("a bootstrap device's securityMode must be nosec or psk")
    if mode == "psk" and (not new.dtls_identity or new.dtls_psk_hex is None):
        raise InvalidInput("securityMode psk needs dtlsIdentity and dtlsPsk")
    if mode == "nosec" and wants_psk:
        raise InvalidInput("dtlsIdentity and dtlsPsk only apply to securityMode psk")
    taken = await session.scalar(
        select(
            exists().where(
                (BootstrapAccount.id == account_id) | (BootstrapAccount.endpoint_name == endpoint)
            )
        )
    )
    taken = taken or await session.scalar(select(exists().where(Device.id == account_id)))
    if taken:
        raise Conflict(f"device {account_id!r} (bootstrap endpoint {endpoint!r}) already exists")
    if new.dtls_identity is not None:
        _name("dtlsIdentity", new.dtls_identity, 255)
        used = await session.scalar(
            select(exists().where(BootstrapAccount.dtls_identity == new.dtls_identity))
        )
        if used:
            raise InvalidInput(f"DTLS identity {new.dtls_identity!r} is already used")
    sealed = (
        None
        if new.dtls_psk_hex is None
        else _sealed_psk(psk_box, account_id, new.dtls_psk_hex, None)
    )
    account = BootstrapAccount(
        id=account_id,
        endpoint_name=endpoint,
        domain_id=domain_id,
        friendly_name=new.friendly_name,
        description=new.description,
        security_mode=mode,
        dtls_identity=new.dtls_identity,
        dtls_psk=sealed,
    )
    session.add(account)
    await session.flush()
    if sealed is not None:
        note_psk_change(session, account_id, new.dtls_identity, sealed, BOOTSTRAP_PSKS)
    audit.record(
        session,
        "bootstrap.device_created",
        actor=principal.login,
        subject=account_id,
        domain_id=domain_id,
    )
    return account


async def get_account(
    session: AsyncSession, principal: Principal, account_id: str
) -> BootstrapAccount:
    account = await session.scalar(
        select(BootstrapAccount).where(
            BootstrapAccount.id == account_id,
            in_scope(BootstrapAccount.domain_id, principal.domain_id),
        )
    )
    if account is None:
        raise NotFound(f"device {account_id[:255]!r} not found", code=4041)
    return account


async def update_account(
    session: AsyncSession,
    principal: Principal,
    account_id: str,
    changes: devices.DeviceChanges,
    *,
    psk_box: SecretBox,
) -> BootstrapAccount:
    """Names and bootstrap credentials of a bootstrap device (a ``DeviceUpdateRequest``;
    groups, properties, blacklisting and disabling management do not apply)."""
    account = await get_account(session, principal, account_id)
    if (
        changes.add_properties
        or changes.remove_properties
        or changes.add_groups
        or changes.remove_groups
        or changes.blacklisted
        or changes.management_enabled is False
    ):
        raise InvalidInput("a bootstrap device takes names and credentials only")
    wants_psk = changes.dtls_identity is not None or changes.dtls_psk is not None
    mode = changes.security_mode or ("psk" if wants_psk else account.security_mode)
    if mode not in ("nosec", "psk"):
        raise InvalidInput("a bootstrap device's securityMode must be nosec or psk")
    if mode == "psk":
        identity = changes.dtls_identity or account.dtls_identity
        key = (
            _sealed_psk(psk_box, account.id, devices.psk_to_hex(changes.dtls_psk), account.dtls_psk)
            if changes.dtls_psk is not None
            else account.dtls_psk
        )
        if not identity or key is None:
            raise InvalidInput("securityMode psk needs dtlsIdentity and dtlsPsk")
        _name("dtlsIdentity", identity, 255)
        used = await session.scalar(
            select(
                exists().where(
                    BootstrapAccount.dtls_identity == identity, BootstrapAccount.id != account.id
                )
            )
        )
        if used:
            raise InvalidInput(f"DTLS identity {identity!r} is already used")
    elif wants_psk:
        raise InvalidInput("dtlsIdentity and dtlsPsk only apply to securityMode psk")
    else:
        identity, key = None, None
    if (identity, key) != (account.dtls_identity, account.dtls_psk):
        note_psk_change(session, account.id, identity, key, BOOTSTRAP_PSKS)
    account.security_mode, account.dtls_identity, account.dtls_psk = mode, identity, key
    if changes.friendly_name is not None:
        account.friendly_name = _name("friendlyName", changes.friendly_name, 255)
    if changes.description is not None:
        account.description = changes.description
    audit.record(
        session,
        "bootstrap.device_updated",
        actor=principal.login,
        subject=account.id,
        domain_id=account.domain_id,
        security_mode=mode,
    )
    return account


async def delete_account(session: AsyncSession, principal: Principal, account_id: str) -> None:
    """Delete a bootstrap account and its own configuration."""
    account = await get_account(session, principal, account_id)
    await session.execute(
        delete(BootstrapConfig).where(
            BootstrapConfig.target_kind == DEVICE, BootstrapConfig.target_id == account.id
        )
    )
    await session.delete(account)
    if account.dtls_psk is not None:
        note_psk_change(session, account.id, None, None, BOOTSTRAP_PSKS)
    audit.record(
        session,
        "bootstrap.device_deleted",
        actor=principal.login,
        subject=account.id,
        domain_id=account.domain_id,
    )


# --- configurations ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConfigChanges:
    """A configuration to store; ``server_uri`` None means this server's own address."""

    server_uri: str | None = None
    security_mode: str = "nosec"
    short_server_id: int = 1
    lifetime: int = 86400
    binding: str = "U"
    notification_storing: bool = True


async def _target_domain(
    session: AsyncSession, principal: Principal, kind: str, target_id: str
) -> str:
    if kind == DEVICE:
        return (await get_account(session, principal, target_id)).domain_id
    domain_id = await session.scalar(
        select(Group.domain_id).where(
            Group.id == target_id, in_scope(Group.domain_id, principal.domain_id)
        )
    )
    if domain_id is None:
        raise NotFound(f"group {target_id[:255]!r} not found", code=4041)
    return domain_id


async def get_config(
    session: AsyncSession, principal: Principal, kind: str, target_id: str
) -> BootstrapConfig:
    await _target_domain(session, principal, kind, target_id)
    config = await session.get(BootstrapConfig, (kind, target_id))
    if config is None:
        raise NotFound(f"no bootstrap configuration for {kind} {target_id[:255]!r}", code=4041)
    return config


async def put_config(
    session: AsyncSession,
    principal: Principal,
    kind: str,
    target_id: str,
    changes: ConfigChanges,
) -> BootstrapConfig:
    """Create or replace the configuration of a bootstrap device or a group."""
    domain_id = await _target_domain(session, principal, kind, target_id)
    _validate_config(changes)
    config = await session.get(BootstrapConfig, (kind, target_id))
    if config is None:
        config = BootstrapConfig(target_kind=kind, target_id=target_id, domain_id=domain_id)
        session.add(config)
    config.server_uri = changes.server_uri
    config.security_mode = changes.security_mode
    config.short_server_id = changes.short_server_id
    config.lifetime = changes.lifetime
    config.binding = changes.binding
    config.notification_storing = changes.notification_storing
    config.updated_at = datetime.now(UTC)
    await session.flush()
    audit.record(
        session,
        "bootstrap.config_set",
        actor=principal.login,
        subject=f"{kind}:{target_id}",
        domain_id=domain_id,
        security_mode=changes.security_mode,
    )
    return config


async def delete_config(
    session: AsyncSession, principal: Principal, kind: str, target_id: str
) -> None:
    config = await get_config(session, principal, kind, target_id)
    await session.delete(config)
    audit.record(
        session,
        "bootstrap.config_deleted",
        actor=principal.login,
        subject=f"{kind}:{target_id}",
        domain_id=config.domain_id,
    )


def _validate_config(changes: ConfigChanges) -> None:
    if changes.security_mode not in CONFIG_SECURITY_MODES:
        raise InvalidInput(
            f"securityMode must be one of {', '.join(sorted(CONFIG_SECURITY_MODES))}"
        )
    if changes.server_uri is not None:
        parts = urlsplit(changes.server_uri)
        wanted = "coaps" if changes.security_mode == "psk" else "coap"
        if parts.scheme not in ("coap", "coaps", "coap+tcp", "coaps+tcp") or not parts.hostname:
            raise InvalidInput("serverUri must look like coap://host:port or coaps://host:port")
        if parts.scheme.partition("+")[0] != wanted:
            raise InvalidInput(f"securityMode {changes.security_mode} needs a {wanted}:// URI")
        if not changes.server_uri.isprintable():
            raise InvalidInput("serverUri has control characters")
    if not 1 <= changes.short_server_id <= 65534:
        raise InvalidInput("shortServerId must be 1..65534")
    if not 1 <= changes.lifetime <= MAX_LIFETIME:
        raise InvalidInput(f"lifetime must be 1..{MAX_LIFETIME} seconds")
    if changes.binding not in BINDINGS:
        raise InvalidInput(f"binding must be one of {', '.join(sorted(BINDINGS))}")


async def _visible_domain(session: AsyncSession, principal: Principal, domain: str | None) -> str:
    domain_id = normalize_domain_id(domain) if domain else principal.domain_id
    if not principal.sees_domain(domain_id) or await session.get(Domain, domain_id) is None:
        raise NotFound(f"domain {domain_id!r} not found", code=4041)
    return domain_id


def _name(kind: str, value: str, max_length: int) -> str:
    if not value or len(value) > max_length or not value.isprintable():
        raise InvalidInput(f"{kind} must be 1..{max_length} printable characters")
    return value


# --- the bootstrap service's store side -------------------------------------------------


def _acting_in(domain_id: str) -> Principal:
    """The bootstrap server acting on a device record of ``domain_id``."""
    return Principal(
        user_id="bootstrap",
        login="bootstrap-server",
        domain_id=domain_id,
        account_type="admin",
        permissions=catalog.ALL,
        via="bootstrap",
    )


class SqlBootstrapConfigurations:
    """Plans from the store, credentials into the management device record."""

    def __init__(self, db: Database, lwm2m: LwM2mServer, psk_box: SecretBox) -> None:
        """``psk_box`` seals the management PSKs it provisions (as the devices API does)."""
        self._db = db
        self._lwm2m = lwm2m
        self._psk_box = psk_box
        self._waiting: list[tuple[BootstrapPlan, asyncio.Future[None]]] = []
        self._provisioner: asyncio.Task[None] | None = None
        self.default_uris: dict[str, str] = {}
        """Scheme (``coap``, ``coaps``) -> this server's address for it, set as the
        management transports bind; used when a configuration names no URI."""

    def bind(self, scheme: str, host: str, port: int) -> None:
        """Where devices reach our management server over ``scheme`` (wildcard hosts
        become loopback: configure ``serverUri`` for devices elsewhere)."""
        if host in ("0.0.0.0", "::", ""):  # noqa: S104 - a wildcard, not a bind
            host = "::1" if host == "::" else "127.0.0.1"
        shown = f"[{host}]" if ":" in host else host
        self.default_uris[scheme] = f"{scheme}://{shown}:{port}"

    async def plan(self, endpoint: str, peer: Peer) -> BootstrapPlan | Refusal:
        async with self._db.session() as session:
            account = await session.scalar(
                select(BootstrapAccount).where(BootstrapAccount.endpoint_name == endpoint)
            )
            if account is None:
                return Refusal.UNKNOWN_ENDPOINT
            admission = check_peer_security(
                endpoint, DeviceSecurity(account.security_mode, account.dtls_identity), peer
            )
            if admission is Admission.UNSECURED_TRANSPORT:
                return Refusal.UNSECURED_TRANSPORT
            if admission is not Admission.ALLOWED:
                return Refusal.IDENTITY_MISMATCH
            record_domain = await session.scalar(
                select(Device.domain_id).where(Device.endpoint_name == endpoint)
            )
            if record_domain is not None and not record_domain.startswith(account.domain_id):
                return Refusal.DOMAIN_MISMATCH
            config = await self._config_of(session, account)
        if config is None:
            return Refusal.NO_CONFIGURATION
        return self._plan(endpoint, config)

    async def _config_of(
        self, session: AsyncSession, account: BootstrapAccount
    ) -> BootstrapConfig | None:
        own = await session.get(BootstrapConfig, (DEVICE, account.id))
        if own is not None:
            return own
        group_configs = await session.scalars(
            select(BootstrapConfig)
            .join(
                GroupMembership,
                (BootstrapConfig.target_kind == GROUP)
                & (BootstrapConfig.target_id == GroupMembership.group_id),
            )
            .join(Device, Device.id == GroupMembership.device_id)
            .where(Device.endpoint_name == account.endpoint_name)
            .order_by(BootstrapConfig.target_id)
        )
        for config in group_configs:
            if account.domain_id.startswith(config.domain_id):
                return config
        return None

    def _plan(self, endpoint: str, config: BootstrapConfig) -> BootstrapPlan | Refusal:
        scheme = "coaps" if config.security_mode == "psk" else "coap"
        uri = config.server_uri or self.default_uris.get(scheme)
        if uri is None:
            return Refusal.NO_CONFIGURATION
        identity, key = b"", b""
        mode = SecurityMode.NOSEC
        if config.security_mode == "psk":
            mode = SecurityMode.PSK
            identity = f"{endpoint[:200]}:{secrets.token_hex(8)}".encode()
            key = secrets.token_bytes(PSK_BYTES)
        account = ServerAccount(
            uri=uri,
            security_mode=mode,
            short_server_id=config.short_server_id,
            lifetime=config.lifetime,
            binding=config.binding,
            notification_storing=config.notification_storing,
            public_key_or_identity=identity,
            secret_key=key,
        )
        return BootstrapPlan(endpoint, account)

    async def provisioned(self, plan: BootstrapPlan) -> None:
        """Give the management record (made now if missing, in the bootstrap account's
        domain) the credentials the device was just given.

        Concurrent bootstraps are provisioned together: one writer task takes all that
        are waiting into one transaction (SQLite has one writer, and a commit per device
        made provisioning the bottleneck of a busy bootstrap server). Should the batch
        fail, each is tried alone, so one device's problem stays its own.
        """
        done = asyncio.get_running_loop().create_future()
        self._waiting.append((plan, done))
        if self._provisioner is None or self._provisioner.done():
            self._provisioner = asyncio.get_running_loop().create_task(self._provision_waiting())
        await done

    async def _provision_waiting(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting, []
            try:
                await self._settle(batch, await self._provision([plan for plan, _ in batch]))
            except Exception:
                if len(batch) > 1:  # find the culprit: each on its own
                    for item in batch:
                        try:
                            await self._settle([item], await self._provision([item[0]]))
                        except Exception:
                            self._fail(*item)
                else:
                    self._fail(*batch[0])

    async def _settle(
        self, batch: list[tuple[BootstrapPlan, asyncio.Future[None]]], barred: list[str]
    ) -> None:
        for endpoint in barred:  # registered under the old credentials: registers anew
            await self._lwm2m.forget(endpoint)
        for _, done in batch:
            if not done.done():
                done.set_result(None)

    @staticmethod
    def _fail(plan: BootstrapPlan, done: asyncio.Future[None]) -> None:
        _log.exception("bootstrap_provisioning_failed", endpoint=plan.endpoint)
        if not done.done():
            done.set_exception(ProvisioningFailed(plan.endpoint))

    async def _provision(self, plans: list[BootstrapPlan]) -> list[str]:
        """One transaction for ``plans``; returns the endpoints whose registration must end."""
        barred: list[str] = []
        async with self._db.session() as session:
            found = await session.scalars(
                select(BootstrapAccount).where(
                    BootstrapAccount.endpoint_name.in_({plan.endpoint for plan in plans})
                )
            )
            domains = {account.endpoint_name: account.domain_id for account in found}
            for plan in plans:
                domain_id = domains.get(plan.endpoint)
                if domain_id is None:  # deleted meanwhile: nothing to provision
                    continue
                if await self._provision_one(session, plan, domain_id):
                    barred.append(plan.endpoint)
            await session.commit()
        return barred

    async def _provision_one(
        self, session: AsyncSession, plan: BootstrapPlan, domain_id: str
    ) -> bool:
        endpoint = plan.endpoint
        account = plan.account
        principal = _acting_in(domain_id)
        device_id = await session.scalar(select(Device.id).where(Device.endpoint_name == endpoint))
        if device_id is None:
            created = await devices.create_device(
                session,
                principal,
                devices.NewDevice(endpoint_name=endpoint, domain=domain_id),
                psk_box=self._psk_box,
            )
            device_id = created.id
        if account.security_mode is SecurityMode.PSK:
            changes = devices.DeviceChanges(
                security_mode="psk",
                dtls_identity=account.public_key_or_identity.decode(),
                dtls_psk={"HexadecimalPsk": account.secret_key.hex()},
            )
        else:
            changes = devices.DeviceChanges(security_mode="nosec")
        update = await devices.update_device(
            session, principal, device_id, changes, psk_box=self._psk_box
        )
        audit.record(
            session,
            "bootstrap.credentials_provisioned",
            actor=principal.login,
            subject=device_id,
            domain_id=domain_id,
            security_mode=changes.security_mode,
        )
        return update.barred


class ProvisioningFailed(Exception):
    """The management record could not take the credentials (the bootstrap fails)."""

    def __init__(self, endpoint: str) -> None:
        super().__init__(f"provisioning the credentials of {endpoint!r} failed")


class BootstrapRecorder:
    """The ``BootstrapListener``: each event becomes an audit row and a device event;
    the last one of a bootstrap also goes on the bootstrap account's record.

    Events wait in a list that one writer task drains, all pending ones in one
    transaction: rows keep the order of the events, and a busy bootstrap server costs
    one commit per batch rather than per step.
    """

    def __init__(self, db: Database, events: EventBus) -> None:
        self._db = db
        self._events = events
        self._pending: list[BootstrapEvent] = []
        self._writer: asyncio.Task[None] | None = None

    def on_bootstrap_event(self, event: BootstrapEvent) -> None:
        self._pending.append(event)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._write_pending())

    async def drain(self) -> None:
        """Wait for the rows of the events reported so far."""
        while self._writer is not None and not self._writer.done():
            await asyncio.gather(self._writer, return_exceptions=True)

    async def _write_pending(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                domains = await self._record(batch)
            except Exception:  # the store failing must not end the bootstrap
                _log.exception("bootstrap_audit_failed", events=len(batch))
                continue
            for event in batch:
                domain_id = domains.get(event.endpoint)
                if event.final:
                    _log.info(
                        "device.bootstrap_finished",
                        endpoint=event.endpoint,
                        domain=domain_id,
                        transport=event.peer.transport,
                        peer=str(event.peer),
                        step=event.step.value,
                        success=event.success,
                    )
                if domain_id is not None:
                    self._events.publish_bootstrap(
                        event.endpoint,
                        domain_id,
                        peer=event.peer,
                        operation=event.step.value,
                        reason=_result_text(event),
                    )

    async def _record(self, batch: list[BootstrapEvent]) -> dict[str, str]:
        """Write the batch; returns the domain of each known endpoint."""
        async with self._db.session() as session:
            found = await session.scalars(
                select(BootstrapAccount).where(
                    BootstrapAccount.endpoint_name.in_({event.endpoint for event in batch})
                )
            )
            accounts = {account.endpoint_name: account for account in found}
            now = datetime.now(UTC)
            for event in batch:
                account = accounts.get(event.endpoint)
                audit.record(
                    session,
                    _audit_name(event),
                    actor="bootstrap-server",
                    subject=event.endpoint,
                    domain_id=None if account is None else account.domain_id,
                    client_ip=event.peer.host,
                    step=event.step.value,
                    path=event.path,
                    code="" if event.code is None else str(event.code),
                    success=event.success,
                    detail=event.detail,
                )
                if account is not None and event.final:
                    account.last_bootstrap_time = now
                    account.last_bootstrap_result = _result_text(event)
            await session.commit()
        return {endpoint: account.domain_id for endpoint, account in accounts.items()}


def _audit_name(event: BootstrapEvent) -> str:
    if event.step is Step.REQUEST and not event.success:
        return "bootstrap.refused"
    if event.final:
        return "bootstrap.finished" if event.success else "bootstrap.failed"
    return "bootstrap.requested" if event.step is Step.REQUEST else "bootstrap.step"


def _result_text(event: BootstrapEvent) -> str:
    """``finish ok``, ``write /0/1 failed 4.00 (...)``, ``request refused 4.00
    (unknown_endpoint)``."""
    outcome = "ok" if event.success else ("refused" if event.step is Step.REQUEST else "failed")
    parts = [event.step.value]
    if event.path:
        parts.append(event.path)
    parts.append(outcome)
    if event.code is not None and not event.success:
        parts.append(str(event.code))
    text = " ".join(parts)
    if event.detail:
        text += f" ({event.detail})"
    return text[:128]
