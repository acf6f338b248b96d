"""Assemble a world (enterprise, noise, incidents) and write it to one SQLite file, byte-identical per seed."""

from __future__ import annotations

import json
import random
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from operator import itemgetter
from pathlib import Path
from typing import Any, Literal

from benchmarks.investigation import noise
from benchmarks.investigation.attacks import TEMPLATES
from benchmarks.investigation.decoys import add_decoys, best_layout
from benchmarks.investigation.enterprise import Enterprise, build_enterprise, guid, iso
from benchmarks.investigation.incidents import EVIDENCE_TYPE, AlertDraft, Entity, IncidentContext, IncidentDraft
from benchmarks.investigation.tables import ALL_TABLES, SCHEMA_INFO, create_statements, schema_info_rows

Size = Literal["small", "default", "large"]


@dataclass(frozen=True)
class WorldSize:
    users: int
    days: int
    incidents: int
    benign_incidents: int


SIZES: dict[str, WorldSize] = {
    "small": WorldSize(users=40, days=10, incidents=5, benign_incidents=6),
    "default": WorldSize(users=150, days=21, incidents=10, benign_incidents=20),
    "large": WorldSize(users=400, days=35, incidents=20, benign_incidents=40),
}
DECOYS_PER_INCIDENT = 12
# How SecurityAlert.Entities names each entity's fields (Sentinel's entity schema), per AlertEvidence column.
ENTITY_JSON_FIELDS = {
    "AccountName": "Name", "AccountDomain": "NTDomain", "AccountSid": "Sid", "AccountObjectId": "AadUserId",
    "AccountUpn": "UPN", "DeviceName": "HostName", "DeviceId": "MdatpDeviceId", "LocalIP": "LastIpAddress",
    "RemoteIP": "Address", "RemoteUrl": "Url", "FileName": "Name", "FolderPath": "Directory", "SHA1": "SHA1",
    "SHA256": "SHA256", "FileSize": "Size", "ProcessCommandLine": "CommandLine", "ProcessId": "ProcessId",
    "NetworkMessageId": "NetworkMessageId", "EmailSubject": "Subject", "Application": "Name",
    "OAuthApplicationId": "OAuthAppId",
}
ENTITY_JSON_TYPE = {
    "account": "account", "host": "host", "ip": "ip", "url": "url", "file": "file", "process": "process",
    "mailbox": "mailbox", "mailmessage": "mailMessage", "cloudapp": "cloud-application", "oauthapp": "oauth-application",
}
DETECTION_SOURCE = {
    "Microsoft Defender for Endpoint": "EDR",
    "Microsoft Defender for Office 365": "Office365ATP",
    "Microsoft Defender for Cloud Apps": "CloudAppSecurity",
    "Azure Active Directory Identity Protection": "AadIdentityProtection",
    "Microsoft Defender for Identity": "AzureATP",
}


@dataclass(frozen=True)
class Alert:
    id: str
    incident: int
    draft: AlertDraft

    @property
    def name(self) -> str:
        return self.draft.name

    @property
    def entities(self) -> list[Entity]:
        return self.draft.entities


@dataclass(frozen=True)
class Incident:
    number: int
    template: str
    title: str
    alert_ids: tuple[str, ...]

    @property
    def is_attack(self) -> bool:
        return self.template != "benign"


@dataclass
class World:
    seed: int
    size: str
    enterprise: Enterprise
    incidents: list[Incident]
    alerts: dict[str, Alert]
    rows: dict[str, list[dict[str, Any]]]

    @property
    def attack_incidents(self) -> list[Incident]:
        return [i for i in self.incidents if i.is_attack]


