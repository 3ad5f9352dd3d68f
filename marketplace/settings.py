"""Settings for Segment Exchange, read from the environment (see .env.example).

With no variables set the project runs on the embedded default: SQLite, Channels' in-memory
layer and the django-tasks-db backend with a worker inside the server process. DATABASE_URL and
REDIS_URL switch the same code to PostgreSQL, channels-redis and Redis Queue.
"""

import os
from pathlib import Path

import environ
from django.utils.csp import CSP

from marketplace.csp import ContentSecurityPolicy

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env.str(
    "SECRET_KEY",
    # A development-only key: check --deploy flags it, production must set its own.
    default="django-insecure-development-only-key-change-me",
)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

VAR_DIR = Path(env.str("VAR_DIR", default=str(BASE_DIR / "var")))

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "channels",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_tasks_db",
    "marketplace",
    "providers",
    "auctions",
    "segmentation",
    "billing",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "marketplace.middleware.CurrentOrganizationMiddleware",
    "marketplace.middleware.VanishedRowMiddleware",
]

ROOT_URLCONF = "marketplace.urls"
ASGI_APPLICATION = "marketplace.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.csp",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "marketplace.context_processors.organization",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------
VAR_DIR.mkdir(parents=True, exist_ok=True)
if env.str("DATABASE_URL", default=""):
    DATABASES = {"default": env.db("DATABASE_URL")}
    # Persistent connections: the websocket consumers' database thread would otherwise open
    # a new connection for every bid.
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": VAR_DIR / "db.sqlite3",
            "OPTIONS": {
                # The embedded worker thread and the server write at once: WAL lets readers go
                # on, IMMEDIATE transactions take the write lock up front instead of failing.
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
            # A file, not memory, so worker processes started by tests see the same data; one
            # per test run, so runs side by side don't delete each other's database.
            "TEST": {"NAME": str(VAR_DIR / f"test-db-{os.getpid()}.sqlite3")},
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
IS_POSTGRES = DATABASES["default"]["ENGINE"].endswith("postgresql")

# --- Redis, channel layer, tasks ------------------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")

if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                # redis-py 8 gives up on a reply after 5 s by default, exactly as long as
                # channels-redis's blocking receive waits (redis/redis-py#4091), so idle
                # websockets would drop: wait longer, and still notice a Redis that hangs.
                "hosts": [
                    {"address": REDIS_URL, "socket_timeout": 10, "socket_connect_timeout": 0.5}
                ],
                "prefix": env.str("CHANNELS_PREFIX", default="sx"),
            },
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

TASK_BACKEND = env.str("TASK_BACKEND", default="rq" if REDIS_URL else "db")
if TASK_BACKEND == "rq":
    if not REDIS_URL:
        raise environ.ImproperlyConfigured("TASK_BACKEND=rq needs REDIS_URL")
    INSTALLED_APPS.append("django_rq")
    TASKS = {"default": {"BACKEND": "django_tasks_rq.RQBackend", "QUEUES": ["default"]}}
    RQ_QUEUES = {"default": {"URL": REDIS_URL, "DEFAULT_TIMEOUT": 3600}}
elif TASK_BACKEND == "db":
    TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["default"]}}
else:
    raise environ.ImproperlyConfigured(f"TASK_BACKEND must be 'db' or 'rq', not {TASK_BACKEND!r}")

