"""Infer an answer's type from the data: its shape first, then the words of its question.

Question files written by others (ExCyTIn-Bench) say nothing about answer types, yet the grader
needs one to normalise an answer (a URL's scheme, a domain's trailing dot, DOMAIN\\user against
user@domain, a timestamp's time zone). Shapes that cannot be mistaken (IPs, SIDs, GUIDs, hashes,
URLs, timestamps, numbers, e-mail addresses, paths, ExCyTIn's `pid__time__command` process
keys) decide alone; a bare token is a host, an account, a file or a domain by what the question
asks for, then by its extension. Anything else is compared as text.
"""

from __future__ import annotations

import re

from benchmarks.investigation.models import AnswerType

_IPV4 = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}(?::\d{1,5})?")
_IPV6 = re.compile(r"\[?[0-9a-f]{0,4}(?::[0-9a-f]{0,4}){2,7}\]?(?::\d{1,5})?", re.I)
_SID = re.compile(r"S-\d+-\d+(?:-\d+)*", re.I)
_GUID = re.compile(r"\{?[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\}?", re.I)
_HEX = re.compile(r"[0-9a-f]+", re.I)
_URL = re.compile(r"(?:https?|hxxps?|ftp)://\S+", re.I)
LABEL = r"(?:[a-z][a-z _-]{0,30}[:=]?\s+)?"  # "Time: ", "ProcessId ", "Count = "
TIMESTAMP = re.compile(
    LABEL + r"(\d{4}-\d{2}-\d{2})(?:[ t](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?)?\s*(z|[+-]\d{2}:?\d{2})?", re.I
)
NUMBER = re.compile(LABEL + r"(-?\d{1,3}(?:,\d{3})+|-?\d+)(?:\.(\d+))?", re.I)
_EMAIL = re.compile(r"[^@\s\\/][^@\\/]*@[a-z0-9-]+(?:\.[a-z0-9-]+)+", re.I)
_PROCESS_KEY = re.compile(r"\d+__\d{4}-\d{2}-\d{2}t", re.I)  # ExCyTIn's ProcessId__CreationTime__CommandLine
_PATH = re.compile(r"(?:[a-z]:[\\/]|\\\\|/)\S*", re.I)
_COMMAND_HEAD = re.compile(r'^"?[^\s"]+\.(?:exe|com|bat|cmd|ps1|vbs|js|msi|py|sh)"?(?:\s|$)', re.I)
_ARGUMENT = re.compile(r"\s(?:/|-{1,2})[a-z?]", re.I)

# Last labels that make a dotted token a file name, or a domain.
FILE_EXTENSIONS = frozenset(
    "exe dll sys ps1 psm1 bat cmd vbs vbe js jse hta msi scr lnk txt log csv json xml ini cfg dat tmp bin iso img "
    "zip 7z rar gz tgz tar cab docm docx doc xlsm xlsx xls pptm pptx ppt pdf rtf one html htm eml msg png jpg "
    "lockbit encrypted locked enc kirbi dmp mze py sh".split()
)
_TOP_LEVEL_DOMAINS = frozenset(
    "com net org io co ovh info biz us uk de fr ru cn jp xyz top site online app dev cloud tech me tv cc ly "
    "eu ca au in br nl local corp lan".split()
)

_HOST_NAME_PHRASES = ("hostname", "host name", "device name", "name of the device", "name of the host",
                      "name of the machine", "computer name")
_HOST_WORDS = ("host", "device", "machine", "computer", "endpoint", "server", "workstation")
_ACCOUNT_WORDS = ("account", "user", "username", "logon", "identity", "who ")
_FILE_WORDS = ("file", "process", "executable", "binary", "tool", "script", "dll", "image", "payload", "program")
_DOMAIN_WORDS = ("url", "domain", "website", "web site", "site", "fqdn", "dns")
_APP_WORDS = ("application", "app id", "appid", "oauth", "client id")


def _mentions(question: str, words: tuple[str, ...]) -> bool:
    return any(word in question for word in words)


def _bare(answer: str) -> str:
    text = answer.strip()
    while len(text) >= 2 and text[0] == text[-1] and text[0] in "`'\"":
        text = text[1:-1].strip()
    return text


def _is_ip(text: str) -> bool:
    return bool(_IPV4.fullmatch(text) or (_IPV6.fullmatch(text) and text.count(":") >= 2 and _HEX.search(text)))


def _shape(text: str, question: str) -> AnswerType | None:
    """The type an unmistakable shape gives, or None."""
    if _is_ip(text):
        return "ip"
    if _SID.fullmatch(text):
        return "account_sid"
    if _GUID.fullmatch(text):
        if _mentions(question, ("device", "machine")):
            return "device_id"
        if _mentions(question, _APP_WORDS):
            return "oauth_app_id"
        if _mentions(question, ("user", "account", "object id", "objectid", "aad")):
            return "account_object_id"
        return "guid"
    if _HEX.fullmatch(text) and len(text) in (32, 40, 64, 128):
        return "sha256" if len(text) == 64 else "hash"
    if _URL.fullmatch(text):
        return "url"
    if TIMESTAMP.fullmatch(text):
        return "timestamp"
    if NUMBER.fullmatch(text):
        return "number"
    if _EMAIL.fullmatch(text):
        return "mailbox" if "mailbox" in question else "account_upn"
    if _PROCESS_KEY.match(text) or re.search(r"\bcommand[ -]?line\b|\bcommand\s*:", text, re.I):
        return "command_line"
    return None


def _token(text: str, question: str) -> AnswerType | None:
    """The type of a single token (no spaces) by the question's words, then by its extension."""
    dotted = "." in text.strip(".")
    extension = text.rstrip(".").rsplit(".", 1)[-1].casefold() if dotted else ""
    if _PATH.fullmatch(text) and ("\\" in text or text.count("/") >= 2):
        return "path"
    if dotted:
        if _mentions(question, _DOMAIN_WORDS) and extension not in FILE_EXTENSIONS:
            return "domain"
        if _mentions(question, _HOST_WORDS) and extension not in FILE_EXTENSIONS:
            return "host_name"
        if extension in FILE_EXTENSIONS or _mentions(question, _FILE_WORDS):
            return "file_name"
        if extension in _TOP_LEVEL_DOMAINS or text.count(".") >= 2:
            return "domain"
        return None
    if _mentions(question, _HOST_NAME_PHRASES):
        return "host_name"
    if _mentions(question, _ACCOUNT_WORDS):  # "the account ... on the machine" asks for the account
        return "account_name"
    if _mentions(question, _HOST_WORDS):
        return "host_name"
    return None


def infer_answer_type(answer: str, question: str = "") -> AnswerType:
    """The answer type that fits `answer` (asked by `question`); "text" when nothing more specific fits."""
    text = _bare(answer)
    asked = question.casefold()
    found = _shape(text, asked)
    if found is not None:
        return found
    words = text.split()
    if len(words) == 1:
        return _token(text, asked) or ("cloud_app" if _mentions(asked, ("cloud application",)) else "text")
    if _COMMAND_HEAD.match(text) or _ARGUMENT.search(text) or "command" in asked:
        return "command_line"
    if _mentions(asked, ("cloud application", "cloud app")):
        return "cloud_app"
    if len(words) <= 3 and _mentions(asked, _ACCOUNT_WORDS) and all(w.replace("-", "").isalnum() for w in words):
        return "account_name"  # a display name such as "Nina Park"
    return "text"
