"""Row builders shared by benign noise and attacks, so attack rows look exactly like real rows."""

from __future__ import annotations

import json
import random
from datetime import datetime
from typing import Any

from benchmarks.investigation.enterprise import CLOUD_APPS, Device, Enterprise, FileImage, User, guid, iso

Row = dict[str, Any]
BROWSER_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/125.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.80",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
)
SIGNIN_RESULTS = {
    "0": "",
    "50126": "Error validating credentials due to invalid username or password.",
    "50074": "Strong Authentication is required.",
    "50053": "Account is locked because user tried to sign in too many times with an incorrect user ID or password.",
    "500121": "Authentication failed during strong authentication request.",
}
APP_IDS = {name: app_id for name, _, app_id in CLOUD_APPS}
APP_NUMBERS = {name: number for name, number, _ in CLOUD_APPS}


def signin(
    rng: random.Random,
    when: datetime,
    user: User,
    address: str,
    country: str,
    app: str,
    result: str = "0",
    risk: str = "none",
    agent: str | None = None,
    mfa: bool = True,
) -> Row:
    return {
        "TimeGenerated": iso(when),
        "UserPrincipalName": user.upn,
        "UserDisplayName": user.display,
        "UserId": user.object_id,
        "AppDisplayName": app,
        "AppId": APP_IDS.get(app, guid(rng)),
        "IPAddress": address,
        "Location": country,
        "ResultType": result,
        "ResultDescription": SIGNIN_RESULTS.get(result, ""),
        "ClientAppUsed": "Browser",
        "UserAgent": agent or rng.choice(BROWSER_AGENTS),
        "DeviceDetail": json.dumps({"operatingSystem": "Windows10", "browser": "Chrome 125.0.0"}),
        "RiskLevelDuringSignIn": risk,
        "RiskState": "atRisk" if risk in ("medium", "high") else "none",
        "ConditionalAccessStatus": "success" if result == "0" else "failure",
        "AuthenticationRequirement": "multiFactorAuthentication" if mfa else "singleFactorAuthentication",
        "CorrelationId": guid(rng),
    }


def initiating(image: str, pid: int | None, command_line: str | None, user: User | None, netbios: str) -> Row:
    """The InitiatingProcess* columns every device table shares (a missing user means SYSTEM)."""
    return {
        "InitiatingProcessFileName": image,
        "InitiatingProcessId": pid,
        "InitiatingProcessCommandLine": command_line or image,
        "InitiatingProcessAccountName": user.name if user else "system",
        "InitiatingProcessAccountDomain": netbios if user else "NT AUTHORITY",
    }


def device_columns(when: datetime, device: Device, action: str) -> Row:
    """The leading columns every Device* event table shares."""
    return {"Timestamp": iso(when), "DeviceId": device.device_id, "DeviceName": device.name, "ActionType": action}


def file_columns(image: FileImage) -> Row:
    """Name, full path and hashes of a file, as process and file events show them."""
    return {"FileName": image.name, "FolderPath": f"{image.folder}\\{image.name}", "SHA1": image.sha1, "SHA256": image.sha256}


def process_event(
    when: datetime,
    device: Device,
    image: FileImage,
    pid: int,
    command_line: str,
    user: User | None,
    netbios: str,
    parent: FileImage | None = None,
    parent_pid: int | None = None,
    parent_command: str | None = None,
) -> Row:
    return {
        **device_columns(when, device, "ProcessCreated"),
        **file_columns(image),
        "ProcessId": pid,
        "ProcessCommandLine": command_line,
        "AccountDomain": netbios if user else "NT AUTHORITY",
        "AccountName": user.name if user else "system",
        "AccountSid": user.sid if user else "S-1-5-18",
        **initiating(parent.name if parent else "explorer.exe", parent_pid, parent_command, user, netbios),
    }


def network_event(
    when: datetime,
    device: Device,
    remote_ip: str,
    remote_port: int,
    remote_url: str | None,
    process: FileImage,
    pid: int,
    user: User | None,
    netbios: str,
    sent_bytes: int,
    local_port: int,
    action: str = "ConnectionSuccess",
) -> Row:
    return {
        **device_columns(when, device, action),
        "RemoteIP": remote_ip,
        "RemotePort": remote_port,
        "RemoteUrl": remote_url,
        "LocalIP": device.ip,
        "LocalPort": local_port,
        "Protocol": "Tcp",
        "SentBytes": sent_bytes,
        **initiating(process.name, pid, None, user, netbios),
    }


def file_event(
    when: datetime,
    device: Device,
    action: str,
    image: FileImage,
    process: FileImage,
    pid: int,
    user: User | None,
    netbios: str,
    previous_name: str | None = None,
    command_line: str | None = None,
) -> Row:
    return {
        **device_columns(when, device, action),
        **file_columns(image),
        "FileSize": image.size,
        "PreviousFileName": previous_name,
        **initiating(process.name, pid, command_line, user, netbios),
    }


def device_logon(
    when: datetime,
    device: Device,
    user: User,
    netbios: str,
    logon_type: str,
    remote_ip: str | None = None,
    remote_device: str | None = None,
    success: bool = True,
    protocol: str = "Kerberos",
    admin: bool = False,
) -> Row:
    return {
        **device_columns(when, device, "LogonSuccess" if success else "LogonFailed"),
        "LogonType": logon_type,
        "AccountDomain": netbios,
        "AccountName": user.name,
        "AccountSid": user.sid,
        "Protocol": protocol,
        "FailureReason": None if success else "InvalidUserNameOrPassword",
        "RemoteIP": remote_ip,
        "RemoteDeviceName": remote_device,
        "IsLocalAdmin": int(admin),
    }


