from django import template

from marketplace.money import money_format

register = template.Library()


@register.simple_tag(name="money")
def money_tag(amount_minor, currency):
    """``{% money offer.price_per_gb_minor offer.currency %}`` → ``2.50 USD``."""
    return money_format(amount_minor, currency)