# A task whose worker stops renewing its lease for this long is re-queued.
TASK_LEASE_SECONDS = env.float("TASK_LEASE_SECONDS", default=60.0)
# A task re-queued this many times is given up and marked failed.
TASK_MAX_ATTEMPTS = env.int("TASK_MAX_ATTEMPTS", default=5)
# Jobs (segmentation): where their files live, the largest capture accepted, how long a
# partner's claim on a work item lasts, how often an item may be tried, the queue of their
# tasks, and the slack allowed before a slow job counts as a breach of the block's min rate.
JOB_STORAGE_DIR = Path(env.str("JOB_STORAGE_DIR", default=str(VAR_DIR / "jobs")))
JOB_UPLOAD_MAX_BYTES = env.int("JOB_UPLOAD_MAX_BYTES", default=2 * 1024**3)
WORK_CLAIM_SECONDS = env.float("WORK_CLAIM_SECONDS", default=300.0)
WORK_MAX_ATTEMPTS = env.int("WORK_MAX_ATTEMPTS", default=5)
JOBS_QUEUE = env.str("JOBS_QUEUE", default="default")
SLA_GRACE_SECONDS = env.float("SLA_GRACE_SECONDS", default=5.0)
# A job unchanged this long gets its next step queued again (lost after a worker died).
JOB_STALL_SECONDS = env.float("JOB_STALL_SECONDS", default=60.0)
# Service requests: how long a negotiation (a reverse auction among the providers that
# answered) stays open unless the recipient says otherwise.
NEGOTIATION_SECONDS = env.float("NEGOTIATION_SECONDS", default=600.0)
# A request that asks to negotiate opens its negotiation this long after its first answer.
NEGOTIATION_COLLECT_SECONDS = env.float("NEGOTIATION_COLLECT_SECONDS", default=60.0)
# Outbound webhooks to providers: how long to wait for a receiver (per network step), the
# first retry delay (doubled after each failure), and the attempts before a delivery gives up.
WEBHOOK_TIMEOUT_SECONDS = env.float("WEBHOOK_TIMEOUT_SECONDS", default=5.0)
WEBHOOK_RETRY_BASE_SECONDS = env.float("WEBHOOK_RETRY_BASE_SECONDS", default=2.0)
WEBHOOK_MAX_ATTEMPTS = env.int("WEBHOOK_MAX_ATTEMPTS", default=6)
# Webhook receivers on loopback or private addresses (development): off in production, so a
# provider cannot aim the exchange at its internal network.
WEBHOOK_PRIVATE_TARGETS = env.bool("WEBHOOK_PRIVATE_TARGETS", default=DEBUG)

# --- Billing ----------------------------------------------------------------------------------
# Stripe: without a secret key the portal talks to localstripe (a fake Stripe) at
# LOCALSTRIPE_URL, which bin/run and the tests start.
STRIPE_SECRET_KEY = env.str("STRIPE_SECRET_KEY", default="")
STRIPE_PUBLISHABLE_KEY = env.str("STRIPE_PUBLISHABLE_KEY", default="")
STRIPE_WEBHOOK_SECRET = env.str("STRIPE_WEBHOOK_SECRET", default="")
LOCALSTRIPE_URL = env.str("LOCALSTRIPE_URL", default="http://127.0.0.1:8420")
# The exchange's fee on what providers are paid, in basis points (1000 = 10 %).
EXCHANGE_FEE_BPS = env.int("EXCHANGE_FEE_BPS", default=1000)
# Declined charges are tried again after these days (then left failed); unpaid leases block
# further bidding from this many on (0: never).
CHARGE_RETRY_DAYS = tuple(env.list("CHARGE_RETRY_DAYS", cast=int, default=[1, 3, 7]))
UNPAID_LEASES_BLOCK = env.int("UNPAID_LEASES_BLOCK", default=1)
# Run a task worker inside the server process (the embedded default); off when Redis is used
# and separate `manage.py worker` processes do the work.
EMBEDDED_WORKER = env.bool("EMBEDDED_WORKER", default=not REDIS_URL)

# Demo buyers keep bidding on the demo auctions (bin/run turns it on).
DEMO_BIDDING = env.bool("DEMO_BIDDING", default=False)

# --- Auth -----------------------------------------------------------------------------------
AUTH_USER_MODEL = "marketplace.User"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "home"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
INVITATION_VALID_DAYS = 14
# The address people reach the portal at, for links in e-mails.
SITE_URL = env.str("SITE_URL", default="http://127.0.0.1:8000")

# --- E-mail ---------------------------------------------------------------------------------
# EMAIL_URL: consolemail:// (development: messages are printed), smtp://user:pass@host:25,
# smtp+tls://user:pass@host:587, smtp+ssl://user:pass@host:465.
_email = env.email_url("EMAIL_URL", default="consolemail://")
_email_options = {
    option: _email[key]
    for key, option in (
        ("EMAIL_HOST", "host"),
        ("EMAIL_PORT", "port"),
        ("EMAIL_HOST_USER", "username"),
        ("EMAIL_HOST_PASSWORD", "password"),
        ("EMAIL_USE_TLS", "use_tls"),
        ("EMAIL_USE_SSL", "use_ssl"),
    )
    if _email.get(key) not in (None, "")
}
MAILERS = {
    "default": {
        "BACKEND": _email["EMAIL_BACKEND"],
        "OPTIONS": _email_options if _email["EMAIL_BACKEND"].endswith("smtp.EmailBackend") else {},
    }
}
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="Segment Exchange <noreply@localhost>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL

