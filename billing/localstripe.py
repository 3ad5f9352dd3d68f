"""localstripe (PyPI `localstripe`), the fake Stripe server that development, the demo and the
tests talk to when no Stripe key is configured: the one module that starts it, configures it and
speaks its private endpoints. The rest of the billing code only sees billing.stripe_gateway.

What localstripe 1.15 does, and how this module deals with it:

- Its own command (`localstripe --port N [--from-scratch]`) has no host option: it listens on every
  address (IPv4 and IPv6). It also pickles its whole store to the fixed `/tmp/localstripe.pickle`
  after every write and loads it at start, so every instance on the machine shares one file.
  `localstripe_serve` therefore runs localstripe's aiohttp application itself: on one address
  (loopback by default), with the store in memory only or in a file of ours.
- Webhooks: `POST /_config/webhooks/<name>` with JSON `{"url": ..., "secret": ..., "events": [...]}`
  (events optional: all). Registrations live in memory only: register again after each start.
  Each event is POSTed once, about a second after it happened, with the header
  `Stripe-Signature: t=<event.created>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`, which the
  stripe library verifies. No retries: a receiver that is down loses the event. It emits
  `payment_intent.succeeded`, `payment_intent.payment_failed`, `customer.*`, `invoice.*`, ... but
  no `setup_intent.*` and no `payment_method.*` events.
- `GET /js.stripe.com/v3/` serves a fake Stripe.js, which takes the API address from its own
  `src`. `Stripe(pk).elements().create("card")` mounts five plain text inputs (placeholders
  `number`, `exp_month`, `exp_year` (two digits: it prepends "20"), `cvc`, `postal_code`).
  `stripe.confirmCardSetup(clientSecret, {payment_method: {card, billing_details}})` POSTs
  `/v1/setup_intents/<id>/confirm` with the publishable key and the card number (see
  `localstripe_setup_intent_confirm`); when the card needs authentication it shows a modal with
  the buttons "Complete authentication" and "Fail authentication".
  `stripe.confirmCardPayment(clientSecret, ...)` always shows that modal, then POSTs
  `/v1/payment_intents/<id>/_authenticate?success=true|false` (see
  `localstripe_payment_intent_authenticate`); it ignores its second argument.
- Test cards: 4242424242424242 succeeds; 4000000000000002 (and a few others) is declined when
  attached (402 `card_declined`, also when confirmed in a SetupIntent, which then is `canceled`);
  4000000000000341 attaches but every charge is declined (402 `card_declined`; the error names
  the charge, not the PaymentIntent, which stays `requires_payment_method`);
  4000002500003155 (and 4000002760003184, ...) needs authentication every time, on or off
  session: a SetupIntent or a confirmed PaymentIntent comes back `requires_action` with
  `next_action = {"type": "use_stripe_sdk", ...}` (HTTP 200). Real Stripe differs: an off-session
  payment needing authentication fails with 402 `authentication_required`, and 3155 needs none
  off session once it was set up (4000002760003184 always does).
- A SetupIntent that succeeds does not attach its card to the customer (real Stripe does):
  stripe_gateway.setup_intent_complete attaches it.
- `Idempotency-Key` is ignored: the same request sent twice creates two PaymentIntents and
  charges twice. The charge service must not rely on it (tests/billing/test_gateway.py shows it).
- It has no disputes: `localstripe_serve` adds them (`_disputes_install`): `GET /v1/disputes/<id>`
  and two private endpoints that play the card issuer (`localstripe_dispute_open`,
  `localstripe_dispute_close`), which send `charge.dispute.created` / `charge.dispute.closed`.
- Listing PaymentIntents accepts no filter (`customer=` is refused) and lists oldest first;
  metadata is stored and returned as given.
"""

import argparse
import asyncio
import atexit
import contextlib
import datetime
import errno
import functools
import json
import logging
import os
import pickle
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8420
# The keys localstripe accepts: any secret key starting with sk_, publishable keys with pk_.
LOCALSTRIPE_SECRET_KEY = "sk_test_localstripe"
LOCALSTRIPE_PUBLISHABLE_KEY = "pk_test_localstripe"
# Signs localstripe's webhooks when STRIPE_WEBHOOK_SECRET is not set (development only: the
# gateway accepts it only while it talks to localstripe).
LOCALSTRIPE_WEBHOOK_SECRET = "whsec_localstripe_development"
WEBHOOK_NAME = "exchange"

