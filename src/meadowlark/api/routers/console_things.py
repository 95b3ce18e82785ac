"""Monogoto console connectivity API: Things (SIMs), groups, tags, CDR search, reports.

Bodies are JSON or form-encoded alike; success bodies are plain text where the console
answers in text (``Thing state updated successfully.``).
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from fastapi.responses import PlainTextResponse, Response

from meadowlark.api.deps import RuntimeDep, SessionDep, require
from meadowlark.api.forms import FORM_BODY_SCHEMA, read_object
from meadowlark.auth.principal import Principal
from meadowlark.connectivity import cdr, groups, reports
from meadowlark.connectivity.things import (
    NewThing,
    customer_id_of,
    parse_import_csv,
    require_apikey,
    things_by_ids,
    visible_thing_ids,
)
from meadowlark.core.errors import InvalidInput

router = APIRouter(tags=["console"])
_BRACKET = re.compile(r"^(sortBy|filterBy)\[([A-Za-z_]{1,40})\]$")
ApiKey = Annotated[str | None, Header(alias="apikey")]


def _int(value: str | None, name: str, default: int) -> int:
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise InvalidInput(f"{name} must be a whole number") from None


def _text_field(fields: dict[str, Any], *names: str) -> str:
    for name in names:
        value = fields.get(name)
        if value is not None:
            if not isinstance(value, str | int):
                raise InvalidInput(f"{name} must be a string")
            return str(value)
    return ""


# --- Things ------------------------------------------------------------------------------


@router.get("/things")
async def list_things(
    request: Request,
    runtime: RuntimeDep,
    session: SessionDep,
    principal: Principal = require("console:GET /things"),
) -> list[dict[str, Any]]:
    """Things, ``limit`` <= 50 from ``offset``, ``sortBy[Field]=ASC|DESC``, ``filterBy[Field]``."""
    sort: list[tuple[str, bool]] = []
    filters: dict[str, str] = {}
    for key, value in request.query_params.multi_items():
        match = _BRACKET.fullmatch(key)
        if match is None:
            continue
        if match.group(1) == "sortBy":
            if value.upper() not in ("ASC", "DESC"):
                raise InvalidInput(f"{key} must be ASC or DESC")
            sort.append((match.group(2), value.upper() == "DESC"))
        else:
            filters[match.group(2)] = value
    page = await runtime.things.page(
        session,
        principal,
        limit=_int(request.query_params.get("limit"), "limit", 50),
        offset=_int(request.query_params.get("offset"), "offset", 0),
        sort=sort,
        filters=filters,
    )
    return [
        await runtime.things.public(
            principal, thing, page.usage.get(thing.id), page.domains[thing.domain_id]
        )
        for thing in page.things
    ]


@router.post("/thing", status_code=201, openapi_extra=FORM_BODY_SCHEMA)
async def create_thing(
    request: Request,
    runtime: RuntimeDep,
    session: SessionDep,
    principal: Principal = require("console:POST /thing"),
) -> dict[str, Any]:
    """Create one Thing (``ICCID`` required; ``IMSI``, ``MSISDN``, ``IMEI``, ``ThingName``...)."""
    thing = await runtime.things.create(principal, NewThing.from_fields(await read_object(request)))
    return await runtime.things.body(session, principal, thing)


@router.post("/things/import")
async def import_things(
    request: Request,
    runtime: RuntimeDep,
    principal: Principal = require("console:POST /things/import"),
) -> dict[str, Any]:
    """Bulk import from a CSV body; a result per row (a row is created whole or not at all)."""
    try:
        text = (await request.body()).decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidInput("the CSV is not valid UTF-8") from None
    rows = parse_import_csv(text)
    report = await runtime.things.import_things(principal, rows, first_row=2)
    return {
        "Imported": report.imported,
        "Failed": report.failed,
        "Results": [
            {"Row": r.row, "ICCID": r.iccid, "ThingId": r.thing_id, "Error": r.error}
            for r in report.results
        ],
    }


@router.get("/thing/status")
async def things_status(
    request: Request,
    runtime: RuntimeDep,
    session: SessionDep,
    principal: Principal = require("console:GET /thing/status"),
) -> dict[str, Any]:
    """Connection status from the devices' registrations (``ThingIds``, ``limit``, ``offset``)."""
    refs = [
        ref.strip()
        for value in request.query_params.getlist("ThingIds")
        for ref in value.split(",")
        if ref.strip()
    ]
    things = await things_by_ids(
        session,
        principal,
        refs,
        _int(request.query_params.get("limit"), "limit", 50),
        _int(request.query_params.get("offset"), "offset", 0),
    )
    return {
        "Success": True,
        "Message": "Operation succeeded",
        "Data": await runtime.things.status(session, principal, things),
    }