# --- I18N, time -----------------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Static files ---------------------------------------------------------------------------
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(VAR_DIR / "static")))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        # Production runs collectstatic and sets STATIC_MANIFEST for hashed, compressed,
        # forever-cacheable names; without it files are served as they are.
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if env.bool("STATIC_MANIFEST", default=False)
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}
# Without collectstatic (tests, the run command's first start) WhiteNoise finds files itself.
WHITENOISE_USE_FINDERS = env.bool("WHITENOISE_USE_FINDERS", default=True)
MEDIA_ROOT = VAR_DIR / "media"

# --- Security (production values come from the environment) ---------------------------------
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=False)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=False)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
BEHIND_TLS_PROXY = env.bool("BEHIND_TLS_PROXY", default=False)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if BEHIND_TLS_PROXY else None
# Sign-in attempts (marketplace.ratelimit): per client address, and per account typed.
LOGIN_RATE_PER_ADDRESS = env.str("LOGIN_RATE_PER_ADDRESS", default="60/minute")
LOGIN_RATE_PER_ACCOUNT = env.str("LOGIN_RATE_PER_ACCOUNT", default="10/minute")
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Content-Security-Policy of every page: scripts and styles only from the exchange (inline ones
# carry the request's nonce, `{{ csp_nonce }}`), no plugins, no framing. Websockets to the page's
# own host are 'self' (CSP Level 3). Stripe.js's sources (https://js.stripe.com and its API, or
# localstripe's fake Stripe.js) are added per response by marketplace.csp from the Stripe
# settings.
SECURE_CSP = ContentSecurityPolicy(
    {
        "default-src": [CSP.SELF],
        "script-src": [CSP.SELF, CSP.NONCE],
        "style-src": [CSP.SELF, CSP.NONCE],
        "img-src": [CSP.SELF, "data:"],
        "connect-src": [CSP.SELF],
        "object-src": [CSP.NONE],
        "base-uri": [CSP.SELF],
        "form-action": [CSP.SELF],
        "frame-ancestors": [CSP.NONE],
    }
)

# --- REST API -------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "marketplace.api.authentication.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["marketplace.api.permissions.ScopedAccess"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "marketplace.api.problems.problem_exception_handler",
    "DEFAULT_THROTTLE_CLASSES": [
        "marketplace.api.throttling.AnonThrottle",
        "marketplace.api.throttling.PrincipalRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "anon": env.str("API_THROTTLE_ANON", default="120/minute"),
        "user": env.str("API_THROTTLE_USER", default="1200/minute"),
        "bids": env.str("API_THROTTLE_BIDS", default="600/minute"),
    },
    "DATETIME_FORMAT": "iso-8601",
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Segment Exchange partner API",
    "DESCRIPTION": "Auctions of segmentation-service time, jobs and billing for partners.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "ENUM_NAME_OVERRIDES": {
        "AuctionStatusEnum": "auctions.models.AuctionStatus",
        "JobStatusEnum": "segmentation.models.JobStatus",
        "WorkItemStatusEnum": "segmentation.models.WorkItemStatus",
        "WorkItemKindEnum": "segmentation.models.WorkItemKind",
        "MemberKindEnum": "auctions.models.MemberKind",
        "MemberRoleEnum": "auctions.models.MemberRole",
        "MemberStatusEnum": "auctions.models.MemberStatus",
        "GroupOfferStatusEnum": "auctions.models.GroupOfferStatus",
    },
}

CACHES = (
    {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            # a Redis that stops answering must not hang sign-in and bids (they go on
            # without rate limits, marketplace.ratelimit) nor the readiness probe
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        }
    }
    if REDIS_URL
    else {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        "daphne": {"level": "WARNING"},
        "django.channels.server": {"level": "WARNING"},
        # the Stripe library logs every request at INFO
        "stripe": {"level": "WARNING"},
    },
}
