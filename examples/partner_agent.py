#!/usr/bin/env python3
"""A partner agent: runs a provider's work items of Segment Exchange at the provider's site.

Providers whose processing runs at their own site (work location "partner") take their work
items from the exchange with this agent. It talks to the exchange only through the public
work API, with an API key of the provider's organization (write scope):

    POST /api/v1/work/claim            the next item and a claim token (204: nothing waiting)
    GET  <download_url>                the segment (zstd when the claim says `compressed`),
                                       with the header X-Claim-Token
    POST <result_url>                  multipart: file, claim_token, kept (JSON positions)
    POST <fail_url>                    {claim_token, reason}: give the item back

and runs the processing services with the project's open packet engine
(`segmentation.capture`, `segmentation.processing`), imported from this repository. It never
touches the exchange's database or settings.

    python examples/partner_agent.py --url http://127.0.0.1:8000 --key sx_... \\
        [--once] [--poll SECONDS] [--max-items N] [--fail-first]

Each item: claim → download (and decompress) → check its SHA-256 → run the steps → write the
result in the segment's format, noting the positions of the packets kept → upload it
(compressed when the claim says so). One log line per item. A result or give-back that fails
on the network is retried; a retried result the exchange already has (409 work_item_done)
counts as delivered.

With `--answer-price MINOR` it also answers the service requests sent to the provider: each
round it lists the open ones (`GET /api/v1/service-requests/?role=received&status=open`), and
for each it has no valid answer to, it offers every one of its routing paths (`GET
/api/v1/routing-paths/`) at `--answer-share` of the path's capacity, at that price per GB in
the request's currency, valid for `--answer-valid` seconds (`POST
/api/v1/service-requests/{id}/availability/`).

    python examples/partner_agent.py --url ... --key ... --answer-price 80 [--answer-share 0.5]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import shutil
import signal
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parent.parent
if str(REPOSITORY) not in sys.path:
    sys.path.insert(0, str(REPOSITORY))

from segmentation.capture import CaptureError, capture_open, capture_writer  # noqa: E402
from segmentation.processing import (  # noqa: E402
    ProcessingError,
    compress_file,
    compression_level,
    decompress_file,
    pipeline_build,
)

logger = logging.getLogger("partner_agent")

USER_AGENT = "segment-exchange-partner-agent/1"
CLAIM_PATH = "/api/v1/work/claim"
CHUNK = 1 << 20
# Deliveries (results, give-backs) are retried this often on network errors and 5xx answers.
DELIVERY_ATTEMPTS = 5
# HTTP statuses after which this key cannot work at all: stop instead of polling on.
FATAL_STATUSES = (401, 403)


class ExchangeError(Exception):
    """The exchange refused a request (a problem with a stable code) or could not be reached
    (`status` None)."""

    def __init__(self, status: int | None, code: str, detail: str):
        super().__init__(f"HTTP {status} {code}: {detail}" if status else f"{code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail

    @property
    def retryable(self) -> bool:
        return self.status is None or self.status >= 500 or self.status == 429


class ItemFailed(Exception):
    """This agent cannot process the item; the message is the reason it gives back."""


def _problem(error: urllib.error.HTTPError) -> ExchangeError:
    body = error.read()
    try:
        problem = json.loads(body)
        return ExchangeError(error.code, problem.get("code", "error"), problem.get("detail", ""))
    except (ValueError, AttributeError):
        text = body.decode("utf-8", "replace").strip().splitlines()
        return ExchangeError(error.code, "http_error", text[0][:200] if text else error.reason)


class Exchange:
    """The exchange's work API, with one provider's API key."""

    def __init__(self, url: str, key: str, *, timeout: float = 60.0):
        self.url = url.rstrip("/")
        self.key = key
        self.timeout = timeout

    def _open(self, method: str, url: str, *, body=None, headers: dict | None = None):
        request = urllib.request.Request(  # noqa: S310 - the exchange's own http(s) URLs
            url,
            data=body,
            method=method,
            headers={
                "Authorization": f"Bearer {self.key}",
                "User-Agent": USER_AGENT,
                "Accept": "application/json",
                **(headers or {}),
            },
        )
        try:
            return urllib.request.urlopen(request, timeout=self.timeout)  # noqa: S310
        except urllib.error.HTTPError as error:
            raise _problem(error) from None
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise ExchangeError(None, "unreachable", f"{url}: {reason}") from None

    def claim(self) -> dict | None:
        """The next work item with its claim, or None when nothing is waiting."""
        with self._open("POST", self.url + CLAIM_PATH, body=b"") as response:
            if response.status == 204:
                return None
            return json.load(response)

    def download(self, item: dict, path: Path) -> None:
        headers = {"X-Claim-Token": item["claim_token"], "Accept": "*/*"}
        with self._open("GET", item["download_url"], headers=headers) as response:
            try:
                with open(path, "wb") as file:
                    shutil.copyfileobj(response, file, CHUNK)
            except OSError as error:  # the connection broke off mid-way
                raise ExchangeError(None, "unreachable", f"download cut off: {error}") from None

    def result(self, item: dict, path: Path, kept: Path | None) -> dict:
        parts = [("claim_token", item["claim_token"], None), ("file", path, "result")]
        if kept is not None:
            parts.append(("kept", kept, "kept.json"))
        body, length, content_type = _multipart(parts)
        headers = {"Content-Type": content_type, "Content-Length": str(length)}
        with self._open("POST", item["result_url"], body=body, headers=headers) as response:
            return json.load(response)

    def fail(self, item: dict, reason: str) -> dict:
        body = json.dumps({"claim_token": item["claim_token"], "reason": reason[:2000]}).encode()
        headers = {"Content-Type": "application/json"}
        with self._open("POST", item["fail_url"], body=body, headers=headers) as response:
            return json.load(response)


class Answering:
    """Answers the open service requests sent to the provider with its routing paths."""

    def __init__(self, exchange: Exchange, *, price: int, share: float, valid: float):
        self.exchange = exchange
        self.price = price
        self.share = share
        self.valid = valid

    def _get(self, path: str) -> dict | list:
        with self.exchange._open("GET", self.exchange.url + path) as response:
            return json.load(response)

    def _pages(self, path: str) -> Iterator[dict]:
        page = self._get(path)
        while True:
            yield from page["results"]
            if not page.get("next"):
                return
            with self.exchange._open("GET", page["next"]) as response:
                page = json.load(response)

    def run(self) -> int:
        """Answer every open request without a valid answer of ours; returns how many."""
        paths = list(self._pages("/api/v1/routing-paths/"))
        if not paths:
            logger.warning("No routing paths to offer: add them in the console.")
            return 0
        answered = 0
        for request in self._pages("/api/v1/service-requests/?role=received&status=open"):
            if (request.get("yours") or {}).get("valid"):
                continue
            valid_until = datetime.now(UTC) + timedelta(seconds=self.valid)
            body = {
                "paths": [
                    {
                        "path": path["id"],
                        "bandwidth_mbps": max(1, int(path["capacity_mbps"] * self.share)),
                    }
                    for path in paths
                ],
                "price_per_gb_minor": self.price,
                "currency": request["currency"],
                "valid_until": valid_until.isoformat(),
            }
            url = request["links"]["availability"]
            try:
                with self.exchange._open(
                    "POST",
                    url,
                    body=json.dumps(body).encode(),
                    headers={
                        "Content-Type": "application/json",
                        "Idempotency-Key": f"answer-{request['id']}-{int(valid_until.timestamp())}",
                    },
                ) as response:
                    message = json.load(response)
            except ExchangeError as error:
                logger.warning("request %s: not answered: %s", request["id"], error)
                continue
            answered += 1
            logger.info(
                "request %s: answered (message %s, %d paths)",
                request["id"],
                message["id"],
                len(body["paths"]),
            )
        return answered


def _multipart(parts: list[tuple[str, str | Path, str | None]]) -> tuple[Iterator, int, str]:
    """A multipart/form-data body streamed from files: (chunks, length, content type).

    Each part is (name, text or file path, file name or None for a plain field)."""
    boundary = uuid.uuid4().hex
    pieces: list[bytes | Path] = []
    for name, value, filename in parts:
        if filename is None:
            head = f'Content-Disposition: form-data; name="{name}"\r\n\r\n'
            pieces += [f"--{boundary}\r\n{head}".encode(), str(value).encode(), b"\r\n"]
        else:
            head = (
                f'Content-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                "Content-Type: application/octet-stream\r\n\r\n"
            )
            pieces += [f"--{boundary}\r\n{head}".encode(), Path(value), b"\r\n"]
    pieces.append(f"--{boundary}--\r\n".encode())
    length = sum(p.stat().st_size if isinstance(p, Path) else len(p) for p in pieces)

    def chunks():
        for piece in pieces:
            if isinstance(piece, Path):
                with open(piece, "rb") as file:
                    while chunk := file.read(CHUNK):
                        yield chunk
            else:
                yield piece

    return chunks(), length, f"multipart/form-data; boundary={boundary}"


def _delivered(deliver, what: str):
    """Run a delivery (result or give-back), retrying on the network and 5xx answers."""
    for attempt in range(1, DELIVERY_ATTEMPTS + 1):
        try:
            return deliver()
        except ExchangeError as error:
            if not error.retryable or attempt == DELIVERY_ATTEMPTS:
                raise
            pause = 2 ** (attempt - 1)
            logger.warning("%s: %s; trying again in %s s", what, error, pause)
            time.sleep(pause)
    raise AssertionError("unreachable")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def item_process(exchange: Exchange, item: dict, folder: Path) -> tuple[Path, Path | None, int]:
    """Download and process one claimed item in `folder`.

    Returns (the file to upload, the kept positions' JSON file or None when all packets
    were kept, packets in the result)."""
    steps = item["steps"]
    downloaded = folder / "download"
    segment = folder / f"segment.{item.get('format') or 'pcap'}"
    exchange.download(item, downloaded)
    if item["compressed"]:
        try:
            decompress_file(downloaded, segment)
        except ProcessingError as error:
            raise ItemFailed(f"the download is not valid zstd: {error}") from None
    else:
        downloaded.replace(segment)
    if _sha256(segment) != item["sha256"]:
        raise ItemFailed("the downloaded segment's SHA-256 does not match the claim's")

    anonymizes = any(step.get("service") == "anonymize-ip" for step in steps)
    if anonymizes and not item.get("anonymize_key"):
        raise ItemFailed("the pipeline anonymizes IP addresses but the claim carries no key")
    key = bytes.fromhex(item["anonymize_key"]) if anonymizes else b""
    result = folder / f"result{segment.suffix}"
    kept: list[int] = []
    try:
        run = pipeline_build(steps, recipient_key=key)
        with capture_open(segment) as reader, capture_writer(result, like=reader) as writer:
            for packet in run(reader):
                writer.write(packet)
                kept.append(packet.index)  # its position in the segment
    except (CaptureError, ProcessingError) as error:
        raise ItemFailed(f"processing failed: {error}") from None

    upload = result
    if item["compressed"]:
        upload = folder / f"{result.name}.zst"
        compress_file(result, upload, item.get("compression_level") or compression_level(steps))
    kept_file = None
    if len(kept) != item["packets"]:  # positions only when some were dropped
        kept_file = folder / "kept.json"
        kept_file.write_text(json.dumps(kept))
    return upload, kept_file, len(kept)


def item_run(exchange: Exchange, item: dict) -> bool:
    """Process a claimed item and deliver its result (or give it back); True if delivered."""
    started = time.monotonic()
    label = f"item {item['id']} (job {item['job']}, {item['kind']} {item['number']})"
    with tempfile.TemporaryDirectory(prefix="sx-partner-agent-") as folder:
        try:
            upload, kept, packets = item_process(exchange, item, Path(folder))
        except ItemFailed as error:
            _give_back(exchange, item, str(error), label)
            return False
        except ExchangeError as error:
            if error.code == "claim_lost":
                logger.warning("%s: claim lost before the download: %s", label, error)
            else:
                _give_back(exchange, item, f"the download failed: {error}", label)
            return False
        except BaseException:
            # stopped (SIGTERM, Ctrl+C) or broken mid-way: let the next claim have it now
            _give_back(exchange, item, "the partner agent stopped", label)
            raise
        try:
            _delivered(lambda: exchange.result(item, upload, kept), f"{label} result")
        except ExchangeError as error:
            if error.code == "work_item_done":  # a retry of a result that was accepted
                logger.info("%s: the exchange already has the result", label)
                return True
            if error.code == "claim_lost":
                logger.warning("%s: claim lost before the result arrived: %s", label, error)
                return False
            _give_back(exchange, item, f"the exchange refused the result: {error}", label)
            return False
    logger.info(
        "%s: %s of %s packets kept, %s bytes in, %.2f s%s",
        label,
        packets,
        item["packets"],
        item["bytes"],
        time.monotonic() - started,
        ", compressed" if item["compressed"] else "",
    )
    return True


def _give_back(exchange: Exchange, item: dict, reason: str, label: str) -> None:
    try:
        _delivered(lambda: exchange.fail(item, reason), f"{label} give-back")
        logger.warning("%s: given back: %s", label, reason)
    except ExchangeError as error:
        logger.warning("%s: could not give it back (%s); its claim will run out", label, error)


def agent_run(
    exchange: Exchange,
    *,
    once: bool,
    poll: float,
    max_items: int,
    fail_first: bool,
    answering: Answering | None = None,
):
    """Claim and process items (and answer service requests) until told to stop; returns
    the exit status."""
    delivered = 0
    give_back_next = fail_first
    while True:
        if answering is not None:
            try:
                answering.run()
            except ExchangeError as error:
                if error.status in FATAL_STATUSES:
                    logger.error("The exchange refuses this key: %s", error)
                    return 2
                logger.warning("Answering failed: %s", error)
        try:
            item = exchange.claim()
        except ExchangeError as error:
            if error.status in FATAL_STATUSES:
                logger.error("The exchange refuses this key: %s", error)
                return 2
            logger.warning("Claim failed: %s", error)
            if once:
                return 1
            time.sleep(poll)
            continue
        if item is None:
            if once:
                logger.info("Nothing is waiting.")
                return 0
            time.sleep(poll)
            continue
        if give_back_next:
            give_back_next = False
            label = f"item {item['id']} (job {item['job']}, {item['kind']} {item['number']})"
            _give_back(exchange, item, "given back on purpose (--fail-first)", label)
            continue
        if item_run(exchange, item):
            delivered += 1
        if once or (max_items and delivered >= max_items):
            return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Process a provider's Segment Exchange work items at the provider's site."
    )
    parser.add_argument("--url", required=True, help="The exchange, e.g. http://127.0.0.1:8000")
    parser.add_argument("--key", required=True, help="An API key of the provider (write scope).")
    parser.add_argument("--once", action="store_true", help="Process one item, then stop.")
    parser.add_argument(
        "--poll", type=float, default=5.0, help="Seconds between claims while nothing waits."
    )
    parser.add_argument(
        "--max-items", type=int, default=0, help="Stop after delivering this many results."
    )
    parser.add_argument(
        "--fail-first",
        action="store_true",
        help="Give the first claimed item back (to see it claimed again; for tests).",
    )
    parser.add_argument(
        "--answer-price",
        type=int,
        default=None,
        help="Answer open service requests, at this price per GB (minor units).",
    )
    parser.add_argument(
        "--answer-share",
        type=float,
        default=1.0,
        help="The share of each path's capacity offered as available (0 to 1).",
    )
    parser.add_argument(
        "--answer-valid", type=float, default=600.0, help="Seconds an answer holds."
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s partner-agent %(message)s", stream=sys.stdout
    )
    # SIGTERM stops like Ctrl+C: the item in hand is given back first
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    exchange = Exchange(args.url, args.key)
    answering = None
    if args.answer_price is not None:
        answering = Answering(
            exchange, price=args.answer_price, share=args.answer_share, valid=args.answer_valid
        )
    try:
        return agent_run(
            exchange,
            once=args.once,
            poll=args.poll,
            max_items=args.max_items,
            fail_first=args.fail_first,
            answering=answering,
        )
    except KeyboardInterrupt:
        logger.info("Stopped.")
        return 0


if __name__ == "__main__":
    sys.exit(main())
