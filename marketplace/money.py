"""Money in minor units: the one place that knows each currency's exponent."""

from decimal import Decimal, InvalidOperation

from django.core.exceptions import ValidationError

# ISO 4217 exponents of the currencies the exchange settles in.
CURRENCY_EXPONENTS = {
    "USD": 2,
    "EUR": 2,
    "GBP": 2,
    "CHF": 2,
    "CAD": 2,
    "AUD": 2,
    "SEK": 2,
    "NOK": 2,
    "DKK": 2,
    "PLN": 2,
    "JPY": 0,
    "KRW": 0,
    "BHD": 3,
    "KWD": 3,
}
CURRENCY_CHOICES = [(code, code) for code in sorted(CURRENCY_EXPONENTS)]


def currency_validate(currency: str) -> None:
    if currency not in CURRENCY_EXPONENTS:
        raise ValidationError(
            "Unsupported currency %(currency)s; use one of %(known)s.",
            code="unsupported_currency",
            params={"currency": currency, "known": ", ".join(sorted(CURRENCY_EXPONENTS))},
        )


def money_format(amount_minor: int, currency: str) -> str:
    """Render an amount for people, e.g. ``money_format(123456, "USD") == "1,234.56 USD"``."""
    currency_validate(currency)
    exponent = CURRENCY_EXPONENTS[currency]
    sign = "-" if amount_minor < 0 else ""
    major, minor = divmod(abs(int(amount_minor)), 10**exponent)
    text = f"{major:,}"
    if exponent:
        text += f".{minor:0{exponent}d}"
    return f"{sign}{text} {currency}"


def money_parse(text: str, currency: str) -> int:
    """Turn a decimal amount typed by a person into minor units, refusing sub-minor precision."""
    currency_validate(currency)
    exponent = CURRENCY_EXPONENTS[currency]
    try:
        value = Decimal(str(text).replace(",", "").strip())
    except InvalidOperation:
        raise ValidationError(
            "“%(text)s” is not an amount.", code="invalid_amount", params={"text": text}
        ) from None
    if not value.is_finite():
        raise ValidationError(
            "“%(text)s” is not an amount.", code="invalid_amount", params={"text": text}
        )
    scaled = value.scaleb(exponent)
    if scaled != scaled.to_integral_value():
        raise ValidationError(
            "%(currency)s amounts have at most %(exponent)d decimal places.",
            code="too_precise",
            params={"currency": currency, "exponent": exponent},
        )
    return int(scaled)
