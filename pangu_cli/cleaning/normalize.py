"""Normalisation and extraction, run before any filter sees the text.

Order matters: repair the Unicode first (mojibake hides everything else), strip
terminal escapes and control characters, turn HTML into text, then normalise
whitespace and drop boilerplate lines (navigation, cookie banners, "related
articles", SEO spam) so that document-level rules judge the article, not its frame.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

# ANSI / VT100 escape sequences: CSI (ESC [ ... final byte), OSC (ESC ] ... BEL/ST) and
# two-byte escapes. The bundled Chinese poems carry CSI colour codes (ESC[32m ... ESC[m).
_ANSI = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)"  # OSC
    r"|\x1b[@-Z\\-_]"  # other two-byte escapes
    r"|\x9b[0-?]*[ -/]*[@-~]"  # 8-bit CSI
)
# C0/C1 control characters except tab and newline; also BOM and zero-width noise.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufeff\u200b\u2060\ufffe]")
# Characters typical of mojibake (UTF-8 read as Latin-1/cp1252); ftfy is only worth its
# cost when one of them is present.
_MOJIBAKE_HINT = re.compile(
    "[\u00c2\u00c3\u00c5\u00e2\u00ef\u00f0][\u0080-\u00bf\u2018-\u203a\u20ac\u0152\u0153\u0160\u0161\u0178\u017d\u017e\u02c6\u02dc]"
)
_HTML_HINT = re.compile(r"<(?:!doctype|html|body|div|p|br|span|a\s|table|li|h[1-6])\b", re.I)
_SPACES = re.compile(r"[ \t\u00a0\u2000-\u200a\u202f\u205f]+")
_BLANK_RUNS = re.compile(r"\n{3,}")

_DROP_TAGS = "script, style, noscript, nav, header, footer, aside, form, iframe, svg, button"
_BLOCK_TAGS = frozenset(
    "p div br li ul ol h1 h2 h3 h4 h5 h6 tr table section article blockquote pre "
    "dd dt dl title figcaption main hr td th".split()
)


@dataclass
class NormalizeConfig:
    unicode_repair: bool = True  # ftfy on texts that look like mojibake
    nfc: bool = True
    strip_ansi: bool = True
    strip_control: bool = True
    html: str = "auto"  # auto | always | never: HTML to text
    boilerplate: bool = True  # drop boilerplate lines (text domains only)
    # domains whose whitespace and lines are left alone (indentation is meaning)
    verbatim_domains: list[str] = field(default_factory=lambda: ["code", "math"])


def repair_unicode(text: str) -> str:
    if _MOJIBAKE_HINT.search(text):
        import ftfy

        text = ftfy.fix_text(text, normalization=None)
    return text


def strip_escapes(text: str) -> str:
    """Remove ANSI escape sequences, then stray control characters (tab, newline stay)."""
    return _CONTROL.sub("", _ANSI.sub("", text))


def looks_like_html(text: str) -> bool:
    head = text[:4096]
    return len(_HTML_HINT.findall(head)) >= 2


def html_to_text(html: str) -> str:
    """Visible text of an HTML page, one line per block element; scripts, styles,
    navigation, headers and footers dropped."""
    from selectolax.lexbor import LexborHTMLParser

    tree = LexborHTMLParser(html)
    for node in tree.css(_DROP_TAGS):
        node.decompose()
    root = tree.body or tree.root
    if root is None:
        return ""
    parts: list[str] = []
    for node in root.traverse(include_text=True):
        if node.tag == "-text":
            parts.append(node.text_content or "")
        elif node.tag in _BLOCK_TAGS:
            parts.append("\n")
    return "".join(parts)


def normalize_whitespace(text: str, verbatim: bool) -> str:
    if verbatim:  # code: keep indentation, drop trailing spaces and CRs only
        lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        return "\n".join(line.rstrip() for line in lines).strip("\n") + "\n"
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = [_SPACES.sub(" ", line).strip() for line in text.split("\n")]
    return _BLANK_RUNS.sub("\n\n", "\n".join(lines)).strip()


def normalize(text: str, domain: str, cfg: NormalizeConfig) -> tuple[str, dict[str, int]]:
    """Normalised text and what was done to it ({"html": 1, "boilerplate_lines": 3, ...})."""
    from pangu_cli.cleaning.boilerplate import drop_boilerplate

    stats: dict[str, int] = {}
    if cfg.unicode_repair:
        text = repair_unicode(text)
    if cfg.strip_ansi or cfg.strip_control:
        before = len(text)
        text = strip_escapes(text) if cfg.strip_ansi else _CONTROL.sub("", text)
        stats["escape_chars"] = before - len(text)
    verbatim = domain in cfg.verbatim_domains
    if not verbatim and (cfg.html == "always" or (cfg.html == "auto" and looks_like_html(text))):
        text = html_to_text(text)
        stats["html"] = 1
    if cfg.nfc:
        text = unicodedata.normalize("NFC", text)
    text = normalize_whitespace(text, verbatim)
    if cfg.boilerplate and not verbatim:
        text, dropped = drop_boilerplate(text)
        stats["boilerplate_lines"] = dropped
    return text, stats