TEST_CARD_SUCCEEDS = "4242424242424242"
TEST_CARD_DECLINED_AT_ATTACH = "4000000000000002"
TEST_CARD_DECLINED_AT_CHARGE = "4000000000000341"
TEST_CARD_REQUIRES_AUTHENTICATION = "4000002500003155"

START_SECONDS = 30
STOP_SECONDS = 5
REQUEST_TIMEOUT_SECONDS = 10
SERVING_AT = re.compile(r"^localstripe: serving at (http://\S+)$", re.MULTILINE)
PROJECT_DIR = Path(__file__).resolve().parent.parent


class LocalStripeError(Exception):
    """localstripe could not be started, or refused a request of this module."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code


class LocalStripePortTaken(LocalStripeError):
    """The address localstripe should listen on is in use."""


@dataclass
class LocalStripe:
    """A localstripe process started by `localstripe_start`."""

    url: str
    process: subprocess.Popen
    log_path: Path
    _log_is_ours: bool = field(default=False, repr=False)
    _at_exit: object = field(default=None, repr=False)


# --- Serving (in this process) ------------------------------------------------------------------


def localstripe_serve(
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    store_path: Path | None = None,
    exit_with_parent: bool = False,
    webhook: tuple[str, str] | None = None,
) -> None:
    """Serve localstripe in this process until SIGTERM or Ctrl+C.

    Listens on `host:port` only (port 0: a free one), and first prints
    "localstripe: serving at http://host:port". The store is kept in memory, and in `store_path`
    when given (loaded at start, rewritten after each change). `webhook` is (endpoint URL,
    signing secret) to register under WEBHOOK_NAME. With `exit_with_parent` it stops when the
    process that started it is gone. Raises LocalStripePortTaken if the address is in use."""
    sock = _listening_socket(host, port)

    # localstripe builds its application and store at import: import it only to serve
    from aiohttp import web
    from localstripe import resources, server, webhooks

    _store_keep_in(resources.store, store_path)
    _disputes_install(server.app, resources, webhooks)
    if webhook is not None:
        endpoint_url, secret = webhook
        webhooks.register_webhook(WEBHOOK_NAME, endpoint_url, secret, None)
    if exit_with_parent:
        server.app.on_startup.append(_exit_with_parent_watch(os.getppid()))

    # localstripe reports webhook deliveries on this logger, as its own command does
    access_log = logging.getLogger("aiohttp.access")
    access_log.setLevel(logging.INFO)
    if not access_log.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(message)s"))
        access_log.addHandler(handler)
    access_log.propagate = False

    address, bound_port = sock.getsockname()[:2]
    shown = f"[{address}]" if ":" in address else address
    print(f"localstripe: serving at http://{shown}:{bound_port}", flush=True)
    if webhook is not None:
        print(f"localstripe: sending events to {webhook[0]}", flush=True)
    web.run_app(server.app, sock=sock, print=None, access_log=access_log, handle_signals=True)


class _Exported:
    """What localstripe's Event needs of the object it reports: its exported form."""

    def __init__(self, data: dict):
        self._data = data

    def _export(self, expand=None) -> dict:
        return dict(self._data)


