"""Where an agent leaves its reports, signed by the device's own key (Python 3.6, standard library).

A report is the envelope {"report": "<JSON text>", "signature": base64 Ed25519 signature of that
text, "key": base64 public key}, one per device and channel, the latest replacing the one before:
reports/<project>/<channel>/<device>.json in the store. A device never holds credentials that could
read engines or other devices' reports; it gets one of:
- a directory (--report-to DIR): a file store's tree, or a folder another process ships;
- a URL (--report-url URL): an HTTP PUT of the report there, e.g. the presigned PUT URL
  `fleetbuild rollout grant` makes for exactly this device's report key (write-only, expiring).
A report that cannot be sent is said, and the install stands.
"""
import base64
import json
import os

from .devicekey import load_or_make, public_key, sign
from .fsutil import write_json_atomic


def report_key(project, channel, device):
    return "reports/{}/{}/{}.json".format(project, channel, device)


def envelope(report, seed):
    text = json.dumps(report, sort_keys=True)
    return {"report": text, "signature": base64.b64encode(sign(seed, text.encode("utf-8"))).decode("ascii"),
            "key": base64.b64encode(public_key(seed)).decode("ascii")}


class ReportSink(object):
    def __init__(self, directory=None, url=None):
        self.directory, self.url = directory, url

    def send(self, report, out):
        """Sign and deliver `report`; a line saying what went wrong, or None."""
        signed = envelope(report, load_or_make(out))
        key = report_key(report["project"], report["channel"], report["device"])
        if self.directory is not None:
            try:
                path = os.path.join(self.directory, key)
                if not os.path.isdir(os.path.dirname(path)):
                    os.makedirs(os.path.dirname(path))
                write_json_atomic(path, signed)
            except (IOError, OSError) as err:
                return "report not sent ({}: {}); the install stands".format(self.directory, err.strerror or err)
            return None
        from urllib.error import HTTPError, URLError
        from urllib.request import Request, urlopen

        body = json.dumps(signed).encode("utf-8")
        request = Request(self.url, data=body, method="PUT", headers={"Content-Type": "application/json"})
        try:
            with urlopen(request, timeout=60) as response:
                response.read()
        except HTTPError as err:
            why = "the upload grant has expired or does not cover this report" if err.code == 403 else \
                "HTTP {}".format(err.code)
            return "report not sent ({}); the install stands".format(why)
        except URLError as err:
            return "report not sent (cannot reach {}: {}); the install stands".format(_host(self.url), err.reason)
        return None


def _host(url):
    from urllib.parse import urlsplit

    return urlsplit(url).netloc or url
