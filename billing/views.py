"""Billing pages. Ratings: what the acting organization may rate and has rated and received
(with the reply form), and the form to rate a lease or a planned job. Statements (page and
PDF), cards on file (saved with Stripe.js Elements), the bank authentication a charge may
need, and Stripe's webhook endpoint. Another organization's objects are a 404."""

import csv

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from auctions.models import Lease
from billing.disputes import disputes_of
from billing.forms import ProviderRatingForm, RecipientRatingForm, ReplyForm
from billing.models import Charge, RatingKind, Settlement, Statement
from billing.payments import (
    PaymentRefused,
    card_remove,
    card_setup_finish,
    card_setup_start,
    payment_authenticated,
    statement_pay,
    stripe_event_process,
)
from billing.pdf import statement_pdf
from billing.ratings import (
    RatingRefused,
    Scores,
    job_providers,
    provider_rating_create,
    provider_rating_summary,
    rateables_of,
    rating_existing,
    rating_reply,
    rating_window,
    ratings_of,
    recipient_rating_create,
    recipient_rating_summaries,
    recipient_rating_summary,
)
from billing.statements import (
    cards_of,
    settlement_csv_rows,
    statement_groups,
    statements_of,
)
from billing.stripe_gateway import (
    GatewayUnavailable,
    WebhookRefused,
    publishable_key,
    stripe_js_url,
)
from providers.selectors import provider_of
from segmentation.models import Job

RATINGS_SHOWN = 100


def _no_organization(request):
    return render(
        request,
        "segmentation/no_organization.html",
        {"title": "Ratings"},
    )


@login_required
def rating_list(request):
    organization = request.organization
    if organization is None:
        return _no_organization(request)
    provider = provider_of(organization=organization)
    rateables = rateables_of(organization=organization)
    counterparties = {r.recipient.pk for r in rateables if r.kind == RatingKind.RECIPIENT}
    recipient_summaries = recipient_rating_summaries(organization_ids=counterparties)
    return render(
        request,
        "billing/ratings/list.html",
        {
            "rateables": [
                (rateable, recipient_summaries.get(rateable.recipient.pk)) for rateable in rateables
            ],
            "given": ratings_of(organization=organization, direction="given")[:RATINGS_SHOWN],
            "received": ratings_of(organization=organization, direction="received")[:RATINGS_SHOWN],
            "provider": provider,
            "provider_summary": provider_rating_summary(provider=provider) if provider else None,
            "recipient_summary": recipient_rating_summary(organization=organization),
            "reply_form": ReplyForm(),
        },
    )


def _subject(request, *, lease_id, job_id, provider_id):
    """(kind, lease, job, provider, recipient) the acting organization may rate; 404 when it
    is not a party to the lease or job."""
    organization = request.organization
    own_provider = provider_of(organization=organization)
    if lease_id is not None:
        lease = (
            Lease.objects.select_related("block__provider__organization", "winner")
            .filter(pk=lease_id)
            .first()
        )
        if lease is None:
            raise Http404("No such lease of yours.")
        if lease.winner_id == organization.pk:
            return RatingKind.PROVIDER, lease, None, lease.block.provider, organization
        if own_provider is not None and lease.block.provider_id == own_provider.pk:
            return RatingKind.RECIPIENT, lease, None, own_provider, lease.winner
        raise Http404("No such lease of yours.")
    job = (
        Job.objects.select_related("organization", "plan")
        .filter(pk=job_id, plan__isnull=False, lease__isnull=True)
        .first()
    )
    if job is None:
        raise Http404("No such job of yours.")
    providers = {provider.pk: provider for provider in job_providers(job)}
    if provider_id is not None:
        if job.organization_id == organization.pk and provider_id in providers:
            return RatingKind.PROVIDER, None, job, providers[provider_id], organization
    elif own_provider is not None and own_provider.pk in providers:
        return RatingKind.RECIPIENT, None, job, own_provider, job.organization
    raise Http404("No such job of yours.")


