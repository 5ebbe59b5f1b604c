"""PII: e-mail addresses, phone numbers and IP addresses replaced by placeholders.

Placeholders rather than deletion keep the sentence readable and tell the model that
something stood there. Only public IP addresses are replaced (127.0.0.1 in a code
sample is not personal data), as in datatrove's PIIFormatter.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

_EMAIL = re.compile(r"\b[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
_IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w.])")
# International (+country ...), North-American style (555) 123-4567 / 555-123-4567, and
# Chinese mobile numbers (1[3-9] + 9 digits). Separators are required for the generic
# forms so that plain numbers in math problems are left alone.
_PHONE = re.compile(
    r"(?<![\w+])(?:"
    r"\+\d{1,3}[\s.-]?\(?\d{1,4}\)?(?:[\s.-]?\d{2,4}){2,4}"
    r"|\(\d{3}\)\s?\d{3}[\s.-]\d{4}"
    r"|\d{3}[.-]\d{3}[.-]\d{4}"
    r"|1[3-9]\d{9}"
    r")(?!\w)"
)


@dataclass
class PIIConfig:
    enabled: bool = True
    email: str = "<EMAIL>"
    phone: str = "<PHONE>"
    ip: str = "<IP>"
    skip_domains: list[str] = field(default_factory=list)


def _public_ip(match: re.Match, placeholder: str) -> str:
    try:
        address = ipaddress.ip_address(match.group(0))
    except ValueError:
        return match.group(0)  # 999.1.2.3 is a version number, not an address
    return placeholder if address.is_global else match.group(0)


def scrub(text: str, cfg: PIIConfig) -> tuple[str, int]:
    """Text with PII replaced, and the number of replacements."""
    if "@" in text:
        text, n_mail = _EMAIL.subn(cfg.email, text)
    else:
        n_mail = 0
    text, n_phone = _PHONE.subn(cfg.phone, text)
    n_ip = 0

    def ip(match: re.Match) -> str:
        nonlocal n_ip
        out = _public_ip(match, cfg.ip)
        n_ip += out != match.group(0)
        return out

    text = _IPV4.sub(ip, text)
    return text, n_mail + n_phone + n_ip
