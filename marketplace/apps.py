from django.apps import AppConfig


class MarketplaceConfig(AppConfig):
    name = "marketplace"
    verbose_name = "Exchange"

    def ready(self):
        from django.core import checks

        from marketplace.ratelimit import rate_settings_check

        checks.register(rate_settings_check)
