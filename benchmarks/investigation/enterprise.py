"""A seeded synthetic enterprise: the people, machines, networks and apps that logs talk about."""

from __future__ import annotations

import hashlib
import random
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, UTC

FIRST_NAMES = (
    "Ada", "Alan", "Amal", "Ana", "Ben", "Bruno", "Carla", "Chen", "Dana", "David", "Elena", "Emeka", "Eva",
    "Farah", "Felix", "Grace", "Hana", "Hugo", "Ines", "Ivan", "Jade", "Jonas", "Kai", "Kofi", "Lara", "Leo",
    "Lina", "Luca", "Maya", "Mei", "Nadia", "Nico", "Noor", "Omar", "Pablo", "Priya", "Quinn", "Rafael",
    "Rosa", "Sami", "Sara", "Sofia", "Tariq", "Theo", "Uma", "Vera", "Wei", "Yara", "Yusuf", "Zoe",
)
LAST_NAMES = (
    "Abbott", "Alvarez", "Bauer", "Becker", "Chandra", "Costa", "Dubois", "Eriksen", "Fischer", "Garcia",
    "Haddad", "Hansen", "Ibrahim", "Ito", "Jensen", "Kaur", "Keller", "Kowalski", "Larsen", "Lopez",
    "Moreau", "Muller", "Nakamura", "Novak", "Okafor", "Olsen", "Park", "Patel", "Quint", "Rossi", "Sato",
    "Schmidt", "Silva", "Tanaka", "Torres", "Ueda", "Vargas", "Weber", "Wong", "Yamada", "Zhang", "Ziegler",
)
DEPARTMENTS = (
    ("Finance", ("Accountant", "Financial Analyst", "Controller")),
    ("Engineering", ("Software Engineer", "Site Reliability Engineer", "Engineering Manager")),
    ("Sales", ("Account Executive", "Sales Manager", "Sales Engineer")),
    ("HR", ("HR Partner", "Recruiter")),
    ("IT", ("IT Administrator", "Helpdesk Technician", "Security Analyst")),
    ("Legal", ("Counsel", "Paralegal")),
    ("Marketing", ("Marketing Manager", "Content Writer")),
)
ORG_NAMES = ("contoso", "fabrikam", "northwind", "tailspin", "woodgrove", "adatum", "litware", "proseware", "wingtip")
COUNTRIES = ("US", "GB", "DE", "FR", "NL", "SE", "ES", "IT", "CA", "JP")
CLOUD_APPS = (
    ("Office 365 Exchange Online", 20893, "00000002-0000-0ff1-ce00-000000000000"),
    ("Office 365 SharePoint Online", 20892, "00000003-0000-0ff1-ce00-000000000000"),
    ("Microsoft Teams", 28375, "1fec8e78-bce4-4aaf-ab1b-5451cc387264"),
    ("Microsoft Azure Portal", 12260, "c44b4083-3bb0-49c1-b47d-974e53cbdf3c"),
    ("Microsoft OneDrive for Business", 15600, "ab9b8c07-8f02-4f72-87fa-80105867a763"),
    ("Salesforce", 11114, "b8c6c1b2-0c0f-4c2b-9a4e-7f6a5c2e8d11"),
    ("Workday", 11221, "6c6d7a0e-5b1a-4f6e-8d2c-3a9f0e1b2c44"),
)
BENIGN_SITES = (
    "login.microsoftonline.com", "outlook.office365.com", "teams.microsoft.com", "www.bing.com", "github.com",
    "docs.python.org", "update.microsoft.com", "cdn.office.net", "www.linkedin.com", "news.ycombinator.com",
    "stackoverflow.com", "www.wikipedia.org", "slack.com", "zoom.us", "www.salesforce.com", "fonts.gstatic.com",
)
PARTNER_DOMAINS = ("globex-supply.com", "initech-consulting.com", "umbrella-logistics.net", "stark-partners.io")
NEWSLETTER_SENDERS = ("news@industryweekly.com", "updates@cloudvendor.io", "events@techsummit.org")
BAD_WORDS = (
    "secure", "verify", "account", "portal", "docs", "share", "login", "update", "office", "cloud", "auth",
    "invoice", "payroll", "files", "sync", "mail", "token", "access",
)
BAD_TLDS = ("xyz", "top", "info", "online", "site", "click", "live", "co")
PUBLIC_FIRST_OCTETS = tuple(n for n in range(23, 223) if n not in (100, 127, 169, 172, 192, 198, 203))