def build_world(seed: int, size: Size = "default", incidents: int | None = None) -> World:
    """Everything in memory; nothing depends on the clock, the machine or dict ordering."""
    spec = SIZES[size]
    count = spec.incidents if incidents is None else incidents
    if count < 1:
        raise ValueError(f"incidents must be at least 1, got {count}")
    enterprise = build_enterprise(seed, spec.users, spec.days)
    rng = random.Random(f"world:{seed}")
    rows = noise.background(enterprise, random.Random(f"noise:{seed}"))
    order = list(TEMPLATES)
    rng.shuffle(order)
    drafts: list[IncidentDraft] = []
    window = max(1, spec.days - 3)
    layouts: dict[str, int] = {}
    for n in range(count):
        day = enterprise.start + timedelta(days=1 + (n * window) // count + rng.randint(0, max(0, window // count - 1)))
        start = day + timedelta(hours=rng.randint(8, 15), minutes=rng.randint(0, 59), seconds=rng.randint(0, 59), microseconds=rng.randint(0, 999_999))
        template = order[n % len(order)]
        incident_rng = random.Random(f"incident:{seed}:{n}")
        draft = TEMPLATES[template](IncidentContext(enterprise, incident_rng, start, n))
        if template not in layouts:
            layouts[template] = best_layout(draft, enterprise, seed, template, DECOYS_PER_INCIDENT)
        layout = random.Random(f"decoys:{seed}:{template}:{layouts[template]}")
        add_decoys(draft, layout, incident_rng, enterprise, DECOYS_PER_INCIDENT)
        drafts.append(draft)
    drafts += noise.benign_incidents(enterprise, random.Random(f"benign:{seed}"), spec.benign_incidents)
    drafts.sort(key=lambda d: min(a.time for a in d.alerts))
    world = World(seed, size, enterprise, [], {}, rows)
    for number, draft in enumerate(drafts, start=1):
        _record_incident(world, draft, number, rng)
    return world


def _record_incident(world: World, draft: IncidentDraft, number: int, rng: random.Random) -> None:
    for table, table_rows in draft.rows.items():
        world.rows.setdefault(table, []).extend(table_rows)
    ids = []
    for alert in sorted(draft.alerts, key=lambda a: a.time):
        alert_id = guid(rng)
        ids.append(alert_id)
        world.alerts[alert_id] = Alert(alert_id, number, alert)
        world.rows.setdefault("SecurityAlert", []).append(_alert_row(alert_id, alert, rng))
        world.rows.setdefault("AlertEvidence", []).extend(_evidence_rows(alert_id, alert))
    first = min(a.time for a in draft.alerts)
    last = max(a.time for a in draft.alerts)
    attack = draft.template != "benign"
    world.rows.setdefault("SecurityIncident", []).append({
        "TimeGenerated": iso(last + timedelta(minutes=rng.randint(1, 20))),
        "IncidentNumber": number,
        "IncidentName": guid(rng),
        "Title": draft.title if attack else f"{draft.title} involving one user",
        "Description": draft.description,
        "Severity": draft.severity,
        "Status": "Active" if attack else "Closed",
        "Classification": "" if attack else rng.choice(("BenignPositive", "FalsePositive")),
        "Owner": json.dumps({"assignedTo": None if attack else "soc-tier1"}),
        "FirstActivityTime": iso(first),
        "LastActivityTime": iso(last),
        "AlertIds": json.dumps(ids),
        "ProviderName": "Azure Sentinel",
    })
    world.incidents.append(Incident(number, draft.template, draft.title, tuple(ids)))


def _alert_row(alert_id: str, alert: AlertDraft, rng: random.Random) -> dict[str, Any]:
    entities = []
    for n, entity in enumerate(alert.entities, start=1):
        fields = {("MailboxPrimaryAddress" if entity.kind == "mailbox" else ENTITY_JSON_FIELDS[k]): v for k, v in entity.fields}
        entities.append({"$id": str(n), "Type": ENTITY_JSON_TYPE[entity.kind], **fields})
    main = next((e for e in alert.entities if e.kind in ("host", "account")), alert.entities[0])
    return {
        "TimeGenerated": iso(alert.time),
        "SystemAlertId": alert_id,
        "AlertName": alert.name,
        "AlertSeverity": alert.severity,
        "Description": alert.description,
        "ProviderName": DETECTION_SOURCE.get(alert.product, "ASI Scheduled Alerts"),
        "ProductName": alert.product,
        "Tactics": alert.tactics,
        "Techniques": json.dumps(list(alert.techniques)),
        "StartTime": iso(alert.time - timedelta(seconds=rng.randint(30, 1800), microseconds=rng.randint(0, 999_999))),
        "EndTime": iso(alert.time),
        "CompromisedEntity": main.key,
        "Status": "New",
        "Entities": json.dumps(entities),
        "ExtendedProperties": json.dumps({"Detection": alert.product}),
    }


def _evidence_rows(alert_id: str, alert: AlertDraft) -> list[dict[str, Any]]:
    out = []
    for entity in alert.entities:
        row = {
            "Timestamp": iso(alert.time),
            "AlertId": alert_id,
            "Title": alert.name,
            "Categories": json.dumps(alert.tactics.split(",")),
            "ServiceSource": alert.product,
            "DetectionSource": DETECTION_SOURCE.get(alert.product, "Scheduled"),
            "EntityType": EVIDENCE_TYPE[entity.kind],
            "EvidenceRole": "Impacted" if entity.kind in ("account", "host", "mailbox") else "Related",
        }
        row.update(entity.fields)
        out.append(row)
    return out


def table_rows(world: World) -> dict[str, list[tuple]]:
    """Rows per table in column order, sorted by time so attack rows sit among benign ones."""
    out: dict[str, list[tuple]] = {}
    for spec in ALL_TABLES:
        if spec is SCHEMA_INFO:
            out[spec.name] = schema_info_rows()
            continue
        items = world.rows.get(spec.name, [])
        if spec.time_column:
            items = sorted(items, key=itemgetter(spec.time_column))  # stable: ties keep generation order
        has_report = "ReportId" in spec.column_names
        tuples = []
        for n, row in enumerate(items, start=1):
            if has_report:
                row = {**row, "ReportId": n}
            unknown = set(row) - set(spec.column_names)
            if unknown:
                raise ValueError(f"table {spec.name} has no column(s) {sorted(unknown)}")
            tuples.append(tuple(row.get(c) for c in spec.column_names))
        out[spec.name] = tuples
    return out


def write_world(world: World, path: Path, progress: Callable[[str], None] | None = None) -> dict[str, int]:
    """Write the SQLite file (replacing any previous one) and return rows per table."""
    tables = table_rows(world)
    partial = path.with_name(path.name + ".partial")
    partial.unlink(missing_ok=True)
    connection = sqlite3.connect(partial)
    try:
        with connection:
            for spec in ALL_TABLES:
                statements = create_statements(spec)
                connection.execute(statements[0])
                marks = ", ".join("?" * len(spec.columns))
                connection.executemany(f'INSERT INTO "{spec.name}" VALUES ({marks})', tables[spec.name])
                for statement in statements[1:]:
                    connection.execute(statement)
                if progress:
                    progress(spec.name)
        connection.execute("VACUUM")
    finally:
        connection.close()
    partial.replace(path)
    return {name: len(items) for name, items in tables.items()}

