"""Stripe, behind small typed functions: the only module that imports the `stripe` library.

Callers get plain dataclasses and a few exceptions, never Stripe objects. Money is
`amount_minor` (integer minor units) and an ISO currency, upper-case here as everywhere in the
project (Stripe gets it lower-case).

Configuration (Django settings): STRIPE_SECRET_KEY, STRIPE_PUBLISHABLE_KEY, STRIPE_WEBHOOK_SECRET,
LOCALSTRIPE_URL. With no secret key the gateway talks to localstripe at LOCALSTRIPE_URL (default
http://127.0.0.1:8420) with its own development keys and webhook secret (billing.localstripe);
`manage.py localstripe` serves it.

Exceptions:
- GatewayError: Stripe answered and refused; nothing happened. Its subclasses:
  CardDeclined (the card was declined: nothing charged or saved) and AuthenticationRequired (the
  card holder must authenticate, on a page calling Stripe.js, before the payment can proceed).
- GatewayUnavailable: Stripe could not be reached or failed (network, timeout, 5xx, rate
  limit): the outcome of the request is UNKNOWN. It is deliberately not a GatewayError, so that
  no `except GatewayError` treats an unknown outcome as a refusal: the charge service reconciles
  it by reading Stripe (payment_intents_find) before trying again.

Idempotency: payment_intent_create sends the caller's idempotency key, which real Stripe honours
for 24 hours; localstripe ignores it (the same request twice charges twice), so the guarantee
that a retry never charges twice must come from the charge service's own records and from
payment_intents_find, never from the key alone.

Requests are not retried here when talking to localstripe (it ignores idempotency keys); with
real Stripe the library retries network failures twice with the same key, which is safe.
"""

import functools
import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

import stripe
from django.conf import settings

from billing.localstripe import (
    LOCALSTRIPE_PUBLISHABLE_KEY,
    LOCALSTRIPE_SECRET_KEY,
    LOCALSTRIPE_WEBHOOK_SECRET,
)

DEFAULT_LOCALSTRIPE_URL = "http://127.0.0.1:8420"
STRIPE_JS_URL = "https://js.stripe.com/v3/"
WEBHOOK_TOLERANCE_SECONDS = 300
# (connect, read) seconds: a charge whose answer takes longer is reconciled later
REQUEST_TIMEOUT_SECONDS = (10, 60)
STRIPE_NETWORK_RETRIES = 2
LIST_PAGE_SIZE = 100


# --- Results ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SetupIntentInfo:
    """A SetupIntent: how a card is saved for later charges. `client_secret` goes to the page
    that confirms it with Stripe.js."""

    id: str
    client_secret: str
    status: str  # requires_payment_method, requires_action, processing, succeeded, canceled
    customer_id: str | None
    payment_method_id: str | None


@dataclass(frozen=True)
class CardInfo:
    """A saved card (a card PaymentMethod)."""

    id: str
    brand: str
    last4: str
    exp_month: int
    exp_year: int
    customer_id: str | None


@dataclass(frozen=True)
class PaymentIntentInfo:
    """A PaymentIntent: one charge attempt. `client_secret` lets a page complete an
    authentication with Stripe.js `confirmCardPayment`."""

    id: str
    status: str  # succeeded, processing, requires_action, requires_payment_method, canceled, ...
    amount_minor: int
    currency: str
    customer_id: str | None
    payment_method_id: str | None
    client_secret: str | None
    created: datetime
    metadata: dict[str, str] = field(default_factory=dict)
    last_error_code: str | None = None
    last_error_message: str | None = None
    next_action_type: str | None = None
    next_action_url: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"

    @property
    def requires_authentication(self) -> bool:
        return self.status == "requires_action" or (
            self.status == "requires_payment_method"
            and self.last_error_code == "authentication_required"
        )


@dataclass(frozen=True)
class DisputeInfo:
    """A card issuer's dispute of a payment. `status`: warning_needs_response,
    warning_under_review, warning_closed, needs_response, under_review, won or lost."""

    id: str
    status: str
    payment_intent_id: str | None
    amount_minor: int
    currency: str
    reason: str
    created: datetime

    @property
    def closed(self) -> bool:
        return self.status in ("won", "lost", "warning_closed")

    @property
    def lost(self) -> bool:
        return self.status == "lost"


