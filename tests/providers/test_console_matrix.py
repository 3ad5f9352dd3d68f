"""Object-level security of the provider console (/console/): a matrix over every model admin
registered on the console site and every page of it that names an object.

Provider A's people (an owner, a plain member) and A's other organizations (a recipient, a
buying group) ask for every page of every object of provider B the console would show B: the
answer must be the answer for an id nothing has (a 404, or the same redirect), change nothing,
and mention nothing of B. A's lists, add forms, filters and search boxes show nothing of B;
forms naming B's objects are refused; a bulk action naming B's objects changes nothing.

The objects of B come from each admin's own scoping (`provider_field`), so a newly registered
admin is covered as soon as it is registered; a test fails for any console page that names an
object and is not in the matrix. The worlds are those of the API matrix
(tests/api/test_security_matrix.py): two providers, recipients and groups, with everything
the console lists.
"""

import re
from datetime import timedelta

import pytest
from django.apps import apps
from django.contrib.contenttypes.models import ContentType
from django.test import Client
from django.urls import URLPattern, URLResolver, reverse
from django.utils import timezone
from rest_framework.test import APIClient

from auctions.services import bid_place
from marketplace.models import Role
from providers.console import ProviderScopedAdmin, console_site
from providers.models import ProviderProfile, ProviderStatus, WebhookAttempt
from tests.api.test_security_matrix import (
    CANARY_B,
    MISSING_ID,
    World,
    db_changes,
    snapshot,
    world_build,
)
from tests.factories import member_of

pytestmark = pytest.mark.django_db

# The console pages that name an object, by URL name (the admin's own and the console's); the
# unnamed `<object_id>/` of every admin redirects to its change page.
OBJECT_PAGES = {"change", "history", "delete", "rotate_secret", "deactivate", "csv", ""}
POST_BODY = {
    "post": "yes",  # confirms a deletion
    "name": "Taken over",
    "capacity_mbps": "1",
    "work_location": "exchange",
    "is_active": "",
    "url": "https://taken.example/over",
}


@pytest.fixture
def world(settings, tmp_path) -> World:
    settings.JOB_STORAGE_DIR = tmp_path / "jobs"
    world = world_build()
    # what the console also lists: a bid on each auction, an attempt of each webhook delivery
    for side in (world.a, world.b):
        bid_place(
            auction_id=side.o["auction"].pk,
            bidder=side.orgs["recipient"],
            user=side.users["recipient"],
            amount_minor=1000,
        )
        delivery = side.o["delivery"]
        WebhookAttempt.objects.create(
            delivery=delivery, number=1, at=delivery.created_at, status_code=500
        )
    return world


def signed_in(user, organization) -> Client:
    client = Client()
    client.force_login(user)
    session = client.session
    session["organization_id"] = organization.pk
    session.save()
    return client


@pytest.fixture
def people(world) -> dict[str, Client]:
    """A's provider owner and plain member, and A's recipient and group, signed in."""
    a = world.a
    provider = a.orgs["provider"]
    return {
        "provider A's owner": signed_in(a.users["provider"], provider),
        "provider A's member": signed_in(member_of(provider, role=Role.MEMBER), provider),
        "recipient A's owner": signed_in(a.users["recipient"], a.orgs["recipient"]),
        "group A's admin": signed_in(a.users["group"], a.orgs["group"]),
    }


def objects_of(provider, model, model_admin) -> list:
    """The provider's objects as the admin scopes them for it."""
    if isinstance(model_admin, ProviderScopedAdmin):
        lookup = {model_admin.provider_field: provider}
        return list(model._default_manager.filter(**lookup).distinct())
    if model._meta.label == "providers.ProviderProfile":
        return [provider]
    raise AssertionError(f"matrix error: no way to find a provider's {model._meta.label}")


def objects_of_b(world: World, model, model_admin) -> list:
    return objects_of(world.b.provider, model, model_admin)


def needles_of_b(world: World) -> list[str]:
    """What no page of A's console may show: B's private names, its provider's name, its
    auctions' names."""
    b = world.b
    auctions = b.provider.blocks.values_list("auctions__pk", flat=True)
    return [
        CANARY_B,
        b.provider.legal_name,
        *(f"Auction #{pk} of" for pk in auctions if pk),
    ]


