"""The services of one running node, built from settings and shared by API and CLI."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import structlog

from meadowlark.cluster.feeds import PRINCIPALS
from meadowlark.cluster.leases import Lease, with_migration_lock
from meadowlark.cluster.node import new_node_id
from meadowlark.cluster.wiring import Cluster, signals_kind
from meadowlark.config import Settings
from meadowlark.connectivity.enforcement import ThingAdmissionPolicy, ThingIndex
from meadowlark.connectivity.listener import ConnectivityListener
from meadowlark.connectivity.recorder import ActivityRecorder
from meadowlark.connectivity.sms import make_gateway
from meadowlark.connectivity.things import ThingService
from meadowlark.core.alerts import RULES_TOPIC, AlertingValueCache, AlertService
from meadowlark.core.bootstrap import (
    BootstrapRecorder,
    SqlBootstrapConfigurations,
)
from meadowlark.core.event_handlers.delivery import HandlerDelivery
from meadowlark.core.event_handlers.outbox import HandlerOutbox
from meadowlark.core.event_handlers.service import handler_box
from meadowlark.core.events import EventBus
from meadowlark.core.firmware import FirmwareUpdates
from meadowlark.core.firmware_images import FirmwareImages
from meadowlark.core.identity import Identity
from meadowlark.core.monitoring import MONITORING_TOPIC, Monitoring
from meadowlark.core.object_models import ModelCatalog
from meadowlark.core.observations import ObservationManager
from meadowlark.core.roles import RoleCache
from meadowlark.core.secret_box import SecretBox
from meadowlark.core.tasks.callbacks import CallbackOptions, CallbackSender
from meadowlark.core.tasks.engine import EngineOptions, TaskEngine
from meadowlark.core.tasks.service import TaskService
from meadowlark.core.users import Users, bootstrap
from meadowlark.observability.gauges import NodeGauges
from meadowlark.observability.lifecycle import LifecycleLog
from meadowlark.server.bootstrap.service import BootstrapOptions, BootstrapService
from meadowlark.server.service import LwM2mServer, ServerOptions
from meadowlark.store.db import Database
from meadowlark.store.devices import SqlDeviceStores, device_domain
from meadowlark.store.migrate import upgrade_to_head
from meadowlark.store.psk_keyring import (
    BOOTSTRAP_PSK_TOPIC,
    BOOTSTRAP_PSKS,
    PSK_TOPIC,
    PskKeyring,
    seal_stored_psks,
)

_log = structlog.get_logger("meadowlark.runtime")


@dataclass
class Runtime:
    settings: Settings
    db: Database
    roles: RoleCache
    identity: Identity
    users: Users
    lwm2m: LwM2mServer
    device_stores: SqlDeviceStores
    object_models: ModelCatalog
    observations: ObservationManager
    events: EventBus
    things: ThingService
    activity: ActivityRecorder
    firmware_images: FirmwareImages
    firmware: FirmwareUpdates
    """The ``FirmwareUpdater`` (core.firmware_contract) for the task engine."""
    tasks: TaskService
    psk_box: SecretBox
    """Seals device PSKs for storage and opens them."""
    psk_keyring: PskKeyring
    """DTLS identity -> PSK for the DTLS transport's handshakes (loaded at start)."""
    bootstrap: BootstrapService
    """The LwM2M Bootstrap server's logic; a transport attaches to it (``coap/``)."""
    bootstrap_configurations: SqlBootstrapConfigurations
    bootstrap_keyring: PskKeyring
    """Bootstrap accounts' DTLS identity -> PSK, for the bootstrap server's DTLS port."""
    bootstrap_recorder: BootstrapRecorder
    alerts: AlertService
    alert_sweep: Lease
    """Runs the no-contact sweep on one node of a deployment at a time."""
    handler_outbox: HandlerOutbox
    """Device events selected by event handlers, on their way to the outbox table."""
    handler_delivery: HandlerDelivery
    """Sends the outbox to the handlers' receivers (webhook, Kafka, MQTT)."""
    handler_box: SecretBox
    """Seals event handlers' secrets."""
    monitoring: Monitoring
    """Monitoring settings, sample ingest and queries, retention and periodic reads."""
    gauges: NodeGauges
    """Samples this process's gauges for ``/metrics``."""
    cluster: Cluster | None = None
    """This node's links to the other nodes of a scaled-out deployment (None: alone)."""

    @classmethod
    def from_settings(cls, settings: Settings) -> Runtime:
        db = Database(settings.resolved_database_url)
        kind = signals_kind(settings, db.is_sqlite)
        cluster = None if kind == "off" else Cluster(settings, db, kind)
        roles = RoleCache(db) if cluster is None else cluster.roles
        identity = Identity(db, settings, roles)
        if cluster is not None:
            # A caller revoked on one node is forgotten by the others' caches at once.
            cluster.share(
                PRINCIPALS, identity.principals.on_invalidate, identity.invalidate_principals
            )
        psk_box = SecretBox.for_psks(settings)
        psk_keyring = PskKeyring(db, psk_box)
        if cluster is not None:
            # A device's key rotated on one node is re-read by the others at once.
            cluster.share(PSK_TOPIC, psk_keyring.on_local_change, psk_keyring.refresh)
        bootstrap_keyring = PskKeyring(db, psk_box, BOOTSTRAP_PSKS)
        if cluster is not None:
            cluster.share(
                BOOTSTRAP_PSK_TOPIC, bootstrap_keyring.on_local_change, bootstrap_keyring.refresh
            )
        lwm2m_settings = settings.lwm2m
        device_stores = SqlDeviceStores(
            db, lwm2m_settings.default_domain, lwm2m_settings.value_flush_interval
        )
        if cluster is not None:  # a Register's holder is recorded in its admission's commit
            device_stores.devices.co_writer = cluster.registrations
        object_models = ModelCatalog(db)
        monitoring = Monitoring(db, settings.monitoring, settings.signing_key)
        if cluster is not None:  # settings changed on one node are re-read by the others
            cluster.share(
                MONITORING_TOPIC, monitoring.index.on_local_change, monitoring.index.apply
            )
        events = EventBus(partial(device_domain, db))
        alerts = AlertService(db, events, settings.alerts.sweep_interval)
        if cluster is not None:  # a rule changed on one node is re-read by the others
            cluster.share(RULES_TOPIC, alerts.on_rules_changed, alerts.rules_changed_elsewhere)
        lwm2m = LwM2mServer(
            ServerOptions(
                request_timeout=lwm2m_settings.request_timeout,
                supported_versions=lwm2m_settings.supported_versions,
                lifetime_grace=lwm2m_settings.lifetime_grace,
                awake_window=lwm2m_settings.awake_window,
                max_registrations_per_address_per_minute=(
                    lwm2m_settings.max_registrations_per_address_per_minute
                ),
                max_pending_uplinks=lwm2m_settings.max_pending_uplinks,
                overload_max_age=(
                    lwm2m_settings.overload_max_age_min,
                    lwm2m_settings.overload_max_age_max,
                ),
                queued_request_ttl=lwm2m_settings.queued_request_ttl,
            ),
            model_resolver=lambda registration: object_models.registry_for(
                device_stores.devices.domain_of(registration.endpoint)
            ),
            registrations=None if cluster is None else cluster.registrations,
            devices=device_stores.devices,
            values=AlertingValueCache(monitoring.values(device_stores.values), alerts),
            queue=(
                device_stores.queue
                if cluster is None
                else cluster.request_queue(device_stores.queue)
            ),
        )
        monitoring.attach(lwm2m)
        lwm2m.add_listener(events)
        lwm2m.add_listener(LifecycleLog(device_stores.devices.domain_of, device_stores.ids.known))
        handler_settings = settings.event_handlers
        handler_outbox = HandlerOutbox(
            db, device_stores.devices.domain_of, flush_interval=handler_settings.flush_interval
        )
        lwm2m.add_listener(handler_outbox)
        events.sink = handler_outbox.on_bus_event
        events.sink_listens = handler_outbox.listens
        handlers_box = handler_box(settings)
        thing_index = ThingIndex() if cluster is None else cluster.thing_index
        if cluster is not None:
            cluster.wire(lwm2m, events)
        things = ThingService(db, thing_index, lwm2m, make_gateway(settings.sms))
        activity = ActivityRecorder(db, thing_index, lwm2m.traffic)
        lwm2m.admission_policy = ThingAdmissionPolicy(thing_index)
        lwm2m.add_listener(
            ConnectivityListener(
                thing_index,
                activity,
                things.link_automatically,
                domain_of=device_stores.devices.domain_of,
            )
        )
        firmware_settings = settings.firmware
        firmware_images = FirmwareImages(
            db,
            settings.data_dir,
            settings.signing_key,
            max_bytes=firmware_settings.max_bytes,
            url_lifetime=firmware_settings.url_lifetime,
            coap_url=firmware_settings.coap_url,
            http_url=firmware_settings.http_url,
        )
        firmware = FirmwareUpdates(db, lwm2m, firmware_images)
        lwm2m.add_listener(firmware)
        firmware.on_firmware_updated = partial(handler_outbox.lifecycle, "deviceUpdatedViaFota")
        task_settings = settings.tasks
        callbacks = CallbackSender(
            db,
            CallbackOptions(
                request_timeout=task_settings.callback_timeout,
                retry_initial=task_settings.callback_retry_initial,
                retry_max=task_settings.callback_retry_max,
                max_attempts=task_settings.callback_max_attempts,
                poll_interval=task_settings.callback_poll_interval,
            ),
        )
        engine = TaskEngine(
            db,
            lwm2m,
            callbacks,
            EngineOptions(
                workers=task_settings.workers,
                registration_reads=task_settings.registration_reads,
            ),
            firmware=firmware,
        )
        bootstrap_configurations = SqlBootstrapConfigurations(db, lwm2m, psk_box)
        bootstrap_recorder = BootstrapRecorder(db, events)
        bootstrap_service = BootstrapService(
            bootstrap_configurations,
            bootstrap_recorder,
            BootstrapOptions(
                request_timeout=lwm2m_settings.request_timeout,
                max_requests_per_address_per_minute=(
                    lwm2m_settings.max_registrations_per_address_per_minute
                ),
            ),
        )
        engine.finished_listeners.append(alerts.task_finished)
        return cls(
            settings=settings,
            db=db,
            roles=roles,
            identity=identity,
            users=Users(identity, roles),
            lwm2m=lwm2m,
            device_stores=device_stores,
            object_models=object_models,
            observations=ObservationManager(db, lwm2m, object_models),
            events=events,
            things=things,
            activity=activity,
            firmware_images=firmware_images,
            firmware=firmware,
            tasks=TaskService(db, lwm2m, object_models, engine),
            psk_box=psk_box,
            psk_keyring=psk_keyring,
            bootstrap=bootstrap_service,
            bootstrap_configurations=bootstrap_configurations,
            bootstrap_keyring=bootstrap_keyring,
            bootstrap_recorder=bootstrap_recorder,
            alerts=alerts,
            alert_sweep=Lease(
                db,
                "alert-sweep",
                new_node_id() if cluster is None else cluster.node_id,
                alerts.sweep_forever,
                settings.cluster.lease_ttl,
            ),
            handler_outbox=handler_outbox,
            handler_delivery=HandlerDelivery(db, handlers_box, handler_outbox, handler_settings),
            handler_box=handlers_box,
            monitoring=monitoring,
            gauges=NodeGauges(
                db,
                lwm2m,
                device_stores,
                events,
                handler_outbox,
                monitoring.writer,
                settings.metrics.sample_interval,
            ),
            cluster=cluster,
        )

    async def prepare_store(self) -> str | None:
        """Migrate to the newest schema, create the first administrator if needed, seal
        PSKs stored in clear and load the custom object models.

        Returns the administrator's password if it was generated just now.
        """
        generated: str | None = await with_migration_lock(self.db, self._migrate_and_bootstrap)
        await self.object_models.load()
        await self.things.index.load(self.db)
        self.roles.invalidate()
        self.psk_keyring.attach()
        self.bootstrap_keyring.attach()
        return generated

    async def _migrate_and_bootstrap(self) -> str | None:
        """One node at a time (see ``with_migration_lock``)."""
        await upgrade_to_head(self.db.engine)
        sealed = await seal_stored_psks(self.db, self.psk_box)
        if sealed:
            _log.info("stored_psks_sealed", devices=sealed)
        sealed = await seal_stored_psks(self.db, self.psk_box, BOOTSTRAP_PSKS)
        if sealed:
            _log.info("stored_bootstrap_psks_sealed", accounts=sealed)
        async with self.db.session() as session:
            return await bootstrap(
                session,
                self.settings.admin_password.get_secret_value()
                if self.settings.admin_password
                else None,
            )

    async def start_lwm2m(self) -> None:
        """Start the LwM2M server's timers, the batched device-data and usage writers and
        the task workers, and joins the other nodes."""
        if self.cluster is not None:
            await self.cluster.start()
        await self.psk_keyring.start()
        await self.bootstrap_keyring.start()
        self.device_stores.start()
        self.activity.start()
        await self.monitoring.start()
        await self.lwm2m.start()
        await self.tasks.engine.start()
        await self.alerts.start()
        self.alert_sweep.start()
        await self.handler_delivery.start()
        self.gauges.start()

    async def close(self) -> None:
        await self.gauges.stop()
        await self.handler_delivery.stop()
        await self.bootstrap.stop()
        await self.bootstrap_recorder.drain()
        await self.alert_sweep.stop()
        await self.alerts.stop()
        await self.tasks.engine.stop()
        await self.observations.stop()
        await self.lwm2m.stop()
        await self.monitoring.stop()
        await self.things.sms.close()
        await self.activity.stop()
        await self.device_stores.stop()
        await self.psk_keyring.stop()
        await self.bootstrap_keyring.stop()
        if self.cluster is not None:
            await self.cluster.stop()
        await self.db.dispose()