@dataclass(frozen=True)
class User:
    name: str  # sAMAccountName
    first: str
    last: str
    upn: str
    sid: str
    object_id: str
    department: str
    title: str
    country: str
    home_ip: str

    @property
    def display(self) -> str:
        return f"{self.first} {self.last}"


@dataclass(frozen=True)
class Device:
    name: str
    device_id: str
    aad_device_id: str
    os: str
    kind: str  # Workstation or Server
    ip: str
    owner: User | None = None


@dataclass(frozen=True)
class FileImage:
    """A program or document as it appears in file and process logs."""

    name: str
    folder: str
    sha1: str
    sha256: str
    size: int


@dataclass
class Enterprise:
    seed: int
    org: str
    domain: str
    netbios: str
    tenant_id: str
    start: datetime
    days: int
    users: list[User]
    workstations: list[Device]
    servers: list[Device]
    egress_ips: list[str]
    programs: dict[str, FileImage]
    used_ips: set[str] = field(default_factory=set)
    used_names: set[str] = field(default_factory=set)

    @property
    def devices(self) -> list[Device]:
        return self.workstations + self.servers

    def workstation_of(self, user: User) -> Device:
        return next(d for d in self.workstations if d.owner == user)

    def domain_controller(self) -> Device:
        return self.servers[0]


def guid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def hex_digest(rng: random.Random, chars: int) -> str:
    return f"{rng.getrandbits(chars * 4):0{chars}x}"


def file_image(name: str, folder: str, salt: str, size: int) -> FileImage:
    """Hashes derive from the name and a salt, so the same program has the same hash everywhere."""
    material = f"{salt}:{folder}\\{name}".encode()
    return FileImage(name, folder, hashlib.sha1(material).hexdigest(), hashlib.sha256(material).hexdigest(), size)


def public_ip(rng: random.Random, taken: set[str]) -> str:
    while True:
        ip = f"{rng.choice(PUBLIC_FIRST_OCTETS)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
        if ip not in taken:
            taken.add(ip)
            return ip


def bad_domain(rng: random.Random, taken: set[str]) -> str:
    """A look-alike attacker domain that is not one the enterprise already uses."""
    while True:
        name = f"{rng.choice(BAD_WORDS)}-{rng.choice(BAD_WORDS)}{rng.randint(2, 99)}.{rng.choice(BAD_TLDS)}"
        if name not in taken:
            taken.add(name)
            return name


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


PROGRAM_SPECS = (
    ("explorer.exe", "C:\\Windows", 4_800_000),
    ("svchost.exe", "C:\\Windows\\System32", 52_000),
    ("chrome.exe", "C:\\Program Files\\Google\\Chrome\\Application", 2_900_000),
    ("msedge.exe", "C:\\Program Files (x86)\\Microsoft\\Edge\\Application", 3_400_000),
    ("outlook.exe", "C:\\Program Files\\Microsoft Office\\root\\Office16", 41_000_000),
    ("winword.exe", "C:\\Program Files\\Microsoft Office\\root\\Office16", 2_100_000),
    ("excel.exe", "C:\\Program Files\\Microsoft Office\\root\\Office16", 65_000_000),
    ("ms-teams.exe", "C:\\Program Files\\WindowsApps\\MSTeams", 1_200_000),
    ("onedrive.exe", "C:\\Program Files\\Microsoft OneDrive", 3_100_000),
    ("powershell.exe", "C:\\Windows\\System32\\WindowsPowerShell\\v1.0", 450_000),
    ("cmd.exe", "C:\\Windows\\System32", 289_000),
    ("git.exe", "C:\\Program Files\\Git\\cmd", 46_000),
    ("python.exe", "C:\\Program Files\\Python311", 103_000),
    ("code.exe", "C:\\Program Files\\Microsoft VS Code", 150_000_000),
    ("notepad.exe", "C:\\Windows\\System32", 360_000),
    ("taskmgr.exe", "C:\\Windows\\System32", 1_500_000),
    ("sqlservr.exe", "C:\\Program Files\\Microsoft SQL Server\\MSSQL\\Binn", 460_000),
    ("w3wp.exe", "C:\\Windows\\System32\\inetsrv", 24_000),
    ("MsMpEng.exe", "C:\\ProgramData\\Microsoft\\Windows Defender\\Platform", 130_000),
    ("backup-agent.exe", "C:\\Program Files\\Veeam\\Backup", 8_100_000),
    ("rundll32.exe", "C:\\Windows\\System32", 71_000),
    ("schtasks.exe", "C:\\Windows\\System32", 235_000),
    ("vssadmin.exe", "C:\\Windows\\System32", 134_000),
    ("wmic.exe", "C:\\Windows\\System32\\wbem", 571_000),
    ("7z.exe", "C:\\Program Files\\7-Zip", 545_000),
    ("psexec.exe", "C:\\Tools\\Sysinternals", 716_000),
    ("psexesvc.exe", "C:\\Windows", 197_000),
    ("curl.exe", "C:\\Windows\\System32", 560_000),
    ("certutil.exe", "C:\\Windows\\System32", 1_600_000),
    ("net.exe", "C:\\Windows\\System32", 58_000),
    ("whoami.exe", "C:\\Windows\\System32", 74_000),
    ("rclone.exe", "C:\\ProgramData\\sync", 47_000_000),
    ("wbadmin.exe", "C:\\Windows\\System32", 1_100_000),
)