@dataclass(frozen=True)
class EventInfo:
    """A verified webhook event: only what is needed to re-read its object from Stripe (the
    payload itself is never trusted for state)."""

    id: str
    type: str
    object_id: str
    object_type: str
    created: datetime


# --- Exceptions ---------------------------------------------------------------------------------


class GatewayError(Exception):
    """Stripe answered and refused the request: nothing was done."""

    def __init__(self, message: str, *, code: str | None = None, http_status: int | None = None):
        super().__init__(message)
        self.message = message
        self.code = code
        self.http_status = http_status


class CardDeclined(GatewayError):
    """The card was declined: nothing was charged (or, when saving a card, nothing saved).
    `code` is Stripe's error code (card_declined, expired_card, incorrect_cvc, ...) and
    `decline_code` the issuer's reason when Stripe gives one (insufficient_funds, ...)."""

    def __init__(
        self,
        message: str,
        *,
        code: str | None,
        decline_code: str | None = None,
        payment_intent_id: str | None = None,
        http_status: int | None = 402,
    ):
        super().__init__(message, code=code, http_status=http_status)
        self.decline_code = decline_code
        self.payment_intent_id = payment_intent_id


class AuthenticationRequired(GatewayError):
    """The payment needs the card holder to authenticate (3-D Secure): send them to a page that
    calls `stripe.confirmCardPayment(payment_intent.client_secret, {payment_method: ...})`."""

    def __init__(self, payment_intent: PaymentIntentInfo):
        super().__init__(
            "The card holder must authenticate this payment before it can be made.",
            code="authentication_required",
        )
        self.payment_intent = payment_intent


class GatewayUnavailable(Exception):
    """Stripe could not be reached or failed: the outcome of the request is unknown."""


class WebhookRefused(Exception):
    """A webhook whose signature, body or age is not acceptable."""


# --- Configuration ------------------------------------------------------------------------------


def uses_localstripe() -> bool:
    """True when no Stripe key is configured: the gateway talks to localstripe."""
    return not getattr(settings, "STRIPE_SECRET_KEY", "")


def localstripe_url() -> str:
    return (getattr(settings, "LOCALSTRIPE_URL", "") or DEFAULT_LOCALSTRIPE_URL).rstrip("/")


def publishable_key() -> str:
    """The key the browser's Stripe.js is created with."""
    if uses_localstripe():
        return getattr(settings, "STRIPE_PUBLISHABLE_KEY", "") or LOCALSTRIPE_PUBLISHABLE_KEY
    return settings.STRIPE_PUBLISHABLE_KEY


def stripe_js_url() -> str:
    """Where pages load Stripe.js from: localstripe's fake one in development."""
    if uses_localstripe():
        return f"{localstripe_url()}/js.stripe.com/v3/"
    return STRIPE_JS_URL


def webhook_secret() -> str:
    """The secret webhooks are signed with ("" when none is configured for real Stripe)."""
    configured = getattr(settings, "STRIPE_WEBHOOK_SECRET", "")
    if configured:
        return configured
    return LOCALSTRIPE_WEBHOOK_SECRET if uses_localstripe() else ""


def _client() -> stripe.StripeClient:
    if uses_localstripe():
        return _client_build(LOCALSTRIPE_SECRET_KEY, localstripe_url(), 0)
    return _client_build(settings.STRIPE_SECRET_KEY, None, STRIPE_NETWORK_RETRIES)


@functools.lru_cache(maxsize=8)
def _client_build(api_key: str, api_base: str | None, retries: int) -> stripe.StripeClient:
    return stripe.StripeClient(
        api_key,
        base_addresses={"api": api_base} if api_base else None,
        max_network_retries=retries,
        http_client=stripe.RequestsClient(timeout=REQUEST_TIMEOUT_SECONDS),
    )


# --- Customers and cards ------------------------------------------------------------------------


def customer_create(
    *, name: str, email: str, metadata: Mapping[str, str], idempotency_key: str | None = None
) -> str:
    """Create a Stripe customer; its id (cus_...)."""
    with _errors_translated("creating a customer"):
        customer = _client().v1.customers.create(
            params={"name": name, "email": email, "metadata": _metadata(metadata)},
            options=_options(idempotency_key),
        )
    return customer.id


