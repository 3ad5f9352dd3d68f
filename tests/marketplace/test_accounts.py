import re
from datetime import timedelta

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from marketplace.models import ApiKey, Invitation, Membership, Organization, Role, User
from marketplace.services import token_hash
from tests.factories import PASSWORD, OrganizationFactory, UserFactory, member_of

pytestmark = pytest.mark.django_db

NEW_PASSWORD = "plum-orbit-lantern-42"


def _sign_up(client, email, password=NEW_PASSWORD, next_url=""):
    return client.post(
        reverse("signup") + (f"?next={next_url}" if next_url else ""),
        {
            "full_name": "Ada Buyer",
            "email": email,
            "password1": password,
            "password2": password,
            "next": next_url,
        },
    )


@pytest.fixture
def invite(login_client, django_capture_on_commit_callbacks):
    """Returns a function: an owner invites an address through the organization page; returns
    the path of the link in the e-mail that was sent."""

    def send(organization, email, role="member"):
        client = login_client(member_of(organization))
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post(
                reverse("organization_detail", args=[organization.slug]),
                {"action": "invite", "invite-email": email, "invite-role": role},
            )
        assert response.status_code == 302
        message = mail.outbox[-1]
        assert message.to == [email.lower()]
        return client, re.search(r"https?://[^/]+(/invitations/\S+/)", message.body).group(1)

    return send


def test_sign_up_creates_the_account_and_signs_the_user_in():
    client = Client()
    response = _sign_up(client, "Ada@Example.com")
    assert response.status_code == 302
    assert response["Location"] == reverse("dashboard")
    user = User.objects.get(email="ada@example.com")
    assert user.check_password(NEW_PASSWORD)
    page = client.get(reverse("dashboard"))
    assert "ada@example.com" in page.content.decode()
    assert "Create an organization" in page.content.decode()


def test_sign_up_with_an_address_already_taken_is_refused_whatever_its_case():
    UserFactory(email="taken@example.com")
    response = _sign_up(Client(), "TAKEN@example.com")
    assert response.status_code == 200
    assert "already exists" in response.content.decode()
    assert User.objects.filter(email__iexact="taken@example.com").count() == 1


def test_sign_up_with_a_weak_or_mismatched_password_keeps_what_was_typed():
    client = Client()
    response = client.post(
        reverse("signup"),
        {"full_name": "Bo", "email": "bo@example.com", "password1": "123", "password2": "123"},
    )
    body = response.content.decode()
    assert response.status_code == 200
    assert "too short" in body
    assert 'value="bo@example.com"' in body
    response = client.post(
        reverse("signup"),
        {"email": "bo@example.com", "password1": NEW_PASSWORD, "password2": NEW_PASSWORD + "x"},
    )
    assert "The two passwords differ." in response.content.decode()
    assert not User.objects.filter(email="bo@example.com").exists()


def test_log_in_and_log_out():
    user = UserFactory()
    client = Client()
    response = client.post(reverse("login"), {"username": user.email, "password": PASSWORD})
    assert response.status_code == 302
    assert user.email in client.get(reverse("dashboard")).content.decode()
    client.post(reverse("logout"))
    assert client.get(reverse("dashboard"))["Location"].startswith(reverse("login"))


def test_wrong_password_does_not_log_in():
    user = UserFactory()
    response = Client().post(reverse("login"), {"username": user.email, "password": "nope"})
    assert response.status_code == 200
    assert "enter a correct" in response.content.decode().lower()


