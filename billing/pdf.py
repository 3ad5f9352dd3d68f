"""Statements as PDF: the only module that imports reportlab. The PDF shows what the page
shows: the statement's number, recipient, period and currency, each provider's lines with its
subtotal, then the charges, credits and total."""

from __future__ import annotations

from io import BytesIO
from xml.sax.saxutils import escape

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from billing.statements import ProviderGroup
from marketplace.money import money_format


def statement_pdf(statement, groups: list[ProviderGroup]) -> bytes:
    """The statement rendered as a PDF document (A4)."""
    buffer = BytesIO()
    document = SimpleDocTemplate(
        buffer,
        pagesize=A4,
        title=f"Statement {statement.number}",
        author="Segment Exchange",
        leftMargin=18 * mm,
        rightMargin=18 * mm,
        topMargin=18 * mm,
        bottomMargin=18 * mm,
        # uncompressed: a few kilobytes more, and its text can be searched and checked
        pageCompression=0,
    )
    styles = getSampleStyleSheet()
    small = styles["BodyText"].clone("small", fontSize=8, leading=10)
    currency = statement.currency
    story = [
        Paragraph(escape(f"Statement {statement.number}"), styles["Title"]),
        Paragraph(
            escape(
                f"{statement.organization.name} · {statement.period_start:%Y-%m-%d} to "
                f"{statement.period_end:%Y-%m-%d} (exclusive) · {currency} · "
                + (
                    f"provider {statement.provider.legal_name}"
                    if statement.provider_id
                    else "all providers (consolidated)"
                )
            ),
            styles["BodyText"],
        ),
        Spacer(1, 6 * mm),
    ]
    for group in groups:
        # names and descriptions are text, not reportlab markup
        story.append(Paragraph(escape(group.provider.legal_name), styles["Heading3"]))
        rows = [["Date", "Kind", "Description", "Amount"]]
        for line in group.lines:
            rows.append(
                [
                    f"{line.occurred_at:%Y-%m-%d}",
                    line.get_kind_display(),
                    Paragraph(escape(line.description), small),
                    money_format(line.amount_minor, currency),
                ]
            )
        rows.append(["", "", "Subtotal", money_format(group.subtotal_minor, currency)])
        table = Table(rows, colWidths=[22 * mm, 30 * mm, 88 * mm, 32 * mm], repeatRows=1)
        table.setStyle(
            TableStyle(
                [
                    ("FONTSIZE", (0, 0), (-1, -1), 8),
                    ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e8edf3")),
                    ("ALIGN", (-1, 0), (-1, -1), "RIGHT"),
                    ("LINEABOVE", (0, -1), (-1, -1), 0.5, colors.grey),
                    ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ]
            )
        )
        story += [table, Spacer(1, 4 * mm)]
    totals = Table(
        [
            ["Charges", money_format(statement.charges_minor, currency)],
            ["Credits", money_format(statement.credits_minor, currency)],
            *(
                [["Credits carried to your next statement", money_format(carried, currency)]]
                if (carried := statement.carried_minor)
                else []
            ),
            ["Total", money_format(statement.total_minor, currency)],
            ["Due", money_format(statement.amount_due_minor, currency)],
        ],
        colWidths=[140 * mm, 32 * mm],
    )
    totals.setStyle(
        TableStyle(
            [
                ("ALIGN", (-1, 0), (-1, -1), "RIGHT"),
                ("FONTNAME", (0, -2), (-1, -1), "Helvetica-Bold"),
                ("LINEABOVE", (0, -2), (-1, -2), 0.8, colors.black),
            ]
        )
    )
    story += [
        totals,
        Spacer(1, 4 * mm),
        Paragraph(f"Status: {statement.get_status_display()}", small),
    ]
    document.build(story)
    return buffer.getvalue()