def setup_intent_create(
    *, customer_id: str, metadata: Mapping[str, str] | None = None
) -> SetupIntentInfo:
    """A SetupIntent to save a card of `customer_id` for off-session charges; the page confirms
    it with Stripe.js `confirmCardSetup(client_secret, ...)`."""
    with _errors_translated("starting to save a card"):
        intent = _client().v1.setup_intents.create(
            params={
                "customer": customer_id,
                "usage": "off_session",
                "payment_method_types": ["card"],
                "metadata": _metadata(metadata or {}),
            }
        )
    return _setup_intent_info(intent.to_dict())


def setup_intent_retrieve(setup_intent_id: str) -> SetupIntentInfo:
    with _errors_translated("reading a SetupIntent"):
        intent = _client().v1.setup_intents.retrieve(setup_intent_id)
    return _setup_intent_info(intent.to_dict())


def setup_intent_complete(*, setup_intent_id: str, customer_id: str) -> CardInfo:
    """The card a succeeded SetupIntent of `customer_id` saved, attached to the customer.

    Real Stripe attaches it when the SetupIntent succeeds; localstripe does not, so it is
    attached here when needed. Safe to call twice. Raises GatewayError when the SetupIntent
    belongs to another customer or has not succeeded (code `setup_intent_<status>`)."""
    intent = setup_intent_retrieve(setup_intent_id)
    if intent.customer_id != customer_id:
        raise GatewayError(
            "This card was set up for another customer.", code="setup_intent_customer_mismatch"
        )
    if intent.status != "succeeded" or not intent.payment_method_id:
        raise GatewayError(
            f"The card was not saved (the SetupIntent is {intent.status}).",
            code=f"setup_intent_{intent.status}",
        )
    card = payment_method_retrieve(intent.payment_method_id)
    if card.customer_id == customer_id:
        return card
    return payment_method_attach(payment_method_id=card.id, customer_id=customer_id)


def payment_methods_list(*, customer_id: str) -> list[CardInfo]:
    """The cards saved for `customer_id`."""
    with _errors_translated("listing cards"):
        page = _client().v1.payment_methods.list(
            params={"customer": customer_id, "type": "card", "limit": LIST_PAGE_SIZE}
        )
        return [_card_info(method.to_dict()) for method in page.auto_paging_iter()]


def payment_method_retrieve(payment_method_id: str) -> CardInfo:
    with _errors_translated("reading a card"):
        method = _client().v1.payment_methods.retrieve(payment_method_id)
    return _card_info(method.to_dict())


def payment_method_attach(*, payment_method_id: str, customer_id: str) -> CardInfo:
    """Attach a card to a customer (server-side flows and tests; pages save cards through a
    SetupIntent). Raises CardDeclined when the card is refused."""
    with _errors_translated("saving a card"):
        method = _client().v1.payment_methods.attach(
            payment_method_id, params={"customer": customer_id}
        )
    return _card_info(method.to_dict())


def payment_method_detach(payment_method_id: str) -> None:
    """Remove a saved card from its customer."""
    with _errors_translated("removing a card"):
        _client().v1.payment_methods.detach(payment_method_id)


# --- Payments -----------------------------------------------------------------------------------


def payment_intent_create(
    *,
    amount_minor: int,
    currency: str,
    customer_id: str,
    payment_method_id: str,
    idempotency_key: str,
    metadata: Mapping[str, str],
    off_session: bool = True,
    confirm: bool = True,
) -> PaymentIntentInfo:
    """Charge a saved card: a PaymentIntent, by default confirmed off session (the card holder
    is not there).

    Record the charge and its `idempotency_key` in the database before calling, and put the
    record's identity in `metadata`, so that payment_intents_find can settle an unknown outcome.
    Returns the PaymentIntent (normally `succeeded`; `processing` is possible with real Stripe).
    Raises CardDeclined (with the PaymentIntent's id when known), AuthenticationRequired,
    GatewayError, or GatewayUnavailable (outcome unknown)."""
    if not isinstance(amount_minor, int) or amount_minor <= 0:
        raise ValueError(f"amount_minor must be a positive integer, not {amount_minor!r}")
    if not idempotency_key:
        raise ValueError("every charge needs its idempotency key")
    params = {
        "amount": amount_minor,
        "currency": currency.lower(),
        "customer": customer_id,
        "payment_method": payment_method_id,
        # cards only: no redirect-based method can be picked for an off-session charge
        "payment_method_types": ["card"],
        "metadata": _metadata(metadata),
        "confirm": confirm,
    }
    if confirm:
        params["off_session"] = off_session
    try:
        with _errors_translated("charging a card"):
            intent = _client().v1.payment_intents.create(
                params=params, options=_options(idempotency_key)
            )
    except CardDeclined as declined:
        if declined.payment_intent_id is None and declined.__cause__ is not None:
            declined.payment_intent_id = _declined_payment_intent_id(declined.__cause__)
        raise
    info = _payment_intent_info(intent.to_dict())
    if confirm and info.requires_authentication:
        raise AuthenticationRequired(info)
    return info