def object_pages(model_admin) -> list[tuple[str, str]]:
    """(page, URL name) of the admin's pages that name an object."""
    pages = []
    info = f"{model_admin.opts.app_label}_{model_admin.opts.model_name}"
    for pattern in model_admin.get_urls():
        if "object_id" not in str(pattern.pattern):
            continue
        name = pattern.name or ""
        page = name.removeprefix(f"{info}_") if name else ""
        pages.append((page, name))
    return pages


def answer_of(response) -> tuple:
    """Status, where it redirects and what it says, numbers blanked (ids differ)."""
    body = response.content.decode(errors="replace")
    body = re.sub(r"csrfmiddlewaretoken\" value=\"[^\"]+\"", "", body)
    return (
        response.status_code,
        re.sub(r"\d+", "#", response.get("Location", "")),
        re.sub(r"\d+", "#", body[:3000]),
    )


def page_url(model_admin, name: str, pk) -> str:
    if name:
        return reverse(f"console:{name}", args=[pk])
    opts = model_admin.opts
    return reverse(f"console:{opts.app_label}_{opts.model_name}_changelist") + f"{pk}/"


def check_page(world, who, client, method, url, missing_url, data=None) -> list[str]:
    """The leaks of one request of A for B's object, next to the same for no object. A POST
    is checked to change nothing on its own; GETs by the test around all of them."""
    before = snapshot() if method == "post" else None
    response = getattr(client, method)(url, data)
    after = snapshot() if method == "post" else None
    control = getattr(client, method)(missing_url, data)
    leaks = []
    where = f"{method.upper()} {url} as {who}"
    text = response.content.decode(errors="replace")
    if 200 <= response.status_code < 300:
        leaks.append(f"{where}: answered {response.status_code}")
    if answer_of(response) != answer_of(control):
        leaks.append(
            f"{where}: tells B's object from a missing one: {answer_of(response)[:2]} "
            f"vs {answer_of(control)[:2]}"
        )
    leaks += [f"{where}: shows {needle!r}" for needle in needles_of_b(world) if needle in text]
    if before is not None:
        changes = db_changes(before, after, allowed_new=no_row)
        leaks += [f"{where}: {change}" for change in changes]
    return leaks


def no_row(label, row) -> bool:
    """A refused console request creates nothing, not even a change-log entry."""
    return False


REGISTRY = sorted(console_site._registry.items(), key=lambda item: item[0]._meta.label)


@pytest.mark.parametrize(
    "model", [model for model, _ in REGISTRY], ids=[m._meta.label for m, _ in REGISTRY]
)
def test_every_page_of_another_providers_object_is_a_404_that_changes_nothing(model, world, people):
    model_admin = console_site._registry[model]
    targets = objects_of_b(world, model, model_admin)
    assert targets, f"matrix error: B has no {model._meta.label} in its console"
    leaks, before = [], snapshot()
    for target in targets:
        for page, name in object_pages(model_admin):
            assert page in OBJECT_PAGES, f"matrix error: {name} is not in the matrix"
            url, missing = (
                page_url(model_admin, name, target.pk),
                page_url(model_admin, name, MISSING_ID),
            )
            for who, client in people.items():
                for method in ("get", "post"):
                    data = POST_BODY if method == "post" else None
                    leaks += check_page(world, who, client, method, url, missing, data)
    leaks += [
        f"after all: {change}" for change in db_changes(before, snapshot(), allowed_new=no_row)
    ]
    assert not leaks, f"{len(leaks)} cross-organization leaks:\n" + "\n".join(leaks)