@login_required
def rating_new(request, lease_id=None, job_id=None, provider_id=None):
    organization = request.organization
    if organization is None:
        return _no_organization(request)
    kind, lease, job, provider, recipient = _subject(
        request, lease_id=lease_id, job_id=job_id, provider_id=provider_id
    )
    form_class = ProviderRatingForm if kind == RatingKind.PROVIDER else RecipientRatingForm
    form = form_class(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        values = form.cleaned_data
        try:
            if kind == RatingKind.PROVIDER:
                provider_rating_create(
                    organization=organization,
                    user=request.user,
                    lease=lease,
                    job=job,
                    provider=provider,
                    satisfied=values["satisfied"],
                    scores=Scores(
                        quality=values["quality"],
                        communication=values["communication"],
                        delivery=values["delivery"],
                    ),
                    comment=values["comment"],
                )
            else:
                recipient_rating_create(
                    provider=provider,
                    user=request.user,
                    lease=lease,
                    job=job,
                    paid_satisfactorily=values["paid_satisfactorily"],
                    comment=values["comment"],
                )
        except RatingRefused as refusal:
            form.add_error(None, refusal.message)
        else:
            rated = provider.legal_name if kind == RatingKind.PROVIDER else recipient.name
            messages.success(request, f"Thank you: your rating of {rated} is recorded.")
            return redirect("rating_list")
    return render(
        request,
        "billing/ratings/new.html",
        {
            "form": form,
            "kind": kind,
            "lease": lease,
            "job": job,
            "provider": provider,
            "recipient": recipient,
            "window": rating_window(lease=lease, job=job),
            "existing": rating_existing(kind=kind, lease=lease, job=job, provider=provider),
            "recipient_summary": (
                recipient_rating_summary(organization=recipient)
                if kind == RatingKind.RECIPIENT
                else None
            ),
        },
    )


@login_required
@require_POST
def rating_reply_view(request, pk):
    organization = request.organization
    if organization is None:
        raise Http404("No such rating of yours.")
    form = ReplyForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Write a reply of at most 2000 characters.")
        return redirect("rating_list")
    try:
        rating_reply(
            rating_id=pk,
            organization=organization,
            user=request.user,
            text=form.cleaned_data["text"],
        )
    except RatingRefused as refusal:
        if refusal.code == "rating_not_found":
            raise Http404(refusal.message) from None
        messages.error(request, refusal.message)
    else:
        messages.success(request, "Your reply is published with the rating.")
    return redirect("rating_list")


# --- statements, cards, payments -----------------------------------------------------------------


@login_required
def statement_list(request):
    organization = request.organization
    if organization is None:
        return _no_organization(request)
    return render(
        request,
        "billing/statements/list.html",
        {"statements": statements_of(organization).select_related("provider")[:200]},
    )


def _statement(request, number) -> Statement:
    statement = statements_of(request.organization).filter(number=number).first()
    if statement is None:
        raise Http404("No statement of yours has this number.")
    return statement


@login_required
def statement_detail(request, number):
    statement = _statement(request, number)
    if request.method == "POST" and request.POST.get("action") == "pay":
        try:
            status = statement_pay(statement=statement)
        except PaymentRefused as refusal:
            messages.error(request, refusal.message)
        except GatewayUnavailable:
            messages.error(request, "Payments are unreachable right now: try again shortly.")
        else:
            if status == "succeeded":
                messages.success(request, f"Statement {statement.number} is paid.")
            else:
                messages.info(request, f"Payment: {status.replace('_', ' ')}.")
        return redirect("statement_detail", statement.number)
    charge = Charge.objects.filter(statement=statement).first()
    return render(
        request,
        "billing/statements/detail.html",
        {
            "statement": statement,
            "groups": statement_groups(statement),
            "charge": charge,
            "disputes": disputes_of(statement),
        },
    )


@login_required
def statement_pdf_view(request, number):
    statement = _statement(request, number)
    response = HttpResponse(
        statement_pdf(statement, statement_groups(statement)), content_type="application/pdf"
    )
    response["Content-Disposition"] = f'inline; filename="{statement.number}.pdf"'
    return response


@login_required
def card_list(request):
    """The cards on file, the form that saves one with Stripe.js Elements (the card number
    goes from the browser to Stripe, never to the exchange), and removal."""
    organization = request.organization
    if organization is None:
        return _no_organization(request)
    if request.method == "POST":
        try:
            if request.POST.get("remove"):
                card = cards_of(organization).filter(pk=_int(request.POST["remove"])).first()
                if card is None:
                    raise Http404("No such card.")
                card_remove(card=card)
                messages.success(request, f"{card} removed.")
            elif request.POST.get("setup_intent"):
                card = card_setup_finish(
                    organization=organization, setup_intent_id=request.POST["setup_intent"]
                )
                messages.success(request, f"{card} saved.")
        except PaymentRefused as refusal:
            messages.error(request, refusal.message)
        return redirect("card_list")
    setup = None
    setup_error = ""
    if organization.is_recipient:
        try:
            setup = card_setup_start(organization=organization)
        except PaymentRefused as refusal:
            setup_error = refusal.message
    return render(
        request,
        "billing/cards.html",
        {
            "cards": cards_of(organization),
            "setup": setup,
            "setup_error": setup_error,
            "stripe_js_url": stripe_js_url(),
            "publishable_key": publishable_key(),
        },
    )


def _int(value) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise Http404("No such object.") from None


@login_required
def charge_authenticate(request, pk):
    """The page an e-mailed link opens: the bank's authentication of a charge, with Stripe.js;
    then the exchange reads the payment back."""
    charge = (
        Charge.objects.filter(pk=pk, statement__organization=request.organization)
        .select_related("statement")
        .first()
    )
    if charge is None:
        raise Http404("No payment of yours waits for this.")
    if request.method == "POST":
        try:
            status = payment_authenticated(charge=charge)
        except PaymentRefused as refusal:
            messages.error(request, refusal.message)
        else:
            if status == "succeeded":
                messages.success(request, f"Statement {charge.statement.number} is paid.")
            else:
                messages.error(request, "The payment is not confirmed yet.")
        return redirect("statement_detail", charge.statement.number)
    return render(
        request,
        "billing/authenticate.html",
        {
            "charge": charge,
            "stripe_js_url": stripe_js_url(),
            "publishable_key": publishable_key(),
        },
    )


@csrf_exempt
@require_POST
def stripe_webhook(request):
    """Stripe's events: the signature verified, each event once, the object read back."""
    try:
        outcome = stripe_event_process(
            payload=request.body,
            signature_header=request.headers.get("Stripe-Signature", ""),
        )
    except WebhookRefused as refusal:
        return HttpResponse(f"Refused: {refusal}", status=400, content_type="text/plain")
    except GatewayUnavailable:
        # not recorded: Stripe sends it again
        return HttpResponse("Stripe unreachable", status=503, content_type="text/plain")
    return HttpResponse(outcome, content_type="text/plain")


def settlement_csv_response(settlement: Settlement) -> HttpResponse:
    """The settlement as a CSV download (also the console's)."""
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = (
        f'attachment; filename="settlement-{settlement.period_start:%Y-%m}-'
        f'{settlement.currency}-{settlement.pk}.csv"'
    )
    csv.writer(response).writerows(settlement_csv_rows(settlement))
    return response