def payment_intent_retrieve(payment_intent_id: str) -> PaymentIntentInfo:
    with _errors_translated("reading a payment"):
        intent = _client().v1.payment_intents.retrieve(payment_intent_id)
    return _payment_intent_info(intent.to_dict())


def dispute_retrieve(dispute_id: str) -> DisputeInfo:
    with _errors_translated("reading a dispute"):
        dispute = _client().v1.disputes.retrieve(dispute_id)
    return _dispute_info(dispute.to_dict())


def payment_intents_find(
    *,
    customer_id: str,
    metadata_key: str,
    metadata_value: str,
    created_after: datetime | None = None,
) -> list[PaymentIntentInfo]:
    """The PaymentIntents of `customer_id` whose metadata has `metadata_key` = `metadata_value`
    (and created at or after `created_after`), oldest first: how a charge whose answer was lost
    learns whether Stripe made it.

    Lists rather than searches: Stripe's search API may lag behind by a minute, a list does not.
    localstripe lists without filters, so the filtering happens here."""
    params: dict = {"limit": LIST_PAGE_SIZE}
    if not uses_localstripe():
        params["customer"] = customer_id
        if created_after is not None:
            params["created"] = {"gte": int(created_after.timestamp())}
    found = []
    with _errors_translated("looking for payments"):
        for intent in _client().v1.payment_intents.list(params=params).auto_paging_iter():
            info = _payment_intent_info(intent.to_dict())
            if (
                info.customer_id == customer_id
                and info.metadata.get(metadata_key) == str(metadata_value)
                and (created_after is None or info.created >= created_after.replace(microsecond=0))
            ):
                found.append(info)
    return sorted(found, key=lambda info: info.created)


# --- Webhooks -----------------------------------------------------------------------------------


def webhook_event_verify(
    *,
    payload: bytes,
    signature_header: str | None,
    tolerance_seconds: int = WEBHOOK_TOLERANCE_SECONDS,
) -> EventInfo:
    """The event of a webhook request, once the stripe library has verified its
    Stripe-Signature header against the body (untouched bytes) and STRIPE_WEBHOOK_SECRET, and
    found it signed less than `tolerance_seconds` ago. Raises WebhookRefused otherwise."""
    secret = webhook_secret()
    if not secret:
        raise WebhookRefused("No webhook signing secret is configured (STRIPE_WEBHOOK_SECRET).")
    if tolerance_seconds <= 0:
        raise ValueError("a webhook tolerance must be positive: replays would never expire")
    try:
        stripe.WebhookSignature.verify_header(payload, signature_header, secret, tolerance_seconds)
    except stripe.SignatureVerificationError as error:
        raise WebhookRefused(f"Bad webhook signature: {error.user_message or error}") from error
    except UnicodeDecodeError as error:
        raise WebhookRefused("The webhook body is not UTF-8.") from error
    try:
        event = json.loads(payload)
        data_object = event["data"]["object"]
        return EventInfo(
            id=_text(event["id"]),
            type=_text(event["type"]),
            object_id=_text(data_object["id"]),
            object_type=_text(data_object["object"]),
            created=datetime.fromtimestamp(int(event["created"]), tz=UTC),
        )
    except (ValueError, KeyError, TypeError) as error:
        raise WebhookRefused(f"The webhook body is not a Stripe event: {error!r}") from error