@pytest.mark.parametrize(
    "model", [model for model, _ in REGISTRY], ids=[m._meta.label for m, _ in REGISTRY]
)
def test_a_console_list_its_add_form_and_search_show_nothing_of_another_provider(
    model, world, people
):
    model_admin = console_site._registry[model]
    opts = model_admin.opts
    changelist = reverse(f"console:{opts.app_label}_{opts.model_name}_changelist")
    add = reverse(f"console:{opts.app_label}_{opts.model_name}_add")
    b_pks = {target.pk for target in objects_of_b(world, model, model_admin)}
    own = objects_of(world.a.provider, model, model_admin)
    assert own, f"matrix error: A has no {model._meta.label} in its console"
    own_page = reverse(f"console:{opts.app_label}_{opts.model_name}_change", args=[own[0].pk])
    leaks = []
    for who, client in people.items():
        for url in (changelist, f"{changelist}?q=CANARY", f"{changelist}?all=", add, own_page):
            response = client.get(url, follow=True)
            text = response.content.decode(errors="replace")
            leaks += [f"GET {url} as {who}: shows {n!r}" for n in needles_of_b(world) if n in text]
            for pk in b_pks:
                if f"/{opts.app_label}/{opts.model_name}/{pk}/change/" in text:
                    leaks.append(f"GET {url} as {who}: links B's {opts.model_name} {pk}")
            context = response.context or {}
            listed = context.get("cl").result_list if context and "cl" in context else []
            if {obj.pk for obj in listed} & b_pks:
                leaks.append(f"GET {url} as {who}: lists B's {sorted(b_pks)}")
    assert not leaks, "\n".join(leaks)


@pytest.mark.parametrize(
    "model", [model for model, _ in REGISTRY], ids=[m._meta.label for m, _ in REGISTRY]
)
def test_a_bulk_action_naming_another_providers_objects_changes_nothing(model, world, people):
    model_admin = console_site._registry[model]
    opts = model_admin.opts
    changelist = reverse(f"console:{opts.app_label}_{opts.model_name}_changelist")
    b_pks = [target.pk for target in objects_of_b(world, model, model_admin)]
    leaks = []
    for who, client in people.items():
        before = snapshot()
        response = client.post(
            changelist,
            {"action": "delete_selected", "_selected_action": b_pks, "post": "yes"},
        )
        changes = db_changes(before, snapshot(), allowed_new=no_row)
        leaks += [f"POST {changelist} delete_selected as {who}: {change}" for change in changes]
        if response.status_code == 200 and "Are you sure?" in response.content.decode():
            leaks.append(f"POST {changelist} delete_selected as {who}: asks to delete B's")
    assert not leaks, "\n".join(leaks)


def test_add_forms_naming_another_providers_objects_are_refused(world, people):
    """An auction of B's block and a routing path over B's network are refused (and the same
    forms with A's own block and network are accepted: the refusal is about B's objects)."""
    opens, closes = timezone.now(), timezone.now() + timedelta(hours=1)

    def auction(block) -> dict:
        return {
            "block": block.pk,
            "opens_at_0": f"{opens:%Y-%m-%d}",
            "opens_at_1": f"{opens:%H:%M:%S}",
            "closes_at_0": f"{closes:%Y-%m-%d}",
            "closes_at_1": f"{closes:%H:%M:%S}",
            "currency": "USD",
            "start_price_minor": "1000",
            "soft_close_seconds": "120",
            "max_extension_seconds": "600",
        }

    def routing_path(network) -> dict:
        return {
            "name": "Sneaky",
            "capacity_mbps": "10",
            "hops-TOTAL_FORMS": "1",
            "hops-INITIAL_FORMS": "0",
            "hops-MIN_NUM_FORMS": "0",
            "hops-MAX_NUM_FORMS": "1000",
            "hops-0-position": "0",
            "hops-0-network": network.pk,
        }

    forms = [
        (reverse("console:auctions_auction_add"), auction, "block"),
        (reverse("console:providers_routingpath_add"), routing_path, "network"),
    ]
    leaks = []
    for url, form, name in forms:
        for who, client in people.items():
            before = snapshot()
            response = client.post(url, form(world.b.o[name]))
            changes = db_changes(before, snapshot(), allowed_new=no_row)
            leaks += [f"POST {url} as {who}: {change}" for change in changes]
            if response.status_code == 302 and "/add/" not in response["Location"]:
                leaks.append(f"POST {url} as {who}: accepted, to {response['Location']}")
    for url, form, name in forms:
        response = people["provider A's owner"].post(url, form(world.a.o[name]))
        assert response.status_code == 302, f"matrix error: {url} refuses A's own {name}"
    assert not leaks, "\n".join(leaks)


