"""The shared kernel: users, organizations, memberships, invitations, client devices, API keys,
idempotency records, the audit log and task leases."""

from django.conf import settings
from django.contrib.auth.models import AbstractUser, BaseUserManager
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q
from django.db.models.functions import Lower


class UserManager(BaseUserManager):
    """Creates users identified by e-mail address."""

    use_in_migrations = True

    def _create_user(self, email, password, **extra):
        if not email:
            raise ValueError("An e-mail address is required.")
        user = self.model(email=self.normalize_email(email).lower(), **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_user(self, email, password=None, **extra):
        extra.setdefault("is_staff", False)
        extra.setdefault("is_superuser", False)
        return self._create_user(email, password, **extra)

    def create_superuser(self, email, password=None, **extra):
        extra.setdefault("is_staff", True)
        extra.setdefault("is_superuser", True)
        return self._create_user(email, password, **extra)


class User(AbstractUser):
    """A person who signs in with an e-mail address and belongs to organizations."""

    username = None
    email = models.EmailField("e-mail address", unique=True)
    full_name = models.CharField(max_length=150, blank=True)

    USERNAME_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []

    objects = UserManager()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                Lower("email"),
                name="user_email_unique_ci",
                violation_error_message="A user with this e-mail address already exists.",
            )
        ]

    def __str__(self):
        return self.email


class OrganizationKind(models.TextChoices):
    PROVIDER = "provider", "Provider"
    RECIPIENT = "recipient", "Recipient (buyer)"
    BOTH = "both", "Provider and recipient"
    GROUP = "group", "Buying group"


class Organization(models.Model):
    """A company account: a provider, a recipient (buyer), or both."""

    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=80, unique=True)
    kind = models.CharField(max_length=16, choices=OrganizationKind.choices)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(kind__in=OrganizationKind.values),
                name="organization_kind_valid",
            )
        ]

    def __str__(self):
        return self.name

    @property
    def is_provider(self) -> bool:
        return self.kind in (OrganizationKind.PROVIDER, OrganizationKind.BOTH)

    @property
    def is_recipient(self) -> bool:
        return self.kind in (OrganizationKind.RECIPIENT, OrganizationKind.BOTH)

    @property
    def is_group(self) -> bool:
        """A buying group's account: it bids and holds leases; its payers pay."""
        return self.kind == OrganizationKind.GROUP


class Role(models.TextChoices):
    OWNER = "owner", "Owner"
    ADMIN = "admin", "Admin"
    MEMBER = "member", "Member"


# Roles that may change the organization's settings, members, keys and offers.
MANAGING_ROLES = (Role.OWNER, Role.ADMIN)


class Membership(models.Model):
    """A user's place in an organization, with a role."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["organization__name", "user__email"]
        constraints = [
            models.UniqueConstraint(
                fields=["user", "organization"],
                name="membership_unique_user_organization",
                violation_error_message="This user is already a member of the organization.",
            ),
            models.CheckConstraint(condition=Q(role__in=Role.values), name="membership_role_valid"),
        ]

    def __str__(self):
        return f"{self.user} in {self.organization} ({self.role})"

    @property
    def can_manage(self) -> bool:
        return self.role in MANAGING_ROLES


class Invitation(models.Model):
    """An invitation sent by e-mail to join an organization with a role."""

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="invitations"
    )
    email = models.EmailField()
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.MEMBER)
    token_hash = models.CharField(max_length=64, unique=True)
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    sent_at = models.DateTimeField(null=True, blank=True)
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                Lower("email"),
                "organization",
                condition=Q(accepted_at__isnull=True, revoked_at__isnull=True),
                name="invitation_one_open_per_email",
                violation_error_message="An invitation to this address is already pending.",
            )
        ]

    def __str__(self):
        return f"Invitation of {self.email} to {self.organization}"


# E.164: a plus, a country code that does not start with 0, at most 15 digits in all
E164_PATTERN = r"^\+[1-9][0-9]{1,14}$"
e164_validate = RegexValidator(
    E164_PATTERN,
    "Enter the number in E.164 form: a plus, the country code, then the number, digits only "
    "(at most 15), for example +14155550123.",
    code="invalid_e164",
)


class ClientDevice(models.Model):
    """A recipient's device that requests communications service (and, later, holds seats):
    a name, an identifier of the organization's choosing, optionally a telephone number."""

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="client_devices"
    )
    name = models.CharField(max_length=100)
    identifier = models.CharField(
        max_length=100, help_text="Your own identifier for it: a serial number, an IMEI, a host."
    )
    phone_number = models.CharField(
        "telephone number (E.164)", max_length=16, blank=True, validators=[e164_validate]
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "identifier"],
                name="client_device_unique_identifier",
                violation_error_message="Your organization already has a device with this "
                "identifier.",
            ),
            models.CheckConstraint(
                condition=Q(phone_number="") | Q(phone_number__regex=E164_PATTERN),
                name="client_device_phone_e164",
                violation_error_message="The telephone number is not in E.164 form.",
            ),
        ]

    def __str__(self):
        return f"{self.name} ({self.identifier})"