# --- Translation --------------------------------------------------------------------------------


@contextmanager
def _errors_translated(doing: str) -> Iterator[None]:
    try:
        yield
    except stripe.CardError as error:
        raise _card_refusal(error) from error
    except (stripe.APIConnectionError, stripe.APIError, stripe.RateLimitError) as error:
        raise GatewayUnavailable(
            f"Stripe could not be reached while {doing}; the outcome is unknown: {error}"
        ) from error
    except stripe.StripeError as error:
        raise GatewayError(
            f"Stripe refused {doing}: {error.user_message or error}",
            code=error.code,
            http_status=error.http_status,
        ) from error


def _card_refusal(error: stripe.CardError) -> GatewayError:
    details = _error_details(error)
    intent = details.get("payment_intent")
    if isinstance(intent, dict) and error.code == "authentication_required":
        # real Stripe's answer to an off-session payment needing authentication
        return AuthenticationRequired(_payment_intent_info(intent))
    return CardDeclined(
        details.get("message") or "The card was declined.",
        code=error.code,
        decline_code=details.get("decline_code"),
        payment_intent_id=intent.get("id") if isinstance(intent, dict) else None,
        http_status=error.http_status,
    )


def _declined_payment_intent_id(error: BaseException) -> str | None:
    """localstripe names the declined charge, not its PaymentIntent: look it up (best effort)."""
    if not isinstance(error, stripe.StripeError):
        return None
    charge_id = _error_details(error).get("charge")
    if not charge_id:
        return None
    try:
        charge = _client().v1.charges.retrieve(charge_id)
    except stripe.StripeError:
        return None
    return _id(charge.to_dict().get("payment_intent"))


def _error_details(error: stripe.StripeError) -> dict:
    body = error.json_body if isinstance(error.json_body, dict) else {}
    details = body.get("error")
    return dict(details) if isinstance(details, Mapping) else {}


def _options(idempotency_key: str | None) -> dict:
    return {"idempotency_key": idempotency_key} if idempotency_key else {}


def _metadata(metadata: Mapping[str, object]) -> dict[str, str]:
    return {str(key): str(value) for key, value in metadata.items()}


def _id(value) -> str | None:
    if isinstance(value, Mapping):
        return value.get("id")
    return value or None


def _text(value) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"expected a non-empty string, got {value!r}")
    return value


def _setup_intent_info(data: dict) -> SetupIntentInfo:
    return SetupIntentInfo(
        id=data["id"],
        client_secret=data.get("client_secret") or "",
        status=data["status"],
        customer_id=_id(data.get("customer")),
        payment_method_id=_id(data.get("payment_method")),
    )


def _card_info(data: dict) -> CardInfo:
    card = data.get("card") or {}
    return CardInfo(
        id=data["id"],
        brand=card.get("brand") or "",
        last4=card.get("last4") or "",
        exp_month=int(card.get("exp_month") or 0),
        exp_year=int(card.get("exp_year") or 0),
        customer_id=_id(data.get("customer")),
    )


def _payment_intent_info(data: dict) -> PaymentIntentInfo:
    error = data.get("last_payment_error") or {}
    action = data.get("next_action") or {}
    redirect = action.get("redirect_to_url") or {}
    return PaymentIntentInfo(
        id=data["id"],
        status=data["status"],
        amount_minor=int(data["amount"]),
        currency=str(data["currency"]).upper(),
        customer_id=_id(data.get("customer")),
        payment_method_id=_id(data.get("payment_method")),
        client_secret=data.get("client_secret"),
        created=datetime.fromtimestamp(int(data["created"]), tz=UTC),
        metadata={str(key): str(value) for key, value in (data.get("metadata") or {}).items()},
        last_error_code=error.get("code"),
        last_error_message=error.get("message"),
        next_action_type=action.get("type"),
        next_action_url=redirect.get("url"),
    )


def _dispute_info(data: dict) -> DisputeInfo:
    return DisputeInfo(
        id=data["id"],
        status=data["status"],
        payment_intent_id=_id(data.get("payment_intent")),
        amount_minor=int(data["amount"]),
        currency=str(data["currency"]).upper(),
        reason=str(data.get("reason") or ""),
        created=datetime.fromtimestamp(int(data["created"]), tz=UTC),
    )