@router.put("/thing/update", openapi_extra=FORM_BODY_SCHEMA, response_class=PlainTextResponse)
async def update_thing(
    request: Request,
    runtime: RuntimeDep,
    principal: Principal = require("console:PUT /thing/update"),
) -> str:
    """Update a Thing (name, IMEI lock, group, tags...); ``cas`` must be current, else 409."""
    await runtime.things.update(principal, await read_object(request))
    return "Thing undefined successfully saved."


@router.post("/thing/searchCDR", openapi_extra=FORM_BODY_SCHEMA)
async def search_cdr(
    request: Request,
    session: SessionDep,
    apikey: ApiKey = None,
    principal: Principal = require("console:POST /thing/searchCDR"),
) -> dict[str, Any]:
    """Search the connectivity event log (``ThingIdELK``, ``EsDataTypeELK``, time range...)."""
    require_apikey(principal, await customer_id_of(session, principal.domain_id), apikey)
    fields = await read_object(request)
    thing_ref = fields.get("ThingIdELK")
    refs = thing_ref if isinstance(thing_ref, list) else [thing_ref] if thing_ref else []
    if not all(isinstance(ref, str) for ref in refs):
        raise InvalidInput("ThingIdELK must be a Thing id or a list of them")
    limit = _int(_text_field(fields, "limit") or None, "limit", 100)
    if not 1 <= limit <= cdr.MAX_RESULTS:
        raise InvalidInput(f"limit must be 1..{cdr.MAX_RESULTS}")
    since, before = _text_field(fields, "gteTimestampELK"), _text_field(fields, "ltTimestampELK")
    query = cdr.CdrQuery(
        thing_ids=await visible_thing_ids(session, principal, refs),
        severity=_text_field(fields, "SeverityELK") or None,
        data_type=_text_field(fields, "EsDataTypeELK") or None,
        message_type=_text_field(fields, "MessageTypeELK") or None,
        since=cdr.parse_timestamp(since, "gteTimestampELK") if since else None,
        before=cdr.parse_timestamp(before, "ltTimestampELK") if before else None,
        limit=limit,
    )
    total, events = await cdr.search(session, principal.domain_id, query)
    return {
        "totalResults": total,
        "hits": [
            {
                "_id": str(event.id),
                "_source": {
                    "ThingId": event.thing_id,
                    "EsDataType": event.data_type,
                    "Severity": event.severity,
                    "MessageType": event.message_type,
                    "message": event.message,
                    "Timestamp": event.at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                    "Details": event.details,
                },
            }
            for event in events
        ],
    }


@router.get("/thing/{ThingId}")
async def get_thing(
    ThingId: str,  # noqa: N803 - the console's parameter name
    runtime: RuntimeDep,
    session: SessionDep,
    principal: Principal = require("console:GET /thing/{ThingId}"),
) -> dict[str, Any]:
    """One Thing, with ``cas`` (for updates), ``IPs`` and ``ActualUsage``."""
    thing = await runtime.things.get(session, principal, ThingId)
    return await runtime.things.body(session, principal, thing)


@router.delete("/thing/{ThingId}", response_class=PlainTextResponse)
async def delete_thing(
    ThingId: str,  # noqa: N803
    runtime: RuntimeDep,
    principal: Principal = require("console:DELETE /thing/{ThingId}"),
) -> str:
    """Delete a Thing and its usage records."""
    await runtime.things.delete(principal, ThingId)
    return "Thing deleted successfully."


@router.get("/thing/{ThingId}/state", response_class=PlainTextResponse)
async def get_state(
    ThingId: str,  # noqa: N803
    runtime: RuntimeDep,
    session: SessionDep,
    principal: Principal = require("console:GET /thing/{ThingId}/state"),
) -> str:
    """The bare state: ``PROVISIONED``, ``TEST_ACTIVE``, ``ACTIVE``, ``SUSPENDED``, ``RETIRED``."""
    return (await runtime.things.get(session, principal, ThingId)).state


