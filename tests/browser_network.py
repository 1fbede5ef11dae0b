"""Which requests of a browser page leave the machine: the offline check of the app's browser test.

A request counts when it goes over the network — http(s) or ws(s) — to a host other than the loopback. The
browser's own schemes (``chrome:``, ``chrome-untrusted:`` — Chromium 150 loads its new-tab page's
``chrome-untrusted://new-tab-page/one-google-bar`` on start — ``chrome-extension:``, ``devtools:``, ``about:``,
``data:``, ``blob:``) never reach the network, whatever the Chromium version does with them.
"""
import ipaddress
import json
from typing import Iterable, List
from urllib.parse import urlsplit

NETWORK_SCHEMES = ("http", "https", "ws", "wss")
REQUEST_EVENTS = ("Network.requestWillBeSent", "Network.webSocketCreated")  # DevTools events naming a request


def leaves_the_machine(url: str) -> bool:
    """True for an http(s)/ws(s) URL whose host is not the loopback (127.0.0.0/8, ::1, localhost)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:  # an unparsable URL: count it, a test should look at it
        return True
    if parts.scheme.lower() not in NETWORK_SCHEMES:
        return False
    if not host:
        return True
    if host == "localhost" or host.endswith(".localhost"):  # resolved to the loopback by the browser itself
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: outside (127.0.0.1.example.com is too)
        return True


def requested_urls(performance_log: Iterable[dict]) -> List[str]:
    """URLs of the requests in chromedriver's performance log (``driver.get_log("performance")`` entries)."""
    urls = []
    for entry in performance_log:
        message = json.loads(entry["message"])["message"]
        if message.get("method") in REQUEST_EVENTS:
            params = message.get("params", {})
            urls.append(params["request"]["url"] if "request" in params else params.get("url", ""))
    return urls


def outside_requests(performance_log: Iterable[dict]) -> List[str]:
    """The URLs of the log's requests that leave the machine (:func:`leaves_the_machine`)."""
    return [url for url in requested_urls(performance_log) if leaves_the_machine(url)]