def _disputes_install(app, resources, webhooks) -> None:
    """localstripe has no disputes; card issuers' disputes are part of billing, so ours adds
    them, the way Stripe shows them: `GET /v1/disputes/<id>` (secret key), and two private
    endpoints that play the card issuer, each sending its event to the registered webhooks
    like localstripe's own: `POST /_config/disputes` {payment_intent, reason, amount?} opens
    one on a succeeded payment (`charge.dispute.created`, status needs_response), and
    `POST /_config/disputes/<id>/close` {status: won|lost} decides it (`charge.dispute.closed`).
    Disputes live in memory only."""
    from aiohttp import web

    disputes: dict[str, dict] = {}

    def refused(status: int, message: str):
        return web.json_response(
            {"error": {"type": "invalid_request_error", "message": message}}, status=status
        )

    def announce(kind: str, dispute: dict) -> None:
        webhooks.schedule_webhook(resources.Event(kind, _Exported(dispute)))

    async def dispute_retrieve(request):
        dispute = disputes.get(request.match_info["id"])
        if dispute is None:
            return refused(404, "No such dispute")
        return web.json_response(dispute)

    async def dispute_open(request):
        body = await request.json()
        intent = resources.store.get(f"payment_intent:{body.get('payment_intent')}")
        if intent is None or intent.status != "succeeded":
            return refused(400, "Only a succeeded payment intent can be disputed.")
        amount = body.get("amount", intent.amount)
        if not isinstance(amount, int) or not 0 < amount <= intent.amount:
            return refused(400, "A dispute is for 1 up to the payment's amount.")
        dispute_id = f"dp_{os.urandom(7).hex()}"
        charge = intent.latest_charge
        disputes[dispute_id] = dispute = {
            "id": dispute_id,
            "object": "dispute",
            "amount": amount,
            "currency": intent.currency,
            "charge": getattr(charge, "id", charge),
            "payment_intent": intent.id,
            "reason": str(body.get("reason") or "general"),
            "status": "needs_response",
            "created": int(time.time()),
            "livemode": False,
            "metadata": {},
        }
        announce("charge.dispute.created", dispute)
        return web.json_response(dispute)

    async def dispute_close(request):
        dispute = disputes.get(request.match_info["id"])
        if dispute is None:
            return refused(404, "No such dispute")
        status = (await request.json()).get("status")
        if status not in ("won", "lost"):
            return refused(400, "A dispute closes as won or lost.")
        dispute["status"] = status
        announce("charge.dispute.closed", dispute)
        return web.json_response(dispute)

    app.router.add_get("/v1/disputes/{id}", dispute_retrieve)
    app.router.add_post("/_config/disputes", dispute_open)
    app.router.add_post("/_config/disputes/{id}/close", dispute_close)


def _listening_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    # SO_REUSEADDR lets a restart take the port out of TIME_WAIT; on Linux it never lets two
    # processes listen on one port.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        if error.errno == errno.EADDRINUSE:
            raise LocalStripePortTaken(
                f"localstripe cannot listen on {host}:{port}: the port is already in use "
                "(another localstripe?). Stop it, or choose another port (--port, and "
                "LOCALSTRIPE_URL to match)."
            ) from error
        raise LocalStripeError(f"localstripe cannot listen on {host}:{port}: {error}") from error
    return sock


def _store_keep_in(store, path: Path | None) -> None:
    """Replace localstripe's persistence (/tmp/localstripe.pickle, shared by every instance)
    with none, or with `path`."""
    if path is None:
        store.dump_to_disk = lambda: None
        return
    path = Path(path)
    if path.exists():
        try:
            with path.open("rb") as saved:
                # our own file, written by this function for the developer's localstripe
                contents = pickle.load(saved)  # noqa: S301
            dict.update(store, contents)
        except Exception as error:  # a store of another localstripe version: start empty
            print(f"localstripe: ignoring the saved store {path}: {error!r}", flush=True)

    def dump() -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(path.name + ".tmp")
        with temporary.open("wb") as output:
            pickle.dump(dict(store), output, protocol=pickle.HIGHEST_PROTOCOL)
        temporary.replace(path)

    store.dump_to_disk = dump


def _exit_with_parent_watch(parent_pid: int):
    async def on_startup(app) -> None:
        async def watch() -> None:
            while os.getppid() == parent_pid:
                await asyncio.sleep(0.5)
            # the parent is gone (we were re-parented): stop as on SIGTERM
            os.kill(os.getpid(), signal.SIGTERM)

        _watchers.add(asyncio.ensure_future(watch()))

    return on_startup


_watchers: set = set()  # keeps the watch task referenced while it runs


# --- Processes ----------------------------------------------------------------------------------


