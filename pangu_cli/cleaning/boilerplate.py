"""Line-level boilerplate rules, applied before document-level filters.

A web page saved as text carries its frame: menus, breadcrumbs, share buttons,
cookie and licence banners, "related articles" lists and SEO spam. These rules drop
such lines one at a time, so an article survives with its frame removed instead of
the whole page being judged (and often rejected) by the frame's statistics.
"""

from __future__ import annotations

import re

# Whole-line matches: short lines that are only a UI label.
_UI_LINE = re.compile(
    r"^(?:home|menu|search|skip to (?:main )?content|back to top|share|tweet|print|email|"
    r"log ?in|sign ?in|sign ?up|register|subscribe|next|previous|prev|more|read more|"
    r"continue reading|advertisement|sponsored|related(?: articles| posts| stories)?|"
    r"you may also like|recommended(?: for you)?|trending(?: now)?|popular posts|tags?:.*|"
    r"categories|archives|comments?|leave a (?:comment|reply)|share this(?: article| post)?:?|"
    r"follow us(?: on .*)?|首页|返回首页|上一篇.*|下一篇.*|相关文章|相关阅读|热门推荐|"
    r"猜你喜欢|分享到.*|点击查看.*|扫码关注.*|返回顶部)$",
    re.I,
)
# Substrings that mark a banner line wherever they occur.
_BANNER = re.compile(
    r"(?:we use cookies|uses cookies|use of cookies|accept (?:all )?cookies|"
    r"cookie (?:policy|settings)|privacy policy|terms of (?:use|service)|all rights reserved|"
    r"©\s*\d{4}|copyright\s*(?:©\s*)?\d{4}|"
    r"by continuing to (?:browse|use)|sign up for our newsletter|subscribe to our newsletter|"
    r"this (?:article|page|work|content) is licensed under|creative commons attribution|"
    r"版权所有|免责声明|本站所有|未经授权|转载请注明)",
)
# SEO spam vocabulary; a line with two or more hits is spam.
_SPAM = re.compile(
    r"\b(?:buy now|click here|order now|best price|cheap|discount|free shipping|limited time|"
    r"casino|viagra|cialis|payday loans?|crypto signals|earn \$?\d+|make money|work from home|"
    r"100% free|act now|risk[- ]free|lowest prices?|best deals?|replica|weight loss|"
    r"online pharmacy|bonus code|free trial|guaranteed)\b"
)  # both matched against lowercased text: re.I is several times slower
_NAV_SEPARATORS = re.compile(r"\s*\|\s*|\s[»›·>•]\s")  # not "/": poems use it
_URL = re.compile(r"^(?:https?://|www\.)\S+$", re.I)
_HASHTAG = re.compile(r"(?:^|\s)#\w+")


def is_boilerplate(line: str, banner: bool = True, spam: bool = True) -> bool:
    """True for a line that is page furniture, not content. `banner` / `spam` False skip
    the checks that a whole-text search already ruled out."""
    s = line.strip()
    if not s:
        return False
    if len(s) <= 60 and _UI_LINE.match(s):
        return True
    low = s.lower()
    if (banner and _BANNER.search(low)) or (s[0] in "hHwW" and _URL.match(s)):
        return True
    if spam and len(_SPAM.findall(low)) >= 2:
        return True
    if "#" in s and len(_HASHTAG.findall(s)) >= 3:
        return True
    # Navigation and breadcrumbs: several short items joined by separators.
    if any(c in s for c in "|»›·>•"):
        items = [x for x in _NAV_SEPARATORS.split(s) if x.strip()]
        if len(items) >= 3 and max(len(x.strip()) for x in items) <= 25:
            return True
    # Shouting: long all-caps lines with exclamation marks.
    if s.count("!") >= 2:
        letters = [c for c in s if c.isalpha()]
        if len(letters) >= 10 and sum(c.isupper() for c in letters) > 0.7 * len(letters):
            return True
    return False


def drop_boilerplate(text: str) -> tuple[str, int]:
    """Text without its boilerplate lines, and how many lines went."""
    low = text.lower()
    banner = _BANNER.search(low) is not None  # one pass over the text rules out most lines
    spam = len(_SPAM.findall(low)) >= 2
    lines = text.split("\n")
    kept = [line for line in lines if not is_boilerplate(line, banner, spam)]
    dropped = len(lines) - len(kept)
    if not dropped:
        return text, 0
    return re.sub(r"\n{3,}", "\n\n", "\n".join(kept)).strip(), dropped