def build_enterprise(seed: int, users: int, days: int, start: datetime | None = None) -> Enterprise:
    """The organisation every log row refers to; the same seed always gives the same people."""
    rng = random.Random(f"enterprise:{seed}")
    org = rng.choice(ORG_NAMES)
    domain = f"{org}.com"
    netbios = org.upper()[:10]
    start = start or datetime(2024, 6, 3, tzinfo=UTC)
    sid_base = f"S-1-5-21-{rng.randint(10**9, 4 * 10**9)}-{rng.randint(10**9, 4 * 10**9)}-{rng.randint(10**8, 10**9)}"
    taken_ips: set[str] = set()
    taken_names: set[str] = set()
    people: list[User] = []
    for index in range(users):
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        base = (first[0] + last).lower()
        name = base
        suffix = 2
        while name in taken_names:
            name, suffix = f"{base}{suffix}", suffix + 1
        taken_names.add(name)
        department, titles = rng.choice(DEPARTMENTS)
        people.append(
            User(
                name=name,
                first=first,
                last=last,
                upn=f"{name}@{domain}",
                sid=f"{sid_base}-{1104 + index}",
                object_id=guid(rng),
                department=department,
                title=rng.choice(titles),
                country=rng.choice(COUNTRIES[:4]),
                home_ip=public_ip(rng, taken_ips),
            )
        )
    workstations = [
        Device(
            name=f"{org[:3]}-{rng.choice(('lt', 'ws'))}-{index + 101:04d}",
            device_id=hex_digest(rng, 40),
            aad_device_id=guid(rng),
            os=rng.choice(("Windows11", "Windows11", "Windows10")),
            kind="Workstation",
            ip=f"10.{1 + index // 250}.{rng.randint(0, 31)}.{index % 250 + 2}",
            owner=user,
        )
        for index, user in enumerate(people)
    ]
    server_roles = ("dc01", "dc02", "fs01", "fs02", "sql01", "web01", "app01", "backup01", "jump01")
    servers = [
        Device(
            name=f"{org[:3]}-{role}",
            device_id=hex_digest(rng, 40),
            aad_device_id=guid(rng),
            os="WindowsServer2022",
            kind="Server",
            ip=f"10.0.0.{10 + index}",
        )
        for index, role in enumerate(server_roles)
    ]
    egress = [public_ip(rng, taken_ips) for _ in range(3)]
    salt = f"programs:{seed}"
    programs = {name: file_image(name, folder, salt, size) for name, folder, size in PROGRAM_SPECS}
    return Enterprise(
        seed=seed,
        org=org,
        domain=domain,
        netbios=netbios,
        tenant_id=guid(rng),
        start=start,
        days=days,
        users=people,
        workstations=workstations,
        servers=servers,
        egress_ips=egress,
        programs=programs,
        used_ips=taken_ips,
        used_names=taken_names,
    )


def working_time(rng: random.Random, day: datetime, early: int = 7, late: int = 19) -> datetime:
    """A moment within working hours of a day (seconds and microseconds included)."""
    return day + timedelta(hours=rng.randint(early, late - 1), minutes=rng.randint(0, 59), seconds=rng.randint(0, 59), microseconds=rng.randint(0, 999_999))
