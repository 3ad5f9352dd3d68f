"""`manage.py localstripe`: the fake Stripe server of development and the demo, in the
foreground, on the address of LOCALSTRIPE_URL, its data kept in VAR_DIR/localstripe.pickle."""

from pathlib import Path
from urllib.parse import urlsplit

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from billing import stripe_gateway
from billing.localstripe import LocalStripeError, localstripe_serve


class Command(BaseCommand):
    help = (
        "Serve localstripe (a fake Stripe) on the address of LOCALSTRIPE_URL until stopped; "
        "optionally register the portal's webhook endpoint with it."
    )

    def add_arguments(self, parser):
        address = urlsplit(stripe_gateway.localstripe_url())
        parser.add_argument(
            "--host",
            default=address.hostname or "127.0.0.1",
            help="Address to listen on (default: LOCALSTRIPE_URL's host).",
        )
        parser.add_argument(
            "--port",
            type=int,
            default=address.port or 8420,
            help="Port (default: LOCALSTRIPE_URL's port; 0: any free one).",
        )
        parser.add_argument(
            "--register-webhook",
            metavar="URL",
            help="Send every event to this URL (the portal's Stripe webhook endpoint).",
        )
        parser.add_argument(
            "--secret",
            help="Secret the webhooks are signed with (default: the one the gateway checks).",
        )
        parser.add_argument(
            "--store",
            type=Path,
            default=Path(settings.VAR_DIR) / "localstripe.pickle",
            help="File keeping the fake customers, cards and payments across restarts.",
        )
        parser.add_argument(
            "--from-scratch",
            action="store_true",
            help="Keep nothing: start empty and save nothing.",
        )
        parser.add_argument(
            "--exit-with-parent",
            action="store_true",
            help="Stop when the process that started this one ends (for bin/run).",
        )

    def handle(self, *, host, port, register_webhook, secret, store, from_scratch, **options):
        if not stripe_gateway.uses_localstripe():
            self.stderr.write(
                "Note: STRIPE_SECRET_KEY is set, so the portal talks to Stripe, not to this "
                "localstripe."
            )
        webhook = None
        if register_webhook:
            if not register_webhook.startswith(("http://", "https://")):
                raise CommandError(f"--register-webhook needs an http(s) URL: {register_webhook}")
            secret = secret or stripe_gateway.webhook_secret()
            if not secret:
                raise CommandError("--register-webhook needs --secret or STRIPE_WEBHOOK_SECRET.")
            webhook = (register_webhook, secret)
        try:
            localstripe_serve(
                host=host,
                port=port,
                store_path=None if from_scratch else store,
                exit_with_parent=options["exit_with_parent"],
                webhook=webhook,
            )
        except LocalStripeError as error:
            raise CommandError(str(error)) from error