@router.put(
    "/thing/{ThingId}/state", openapi_extra=FORM_BODY_SCHEMA, response_class=PlainTextResponse
)
async def put_state(
    ThingId: str,  # noqa: N803
    request: Request,
    runtime: RuntimeDep,
    principal: Principal = require("console:PUT /thing/{ThingId}/state"),
) -> str:
    """Move the Thing to ``state`` (ACTIVE, SUSPENDED...); an invalid transition is a 409."""
    fields = await read_object(request)
    state = _text_field(fields, "state", "State")
    if not state:
        raise InvalidInput("state is required")
    await runtime.things.set_state(principal, ThingId, state)
    return "Thing state updated successfully."


@router.put("/thing/{ThingId}/device", openapi_extra=FORM_BODY_SCHEMA)
async def link_device(
    ThingId: str,  # noqa: N803
    request: Request,
    runtime: RuntimeDep,
    session: SessionDep,
    principal: Principal = require("console:PUT /thing/{ThingId}/device"),
) -> dict[str, Any]:
    """Link the Thing to one of your LwM2M devices by endpoint name (empty: unlink)."""
    fields = await read_object(request)
    thing = await runtime.things.link(principal, ThingId, _text_field(fields, "Endpoint"))
    return await runtime.things.body(session, principal, thing)


@router.get("/thing/{ThingId}/refreshConnection")
async def refresh_connection(
    ThingId: str,  # noqa: N803
    runtime: RuntimeDep,
    principal: Principal = require("console:GET /thing/{ThingId}/refreshConnection"),
) -> dict[str, Any]:
    """Ask the device to update its registration (queued while it sleeps)."""
    outcome = await runtime.things.refresh_connection(principal, ThingId)
    return {"Success": True, "Message": outcome}


@router.post("/thing/{ThingId}/ping", openapi_extra=FORM_BODY_SCHEMA)
async def ping_thing(
    ThingId: str,  # noqa: N803
    request: Request,
    runtime: RuntimeDep,
    session: SessionDep,
    apikey: ApiKey = None,
    principal: Principal = require("console:POST /thing/{ThingId}/ping"),
) -> list[dict[str, Any]]:
    """CoAP ping to the linked device: ``[{host,size,ttl,time,sent,received,packetLoss}]``."""
    require_apikey(principal, await customer_id_of(session, principal.domain_id), apikey)
    await read_object(request)  # ``IPAddress`` names the Thing's own IP: nothing to choose
    return [await runtime.things.ping(principal, ThingId)]


@router.post("/thing/{ThingId}/sms", openapi_extra=FORM_BODY_SCHEMA)
async def send_sms(
    ThingId: str,  # noqa: N803
    request: Request,
    runtime: RuntimeDep,
    principal: Principal = require("console:POST /thing/{ThingId}/sms"),
) -> str:
    """Send an MT SMS (``Message``, ``From``) through the SMS gateway; its message id."""
    fields = await read_object(request)
    return await runtime.things.send_sms(
        principal, ThingId, _text_field(fields, "Message"), _text_field(fields, "From")
    )


# --- groups and tags ---------------------------------------------------------------------


@router.get("/thingsgroups")
async def list_groups(
    session: SessionDep, principal: Principal = require("console:GET /thingsgroups")
) -> list[dict[str, Any]]:
    """The Things groups you see."""
    return [groups.group_body(g) for g in await groups.list_groups(session, principal)]


@router.post("/thingsgroup", status_code=201, openapi_extra=FORM_BODY_SCHEMA)
async def create_group(
    request: Request,
    runtime: RuntimeDep,
    session: SessionDep,
    principal: Principal = require("console:POST /thingsgroup"),
) -> dict[str, Any]:
    """Create a group (``ThingsGroupName``, ``IMEIPrefix``, ``LockMasterImei``)."""
    group = await groups.create_group(
        session, principal, runtime.things.index, await read_object(request)
    )
    await session.commit()
    return groups.group_body(group)


@router.get("/thingsgroup/{ThingsGroupId}")
async def get_group(
    ThingsGroupId: str,  # noqa: N803
    session: SessionDep,
    principal: Principal = require("console:GET /thingsgroup/{ThingsGroupId}"),
) -> dict[str, Any]:
    """One Things group."""
    return groups.group_body(await groups.get_group(session, principal, ThingsGroupId))