class ApiKeyScope(models.TextChoices):
    READ = "read", "Read"
    WRITE = "write", "Read and write"


class ApiKey(models.Model):
    """A per-organization API key. Only its SHA-256 is stored; the key is shown once."""

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="api_keys"
    )
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=12, unique=True)
    key_hash = models.CharField(max_length=64, unique=True)
    scope = models.CharField(max_length=8, choices=ApiKeyScope.choices, default=ApiKeyScope.READ)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(scope__in=ApiKeyScope.values), name="apikey_scope_valid"
            )
        ]

    def __str__(self):
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class IdempotencyRecord(models.Model):
    """The stored response of a creating POST, replayed when the same Idempotency-Key returns."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    method = models.CharField(max_length=8)
    path = models.CharField(max_length=500)
    request_hash = models.CharField(max_length=64)
    response_status = models.PositiveSmallIntegerField(null=True)
    response_body = models.JSONField(null=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "key"], name="idempotency_unique_organization_key"
            )
        ]

    def __str__(self):
        return f"{self.method} {self.path} [{self.key}]"


class AuditLogImmutable(Exception):
    """An attempt to change or delete an audit log entry."""


class AuditLogQuerySet(models.QuerySet):
    """Entries are appended, never rewritten or removed in bulk either."""

    def update(self, **kwargs):
        raise AuditLogImmutable("Audit log entries cannot be changed.")

    def delete(self):
        raise AuditLogImmutable("Audit log entries cannot be deleted.")


class AuditLogEntry(models.Model):
    """Who did what to which object, for moderators and disputes. Append-only: neither an entry
    nor a queryset of them can be changed or deleted through the ORM (deleting a user or an
    organization only blanks who it was, keeping the entry)."""

    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    organization = models.ForeignKey(
        Organization, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    action = models.CharField(max_length=80)
    object_type = models.CharField(max_length=80, blank=True)
    object_id = models.CharField(max_length=64, blank=True)
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    objects = AuditLogQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "audit log entries"

    def __str__(self):
        return f"{self.created_at:%Y-%m-%d %H:%M} {self.action} {self.object_type}#{self.object_id}"

    def save(self, *args, **kwargs):
        # Append-only: an entry is written once and never rewritten.
        if not self._state.adding:
            raise AuditLogImmutable("Audit log entries cannot be changed.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AuditLogImmutable("Audit log entries cannot be deleted.")


class TaskLease(models.Model):
    """A running task's claim, renewed by its worker. A lease that runs out means the worker
    died: the task is put back on its queue (tasks are idempotent)."""

    result_id = models.CharField(max_length=64, unique=True)
    backend = models.CharField(max_length=32)
    task_path = models.CharField(max_length=255)
    worker = models.CharField(max_length=128, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    expires_at = models.DateTimeField(null=True, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["expires_at"]

    def __str__(self):
        return f"{self.task_path} [{self.result_id}]"


class RateCounter(models.Model):
    """A rate-limit window's counter kept in the database while the cache (Redis) does not
    answer (marketplace.ratelimit), so sign-in and bids stay limited across every process;
    incremented with one atomic upsert, deleted by a periodic job once its window is over."""

    bucket = models.CharField(max_length=255, unique=True)
    count = models.PositiveIntegerField(default=0)
    expires_at = models.DateTimeField(db_index=True)

    def __str__(self):
        return f"{self.bucket}: {self.count}"