def identity_logon(
    when: datetime,
    user: User,
    enterprise: Enterprise,
    source_device: str | None,
    source_ip: str,
    target: Device | None,
    protocol: str = "Kerberos",
    success: bool = True,
    application: str = "Active Directory",
    logon_type: str = "Resource access",
) -> Row:
    return {
        "Timestamp": iso(when),
        "ActionType": "LogonSuccess" if success else "LogonFailed",
        "Application": application,
        "LogonType": logon_type,
        "Protocol": protocol,
        "FailureReason": None if success else "WrongPassword",
        "AccountName": user.name,
        "AccountDomain": enterprise.netbios,
        "AccountUpn": user.upn,
        "AccountSid": user.sid,
        "DeviceName": source_device,
        "IPAddress": source_ip,
        "DestinationDeviceName": target.name if target else None,
        "DestinationIPAddress": target.ip if target else None,
    }


def email(
    rng: random.Random,
    when: datetime,
    network_message_id: str,
    sender: str,
    sender_name: str,
    sender_ip: str,
    recipient: User | str,
    subject: str,
    direction: str,
    attachments: int = 0,
    urls: int = 0,
    action: str = "Delivered",
    location: str = "Inbox/folder",
    threats: str = "",
) -> Row:
    recipient_address = recipient.upn if isinstance(recipient, User) else recipient
    return {
        "Timestamp": iso(when),
        "NetworkMessageId": network_message_id,
        "InternetMessageId": f"<{guid(rng)[:18]}@{sender.split('@')[-1]}>",
        "SenderFromAddress": sender,
        "SenderDisplayName": sender_name,
        "SenderFromDomain": sender.split("@")[-1],
        "SenderIPv4": sender_ip,
        "RecipientEmailAddress": recipient_address,
        "RecipientObjectId": recipient.object_id if isinstance(recipient, User) else None,
        "Subject": subject,
        "EmailDirection": direction,
        "DeliveryAction": action,
        "DeliveryLocation": location,
        "ThreatTypes": threats,
        "AttachmentCount": attachments,
        "UrlCount": urls,
    }


def email_url(when: datetime, network_message_id: str, link: str) -> Row:
    domain = link.split("//", 1)[-1].split("/", 1)[0]
    return {"Timestamp": iso(when), "NetworkMessageId": network_message_id, "Url": link, "UrlDomain": domain, "UrlLocation": "Body"}


def attachment(when: datetime, network_message_id: str, sender: str, recipient: str, image: FileImage) -> Row:
    return {
        "Timestamp": iso(when),
        "NetworkMessageId": network_message_id,
        "SenderFromAddress": sender,
        "RecipientEmailAddress": recipient,
        "FileName": image.name,
        "FileType": image.name.rsplit(".", 1)[-1],
        "SHA256": image.sha256,
        "FileSize": image.size,
    }


def url_click(when: datetime, link: str, user: User, network_message_id: str | None, address: str, action: str = "ClickAllowed", through: bool = False) -> Row:
    return {
        "Timestamp": iso(when),
        "Url": link,
        "ActionType": action,
        "AccountUpn": user.upn,
        "Workload": "Email",
        "NetworkMessageId": network_message_id,
        "IPAddress": address,
        "IsClickedThrough": int(through),
    }


def office(
    when: datetime,
    user_id: str,
    client_ip: str,
    operation: str,
    workload: str,
    record_type: str,
    object_id: str,
    parameters: list[dict[str, str]] | None = None,
    file_name: str | None = None,
    site: str | None = None,
    agent: str | None = None,
    status: str = "Succeeded",
) -> Row:
    return {
        "TimeGenerated": iso(when),
        "RecordType": record_type,
        "Operation": operation,
        "OfficeWorkload": workload,
        "UserId": user_id,
        "ClientIP": client_ip,
        "ResultStatus": status,
        "OfficeObjectId": object_id,
        "SourceFileName": file_name,
        "Site_Url": site,
        "Parameters": json.dumps(parameters) if parameters is not None else None,
        "UserAgent": agent,
    }


def cloud_event(
    when: datetime,
    action: str,
    application: str,
    account_id: str,
    account_name: str,
    address: str,
    country: str,
    activity: str,
    object_name: str,
    raw: dict[str, Any],
    agent: str,
    city: str = "",
) -> Row:
    return {
        "Timestamp": iso(when),
        "ActionType": action,
        "Application": application,
        "ApplicationId": APP_NUMBERS.get(application, 0),
        "AccountObjectId": account_id,
        "AccountDisplayName": account_name,
        "IPAddress": address,
        "CountryCode": country,
        "City": city,
        "UserAgent": agent,
        "ActivityType": activity,
        "ObjectName": object_name,
        "RawEventData": json.dumps(raw, sort_keys=True),
    }


def audit(rng: random.Random, when: datetime, operation: str, category: str, initiated_by: dict[str, Any], targets: list[dict[str, Any]], details: list[dict[str, str]] | None = None) -> Row:
    return {
        "TimeGenerated": iso(when),
        "OperationName": operation,
        "Category": category,
        "Result": "success",
        "InitiatedBy": json.dumps(initiated_by, sort_keys=True),
        "TargetResources": json.dumps(targets, sort_keys=True),
        "AdditionalDetails": json.dumps(details or []),
        "CorrelationId": guid(rng),
    }