def localstripe_start(
    *,
    port: int | None = None,
    log_path: Path | None = None,
    host: str = DEFAULT_HOST,
    store_path: Path | None = None,
    seconds: float = START_SECONDS,
) -> LocalStripe:
    """Start localstripe in a process of its own on `host` (loopback) and `port` (None: a free
    one), output to `log_path` (None: a temporary file), and return once it answers.

    The process stops when this one exits (atexit, and its own watch of its parent, so even a
    killed parent leaves nothing behind). Raises LocalStripePortTaken or LocalStripeError with
    the process's output."""
    log_is_ours = log_path is None
    if log_path is None:
        descriptor, name = tempfile.mkstemp(prefix="localstripe-", suffix=".log")
        os.close(descriptor)
        log_path = Path(name)
    log_path = Path(log_path)
    command = [
        sys.executable,
        "-m",
        "billing.localstripe",
        "--host",
        host,
        "--port",
        str(port or 0),
        "--exit-with-parent",
    ]
    if store_path is not None:
        command += ["--store", str(store_path)]
    with log_path.open("w") as output:
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            command,
            cwd=PROJECT_DIR,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl+C in a terminal goes to us; we stop it ourselves
        )
    localstripe = LocalStripe(url="", process=process, log_path=log_path, _log_is_ours=log_is_ours)
    # one callable per process, so stopping one localstripe leaves the others' registered
    localstripe._at_exit = functools.partial(localstripe_stop, localstripe)
    atexit.register(localstripe._at_exit)
    try:
        localstripe.url = _wait_until_serving(process, log_path, seconds=seconds)
    except BaseException:
        localstripe_stop(localstripe)  # its output is in the exception
        raise
    return localstripe


def _wait_until_serving(process: subprocess.Popen, log_path: Path, *, seconds: float) -> str:
    deadline = time.monotonic() + seconds
    url = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = log_path.read_text().strip()
            error = LocalStripePortTaken if "already in use" in output else LocalStripeError
            raise error(f"localstripe exited with status {process.returncode}: {output}")
        if url is None:
            match = SERVING_AT.search(log_path.read_text())
            url = match.group(1) if match else None
        if url is not None and _answers(url):
            return url
        time.sleep(0.05)
    raise LocalStripeError(
        f"localstripe did not answer within {seconds} s. Output: {log_path.read_text()}"
    )


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/js.stripe.com/v3/", timeout=1) as response:  # noqa: S310
            return response.status == 200
    except OSError:
        return False


def localstripe_stop(localstripe: LocalStripe, *, seconds: float = STOP_SECONDS) -> None:
    """Stop a localstripe started by `localstripe_start` (SIGTERM, then SIGKILL after
    `seconds`); safe to call twice."""
    if localstripe._at_exit is not None:
        atexit.unregister(localstripe._at_exit)
    process = localstripe.process
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    if localstripe._log_is_ours:
        localstripe.log_path.unlink(missing_ok=True)


# --- localstripe's private endpoints, and what its Stripe.js does -------------------------------


def localstripe_webhook_register(
    *,
    url_base: str,
    endpoint_url: str,
    secret: str,
    name: str = WEBHOOK_NAME,
    events: list[str] | None = None,
) -> None:
    """Have localstripe POST its events to `endpoint_url`, signed with `secret`: all events, or
    only those of the types in `events` (an empty list silences the endpoint). Registering the
    same `name` again replaces it."""
    body = {"url": endpoint_url, "secret": secret}
    if events is not None:
        body["events"] = list(events)
    _request(url_base, "POST", f"/_config/webhooks/{name}", body=body, key=None, answer=False)


def localstripe_card_create(
    *,
    url_base: str,
    number: str,
    exp_month: int = 12,
    exp_year: int | None = None,
    cvc: str = "123",
) -> str:
    """A card PaymentMethod made from a test card number, as Stripe.js makes one in a browser:
    its id (pm_...). localstripe only: real Stripe refuses raw card numbers from servers."""
    exp_year = exp_year or datetime.date.today().year + 4
    answer = _request(
        url_base,
        "POST",
        "/v1/payment_methods",
        body={
            "type": "card",
            "card": {"number": number, "exp_month": exp_month, "exp_year": exp_year, "cvc": cvc},
        },
    )
    return answer["id"]