def test_password_reset_mails_a_link_that_sets_a_new_password():
    user = UserFactory(email="forgetful@example.com")
    client = Client()
    client.post(reverse("password_reset"), {"email": "forgetful@example.com"})
    assert len(mail.outbox) == 1
    link = re.search(r"https?://[^/]+(/accounts/reset/\S+)", mail.outbox[0].body).group(1)
    form_page = client.get(link, follow=True)
    assert "Choose a new password" in form_page.content.decode()
    client.post(
        form_page.redirect_chain[-1][0],
        {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
    )
    user.refresh_from_db()
    assert user.check_password(NEW_PASSWORD)
    assert Client().login(email=user.email, password=NEW_PASSWORD)


def test_creating_an_organization_makes_the_creator_its_owner(login_client):
    user = UserFactory()
    client = login_client(user)
    response = client.post(
        reverse("organization_new"), {"name": "Acme Buyers", "kind": "recipient"}
    )
    organization = Organization.objects.get(name="Acme Buyers")
    assert response["Location"] == reverse("organization_detail", args=[organization.slug])
    assert Membership.objects.get(user=user, organization=organization).role == Role.OWNER
    assert organization.is_recipient and not organization.is_provider


def test_creating_a_provider_organization_leads_to_the_provider_registration(login_client):
    client = login_client(UserFactory())
    response = client.post(reverse("organization_new"), {"name": "Fiber Co", "kind": "provider"})
    assert response["Location"] == reverse("provider_apply")


def test_owner_invites_by_email_and_the_invitee_joins_with_the_role(invite):
    organization = OrganizationFactory()
    _owner_client, path = invite(organization, "New.Colleague@example.com", role="admin")
    assert len(mail.outbox) == 1

    invitee = Client()
    landing = invitee.get(path)
    assert "Join " + organization.name in landing.content.decode()
    _sign_up(invitee, "new.colleague@example.com", next_url=path)
    response = invitee.post(path)
    assert response["Location"] == reverse("organization_detail", args=[organization.slug])
    membership = Membership.objects.get(user__email="new.colleague@example.com")
    assert membership.organization == organization
    assert membership.role == Role.ADMIN
    assert "already been accepted" in invitee.get(path).content.decode()


def test_invitation_addressed_to_someone_else_is_refused(invite, login_client):
    _owner_client, path = invite(OrganizationFactory(), "right@example.com")
    intruder = login_client(UserFactory(email="wrong@example.com"))
    response = intruder.post(path)
    assert response.status_code == 403
    assert not Membership.objects.filter(user__email="wrong@example.com").exists()


def test_expired_or_withdrawn_invitations_cannot_be_used(invite, login_client):
    organization = OrganizationFactory()
    owner_client, path = invite(organization, "late@example.com")
    Invitation.objects.update(expires_at=timezone.now() - timedelta(minutes=1))
    late = login_client(UserFactory(email="late@example.com"))
    assert "expired" in late.post(path).content.decode()
    invitation = Invitation.objects.get()
    owner_client.post(reverse("invitation_revoke", args=[organization.slug, invitation.pk]))
    assert "withdrawn" in late.post(path).content.decode()
    assert not Membership.objects.filter(user__email="late@example.com").exists()


def test_a_plain_member_cannot_invite_or_create_keys(login_client):
    organization = OrganizationFactory()
    member = member_of(organization, role=Role.MEMBER)
    client = login_client(member)
    page = client.get(reverse("organization_detail", args=[organization.slug])).content.decode()
    assert "Send invitation" not in page
    response = client.post(
        reverse("organization_detail", args=[organization.slug]),
        {"action": "invite", "invite-email": "x@example.com", "invite-role": "member"},
    )
    assert response.status_code == 403
    assert not Invitation.objects.exists()
    assert len(mail.outbox) == 0


def test_an_admin_cannot_invite_an_owner(login_client):
    organization = OrganizationFactory()
    admin = member_of(organization, role=Role.ADMIN)
    response = login_client(admin).post(
        reverse("organization_detail", args=[organization.slug]),
        {"action": "invite", "invite-email": "boss@example.com", "invite-role": "owner"},
    )
    assert "Only an owner may invite another owner." in response.content.decode()
    assert not Invitation.objects.exists()


def test_an_organization_page_is_404_for_non_members(login_client):
    organization = OrganizationFactory()
    member_of(organization)
    outsider = login_client(UserFactory())
    assert outsider.get(reverse("organization_detail", args=[organization.slug])).status_code == 404


def test_api_key_is_shown_once_and_only_its_hash_is_stored(login_client):
    organization = OrganizationFactory()
    owner = member_of(organization)
    client = login_client(owner)
    response = client.post(
        reverse("organization_detail", args=[organization.slug]),
        {"action": "api_key", "key-name": "Billing system", "key-scope": "write"},
    )
    key = re.search(r'data-testid="new-api-key">([^<]+)<', response.content.decode()).group(1)
    stored = ApiKey.objects.get()
    assert stored.key_hash == token_hash(key)
    assert key not in str(stored.__dict__)
    again = client.get(reverse("organization_detail", args=[organization.slug])).content.decode()
    assert key not in again
    assert f"sx_{stored.prefix}_" in again
    client.post(reverse("api_key_revoke", args=[organization.slug, stored.pk]))
    stored.refresh_from_db()
    assert stored.revoked_at is not None


def test_switching_organization_changes_who_the_user_acts_for(login_client):
    user = UserFactory()
    first, second = OrganizationFactory(name="First"), OrganizationFactory(name="Second")
    member_of(first, user=user)
    member_of(second, user=user)
    client = login_client(user)
    client.post(reverse("organization_switch"), {"organization_id": second.pk})
    assert client.session["organization_id"] == second.pk
    other = OrganizationFactory()
    assert (
        client.post(reverse("organization_switch"), {"organization_id": other.pk}).status_code
        == 404
    )