def test_autocomplete_offers_nothing_of_another_provider(world, people):
    """The admin's autocomplete answers for any foreign key to a console model whose admin
    searches: it searches A's own objects only."""
    url = reverse("console:autocomplete")
    leaks, answered = [], 0
    for source in ContentType.objects.all():
        model = source.model_class()
        if model is None:
            continue
        for field in model._meta.get_fields():
            remote = getattr(getattr(field, "remote_field", None), "model", None)
            if not field.is_relation or field.auto_created or remote not in console_site._registry:
                continue
            model_admin = console_site._registry[remote]
            b_pks = {str(target.pk) for target in objects_of_b(world, remote, model_admin)}
            query = {
                "app_label": source.app_label,
                "model_name": source.model,
                "field_name": field.name,
                "term": "",
            }
            for who, client in people.items():
                response = client.get(url, query)
                if response.status_code != 200:
                    continue
                answered += 1
                ids = {str(result["id"]) for result in response.json()["results"]}
                if ids & b_pks:
                    leaks.append(f"GET {url} {query} as {who}: offers B's {sorted(ids & b_pks)}")
    assert answered, "matrix error: no autocomplete answered"
    assert not leaks, "\n".join(leaks)


def test_the_view_on_site_shortcut_tells_nothing_of_another_organizations_objects(world, people):
    """`/console/r/<content type>/<id>/` looks any object up: for B's it answers as for none."""
    leaks, before = [], snapshot()
    b_rows = sorted(world.b.rows)
    for label in sorted({label for label, _ in b_rows}):
        model = apps.get_model(label)
        if model._meta.auto_created:
            continue  # a many-to-many table has no content type
        content_type = ContentType.objects.get_for_model(model)
        pk = next(pk for row_label, pk in b_rows if row_label == label)
        url = reverse("console:view_on_site", args=[content_type.pk, pk])
        missing = reverse("console:view_on_site", args=[content_type.pk, MISSING_ID])
        for who, client in people.items():
            leaks += check_page(world, who, client, "get", url, missing)
    leaks += [
        f"after all: {change}" for change in db_changes(before, snapshot(), allowed_new=no_row)
    ]
    assert not leaks, "\n".join(leaks)


def test_the_bid_list_offers_only_the_providers_own_auctions_to_filter_by(world, people):
    """B is not verified (yet, or any more): its auctions are not public. A's bid list must
    not name them in its filter by auction (nor any other provider's)."""
    b = world.b
    ProviderProfile.objects.filter(pk=b.provider.pk).update(status=ProviderStatus.SUSPENDED)
    auction_b = b.o["auction"]
    assert APIClient().get(f"/api/v1/auctions/{auction_b.pk}/").status_code == 404

    for who in ("provider A's owner", "provider A's member"):
        response = people[who].get(reverse("console:auctions_bid_changelist"))
        html = response.content.decode()

        assert response.status_code == 200
        assert f"Auction #{auction_b.pk} of {b.provider.legal_name}" not in html, (
            f"{who}: the bid list's filter names B's non-public auction {auction_b}"
        )


def test_every_console_page_naming_an_object_is_in_the_matrix():
    """A new page of the console that names an object fails here until the matrix has it."""

    def names(patterns, prefix=""):
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                yield from names(pattern.url_patterns, prefix + str(pattern.pattern))
            elif isinstance(pattern, URLPattern):
                yield pattern.name, prefix + str(pattern.pattern)

    admin_pages = {
        name for _, model_admin in REGISTRY for _, name in object_pages(model_admin) if name
    }
    site_pages = {"view_on_site"}
    unknown = [
        (name, route)
        for name, route in names(console_site.get_urls())
        if "object_id" in route and name and name not in admin_pages | site_pages
    ]
    assert unknown == []
    for _, model_admin in REGISTRY:
        for page, name in object_pages(model_admin):
            assert page in OBJECT_PAGES, name