def localstripe_setup_intent_confirm(
    *,
    url_base: str,
    client_secret: str,
    number: str,
    exp_month: int = 12,
    exp_year: int | None = None,
    cvc: str = "123",
    authenticate: bool = True,
) -> dict:
    """Confirm a SetupIntent with a test card exactly as localstripe's Stripe.js
    `confirmCardSetup` does in a browser (publishable key, client secret, card number), pressing
    "Complete authentication" (or, with `authenticate` false, "Fail authentication") when the
    card asks for it. Returns the SetupIntent as localstripe answers it; raises
    LocalStripeError (status 402, code card_declined) when the card is declined."""
    setup_intent_id = _intent_id(client_secret, "seti_")
    exp_year = exp_year or datetime.date.today().year + 4
    common = {
        "key": LOCALSTRIPE_PUBLISHABLE_KEY,
        "use_stripe_sdk": True,
        "client_secret": client_secret,
    }
    path = f"/v1/setup_intents/{setup_intent_id}"
    card = {"number": number, "exp_month": exp_month, "exp_year": exp_year, "cvc": cvc}
    answer = _request(
        url_base,
        "POST",
        f"{path}/confirm",
        body={**common, "payment_method_data": {"type": "card", "card": card}},
        key=None,
    )
    if answer["status"] == "requires_action":
        action = "confirm" if authenticate else "cancel"
        answer = _request(url_base, "POST", f"{path}/{action}", body=common, key=None)
    return answer


def localstripe_payment_intent_authenticate(
    *, url_base: str, client_secret: str, success: bool = True
) -> dict:
    """Answer the authentication a PaymentIntent waits for, as localstripe's Stripe.js
    `confirmCardPayment` does when the card holder presses "Complete authentication" (or
    "Fail authentication"). Returns the PaymentIntent as localstripe answers it."""
    payment_intent_id = _intent_id(client_secret, "pi_")
    flag = "true" if success else "false"
    return _request(
        url_base,
        "POST",
        f"/v1/payment_intents/{payment_intent_id}/_authenticate?success={flag}",
        body={"key": LOCALSTRIPE_PUBLISHABLE_KEY, "client_secret": client_secret},
        key=None,
    )


def localstripe_dispute_open(
    *, url_base: str, payment_intent_id: str, reason: str, amount_minor: int | None = None
) -> dict:
    """Play the card issuer: dispute a succeeded payment, all of it or `amount_minor` of it
    (see _disputes_install)."""
    body = {"payment_intent": payment_intent_id, "reason": reason}
    if amount_minor is not None:
        body["amount"] = amount_minor
    return _request(url_base, "POST", "/_config/disputes", body=body, key=None)


def localstripe_dispute_close(*, url_base: str, dispute_id: str, status: str) -> dict:
    """Play the card issuer: decide a dispute, "won" (the payment stands) or "lost"."""
    return _request(
        url_base,
        "POST",
        f"/_config/disputes/{dispute_id}/close",
        body={"status": status},
        key=None,
    )


def _intent_id(client_secret: str, prefix: str) -> str:
    match = re.match(rf"^({prefix}\w+)_secret_", client_secret)
    if not match:
        raise LocalStripeError(f"Not a {prefix} client secret: {client_secret!r}")
    return match.group(1)


def _request(
    url_base: str,
    method: str,
    path: str,
    *,
    body: dict | None = None,
    key: str | None = LOCALSTRIPE_SECRET_KEY,
    answer: bool = True,
):
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(  # noqa: S310 - the URL of our localstripe
        f"{url_base.rstrip('/')}{path}",
        data=None if body is None else json.dumps(body).encode(),
        headers=headers,
        method=method,
    )
    try:
        with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_SECONDS) as response:  # noqa: S310
            content = response.read()
    except urllib.error.HTTPError as error:
        text = error.read().decode(errors="replace")
        try:
            details = json.loads(text).get("error", {})
        except ValueError:
            details = {}
        raise LocalStripeError(
            f"localstripe refused {method} {path}: {error.code} {details.get('message') or text}",
            status=error.code,
            code=details.get("code"),
        ) from error
    except OSError as error:
        raise LocalStripeError(f"localstripe at {url_base} did not answer: {error}") from error
    return json.loads(content) if answer else None


# --- `python -m billing.localstripe`: how localstripe_start runs it -----------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m billing.localstripe", description="Serve localstripe on one address."
    )
    parser.add_argument("--host", default=DEFAULT_HOST)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="0: a free port")
    parser.add_argument("--store", type=Path, help="keep the fake Stripe's data in this file")
    parser.add_argument("--exit-with-parent", action="store_true")
    arguments = parser.parse_args(argv)
    try:
        localstripe_serve(
            host=arguments.host,
            port=arguments.port,
            store_path=arguments.store,
            exit_with_parent=arguments.exit_with_parent,
        )
    except LocalStripeError as error:
        print(error, file=sys.stderr, flush=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