@router.put("/thingsgroup/{ThingsGroupId}", openapi_extra=FORM_BODY_SCHEMA)
async def update_group(
    ThingsGroupId: str,  # noqa: N803
    request: Request,
    runtime: RuntimeDep,
    session: SessionDep,
    principal: Principal = require("console:PUT /thingsgroup/{ThingsGroupId}"),
) -> dict[str, Any]:
    """Change a group: name, IMEI range lock (``IMEIPrefix``, ``LockMasterImei``)."""
    group = await groups.update_group(
        session, principal, runtime.things.index, ThingsGroupId, await read_object(request)
    )
    await session.commit()
    return groups.group_body(group)


@router.delete("/thingsgroup/{ThingsGroupId}", status_code=204)
async def delete_group(
    ThingsGroupId: str,  # noqa: N803
    runtime: RuntimeDep,
    session: SessionDep,
    principal: Principal = require("console:DELETE /thingsgroup/{ThingsGroupId}"),
) -> Response:
    """Delete an empty group."""
    await groups.delete_group(session, principal, runtime.things.index, ThingsGroupId)
    await session.commit()
    return Response(status_code=204)


@router.get("/tags")
async def list_tags(
    session: SessionDep, principal: Principal = require("console:GET /tags")
) -> list[dict[str, Any]]:
    """Tags of your domain's Things."""
    return [groups.tag_body(t) for t in await groups.list_tags(session, principal)]


@router.post("/tag", status_code=201, openapi_extra=FORM_BODY_SCHEMA)
async def create_tag(
    request: Request, session: SessionDep, principal: Principal = require("console:POST /tag")
) -> dict[str, Any]:
    """Create a tag (``Name``)."""
    fields = await read_object(request)
    tag = await groups.create_tag(session, principal, _text_field(fields, "Name"))
    await session.commit()
    return groups.tag_body(tag)


@router.delete("/tag/{TagId}", status_code=204)
async def delete_tag(
    TagId: str,  # noqa: N803
    session: SessionDep,
    principal: Principal = require("console:DELETE /tag/{TagId}"),
) -> Response:
    """Delete a tag."""
    await groups.delete_tag(session, principal, TagId)
    await session.commit()
    return Response(status_code=204)


# --- usage reports -----------------------------------------------------------------------


@router.get("/report-templates")
async def list_templates(
    session: SessionDep, principal: Principal = require("console:GET /report-templates")
) -> list[dict[str, Any]]:
    """Your report templates."""
    return [reports.template_body(t) for t in await reports.list_templates(session, principal)]


@router.post("/report-template", openapi_extra=FORM_BODY_SCHEMA)
async def create_template(
    request: Request,
    session: SessionDep,
    principal: Principal = require("console:POST /report-template"),
) -> str:
    """Create a usage report template (``Name``, ``ReportPeriod{startDate,endDate}``); its id."""
    template = await reports.create_template(session, principal, await read_object(request))
    await session.commit()
    return template.id


@router.post("/report-history/{ReportTemplateId}")
async def generate_report(
    ReportTemplateId: str,  # noqa: N803
    session: SessionDep,
    principal: Principal = require("console:POST /report-history/{ReportTemplateId}"),
) -> str:
    """Generate the template's report from the recorded usage; the history entry's id."""
    history = await reports.generate(session, principal, ReportTemplateId)
    await session.commit()
    return history.id


@router.get("/report-history/byTemplate")
async def report_histories(
    session: SessionDep,
    ReportTemplateId: str | None = None,  # noqa: N803
    principal: Principal = require("console:GET /report-history/byTemplate"),
) -> dict[str, Any]:
    """Generated reports (of one template with ``ReportTemplateId``), each with ``csvPath``."""
    found = await reports.histories(session, principal, ReportTemplateId)
    return {"dbResponse": [reports.history_body(h) for h in found]}


@router.get("/report-history/downloadReport/csv/{csvPath:path}")
async def download_report(
    csvPath: str,  # noqa: N803
    session: SessionDep,
    principal: Principal = require("console:GET /report-history/downloadReport/csv/{csvPath}"),
) -> Response:
    """A generated report as CSV (``csvPath`` URL-encoded)."""
    content = await reports.download(session, principal, csvPath)
    return Response(content, media_type="text/csv")
