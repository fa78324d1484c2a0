"""Secrets out of text before it reaches a message, a log, JSON or a report: the password (or token)
in a URL's user part, signature and credential parameters of presigned URLs, AWS access key ids,
GitHub tokens. One function for the controller and the devices (Python 3.6, standard library).
"""
MASK = "***"
PATTERNS = {
    "userinfo": r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^/\s:@'\"<>]*)(?::(?P<password>[^/\s@'\"<>]*))?@",
    "query": r"(?i)(?P<name>[?&](?:X-Amz-Signature|X-Amz-Credential|X-Amz-Security-Token|Signature|sig|"
             r"AWSAccessKeyId|access_token|token|password|secret)=)[^&\s\"'<>#]+",
    "tokens": r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,}|(?:AKIA|ASIA)[0-9A-Z]{16})\b",
}
_compiled = {}


def _pattern(name):
    """Compiled on first need: most text has nothing to redact, and the worker starts on every build."""
    found = _compiled.get(name)
    if found is None:
        import re

        found = _compiled[name] = re.compile(PATTERNS[name])
    return found


def _userinfo(match):
    if match.group("password") is not None:
        return "{}{}:{}@".format(match.group("scheme"), match.group("user"), MASK)
    return "{}{}@".format(match.group("scheme"), MASK)        # a user part alone is often a token


def redact(text):
    """`text` with every secret-like part replaced by ***."""
    text = str(text)
    if "@" in text and "://" in text:
        text = _pattern("userinfo").sub(_userinfo, text)
    if "=" in text and ("?" in text or "&" in text):
        text = _pattern("query").sub(lambda m: m.group("name") + MASK, text)
    if "AKIA" in text or "ASIA" in text or "gh" in text:
        text = _pattern("tokens").sub(MASK, text)
    return text


class RedactingStream(object):
    """A text stream that redacts every write (for stdout/stderr and report files)."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text):
        return self._stream.write(redact(text))

    def __getattr__(self, name):
        return getattr(self._stream, name)
