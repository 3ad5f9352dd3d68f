"""Partner webhooks on the wire: the body, the signature, the POST, and the check a receiver
makes. The only module that makes outbound HTTP calls for webhooks; it uses the standard
library alone (no Django), so a partner's receiver can import it or copy it.

Every webhook is a POST of a JSON body

    {"id": "<event id>", "type": "<event>", "created": "2026-05-01T12:00:00Z", "data": {...}}

with the headers

    Segment-Exchange-Event: <event>
    Segment-Exchange-Delivery: <event id>     (the same on every retry: use it to drop repeats)
    Segment-Exchange-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>

where the HMAC's key is the endpoint's secret (the whole string shown in the console, as UTF-8)
and its message is the timestamp, a dot and the raw body: f"{t}.".encode() + body. A receiver
checks it with `webhook_signature_verify`, over the body bytes exactly as received, and answers
2xx once it has the event; anything else (or no answer within the time-out) is retried.
"""

import hashlib
import hmac
import http.client
import ipaddress
import json
import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

SIGNATURE_HEADER = "Segment-Exchange-Signature"
EVENT_HEADER = "Segment-Exchange-Event"
DELIVERY_HEADER = "Segment-Exchange-Delivery"
USER_AGENT = "SegmentExchange-Webhooks/1"
SIGNATURE_TOLERANCE_SECONDS = 300
# Enough of an answer's body to finish reading a short reply; the rest is not our business.
_RESPONSE_READ_BYTES = 64 * 1024


@dataclass(frozen=True, kw_only=True)
class WebhookResponse:
    """What one POST came to: a status code when the receiver answered, else an error."""

    status_code: int | None
    error: str
    duration_ms: int

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def webhook_body(*, event_id: str, event: str, created: datetime, data: dict) -> bytes:
    """The JSON body of a webhook: the same bytes on every retry of a delivery."""
    created_utc = created.astimezone(UTC).replace(tzinfo=None)
    document = {
        "id": str(event_id),
        "type": event,
        "created": created_utc.isoformat(timespec="seconds") + "Z",
        "data": data,
    }
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


def _digest(secret: str, timestamp: int, body: bytes) -> str:
    message = f"{timestamp}.".encode() + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def webhook_signature(*, secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The value of the Segment-Exchange-Signature header for `body`, signed now (or at
    `timestamp`, in unix seconds)."""
    timestamp = int(time.time()) if timestamp is None else int(timestamp)
    return f"t={timestamp},v1={_digest(secret, timestamp, body)}"


def webhook_signature_verify(
    *,
    secret: str,
    header: str | None,
    body: bytes | str,
    tolerance_seconds: float = SIGNATURE_TOLERANCE_SECONDS,
    now: float | datetime | None = None,
) -> bool:
    """True when `header` (the Segment-Exchange-Signature value) signs `body` with `secret`
    and its timestamp is within `tolerance_seconds` of `now` (unix seconds or an aware
    datetime; the clock by default). An old timestamp is refused, so a captured request
    cannot be replayed later. Several v1= values may be given; one matching is enough."""
    if not header or not secret:
        return False
    if isinstance(body, str):
        body = body.encode()
    timestamp = None
    candidates = []
    for item in header.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep:
            continue
        if key == "t":
            try:
                timestamp = int(value)
            except ValueError:
                return False
        elif key == "v1":
            candidates.append(value.strip())
    if timestamp is None or not candidates:
        return False
    if now is None:
        current = time.time()
    elif isinstance(now, datetime):
        current = now.timestamp()
    else:
        current = float(now)
    if abs(current - timestamp) > tolerance_seconds:
        return False
    expected = _digest(secret, timestamp, body).encode()
    # Constant time, and every candidate compared, so timing reveals nothing of the digest.
    matched = False
    for candidate in candidates:
        matched |= hmac.compare_digest(expected, candidate.encode())
    return matched


class _RedirectRefused(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer other than 2xx: following it would turn the POST into a GET
    elsewhere (urllib's way), so the receiver's URL must be fixed instead."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


_opener = urllib.request.build_opener(_RedirectRefused)


def webhook_target_refusal(url: str) -> str | None:
    """Why the exchange must not POST to `url` when only public receivers are allowed: its
    host resolves to an address that is not public (loopback, private, link-local such as a
    cloud's metadata service, reserved); None when every address it resolves to is public.
    A provider could otherwise aim the exchange's workers at its internal network and read
    the answers' status codes in its delivery log."""
    host = urlsplit(url).hostname
    if not host:
        return f"No host in {url}"
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except (OSError, UnicodeError) as exc:
        return f"Could not resolve {host}: {exc}"
    for address in sorted(addresses):
        if not ipaddress.ip_address(address.split("%")[0]).is_global:
            return (
                f"Refused: {host} resolves to {address}, which is not a public address "
                "(receivers on private networks are for development only)"
            )
    return None


def webhook_send(
    *,
    url: str,
    secret: str,
    event: str,
    event_id: str,
    body: bytes,
    timeout: float,
    public_only: bool = False,
) -> WebhookResponse:
    """POST a signed webhook to `url` and say how it went. Never raises for what the network
    or the receiver did; waits at most `timeout` seconds for each step of the exchange. With
    `public_only`, a URL whose host resolves to a non-public address is not contacted."""
    if not url.startswith(("https://", "http://")):
        return WebhookResponse(status_code=None, error=f"Not an http(s) URL: {url}", duration_ms=0)
    if public_only:
        refusal = webhook_target_refusal(url)
        if refusal is not None:
            return WebhookResponse(status_code=None, error=refusal, duration_ms=0)
    request = urllib.request.Request(  # noqa: S310 - the scheme is checked just above
        url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            EVENT_HEADER: event,
            DELIVERY_HEADER: str(event_id),
            SIGNATURE_HEADER: webhook_signature(secret=secret, body=body),
        },
    )
    started = time.monotonic()
    status_code, error = None, ""
    try:
        with _opener.open(request, timeout=timeout) as response:
            status_code = response.status
            response.read(_RESPONSE_READ_BYTES)
    except urllib.error.HTTPError as exc:
        status_code = exc.code
        error = f"HTTP {exc.code} {exc.reason}".strip()
        if 300 <= exc.code < 400:
            error += f" (redirect to {exc.headers.get('Location', '?')} not followed)"
        exc.close()
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, TimeoutError):
            error = f"No answer within {timeout:g} s"
        else:
            error = f"Could not connect: {reason}"
    except TimeoutError:
        error = f"No answer within {timeout:g} s"
    except (http.client.HTTPException, OSError, ValueError) as exc:
        error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    duration_ms = round((time.monotonic() - started) * 1000)
    return WebhookResponse(status_code=status_code, error=error, duration_ms=duration_ms)
