"""genreweb settings, all from the environment with safe local defaults.

- DATABASE_URL unset  -> SQLite file under GENREWEB_DATA_DIR (default ./var)
- CELERY_BROKER_URL unset -> kombu filesystem broker under the same folder
- AWS_STORAGE_BUCKET_NAME set -> media on S3-compatible storage via django-storages
"""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DATA_DIR = Path(os.environ.get("GENREWEB_DATA_DIR", BASE_DIR / "var")).resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)

DEV_SECRET_KEY = "genreweb-development-secret-key-do-not-use-in-production"
DEBUG = env_bool("DEBUG", default=False)
PRODUCTION = env_bool("GENREWEB_PRODUCTION", default=False)
SECRET_KEY = os.environ.get("SECRET_KEY", DEV_SECRET_KEY)
if PRODUCTION and (SECRET_KEY == DEV_SECRET_KEY or len(SECRET_KEY) < 32):
    raise ImproperlyConfigured(
        "GENREWEB_PRODUCTION is set but SECRET_KEY is the development key (or shorter than 32 "
        "characters). Set a long random SECRET_KEY in the environment."
    )
if PRODUCTION and DEBUG:
    raise ImproperlyConfigured("DEBUG must be off when GENREWEB_PRODUCTION is set.")

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "" if PRODUCTION else "localhost,127.0.0.1,[::1],testserver")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    # Swagger UI and ReDoc as static files, so /api/docs/ works without internet.
    "drf_spectacular_sidecar",
    "base",
    "catalog",
    "ml",
    "workers",
    # Outgoing webhooks (above workers: it turns base.events into signed deliveries).
    "webhooks",
    # Benchmark and demo tooling (management commands only); no app imports it.
    "bench",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # A NUL character in the path or query string is a 400, never a query that fails (500).
    "base.text_input.RejectNulMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "genreweb.urls"
WSGI_APPLICATION = "genreweb.wsgi.application"
ASGI_APPLICATION = "genreweb.asgi.application"

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

# --- Database -------------------------------------------------------------
DATABASE_URL = os.environ.get("DATABASE_URL", "").strip()
if DATABASE_URL:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60)}
else:
    # WAL lets pages read while a worker writes (readers never wait for a writer), and with
    # synchronous=NORMAL a commit needs no fsync of the main file. "delete" (SQLite's classic
    # rollback journal) is the choice on network filesystems, where WAL does not work.
    SQLITE_JOURNAL_MODE = os.environ.get("GENREWEB_SQLITE_JOURNAL_MODE", "wal").strip().lower()
    if SQLITE_JOURNAL_MODE not in {"wal", "delete", "truncate", "persist"}:
        raise ImproperlyConfigured("GENREWEB_SQLITE_JOURNAL_MODE must be wal, delete, truncate or persist.")
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": DATA_DIR / "genreweb.sqlite3",
            "OPTIONS": {
                # Web server and worker share the file: wait up to 30 s for a lock (busy
                # timeout) instead of failing; IMMEDIATE takes the write lock at BEGIN, so a
                # transaction never fails half-way when it upgrades from reading to writing.
                "timeout": 30,
                "transaction_mode": "IMMEDIATE",
                "init_command": (
                    f"PRAGMA journal_mode={SQLITE_JOURNAL_MODE};"
                    f"PRAGMA synchronous={'NORMAL' if SQLITE_JOURNAL_MODE == 'wal' else 'FULL'}"
                ),
            },
        }
    }
# Lets several test runs share one Postgres server without clobbering each other's test DB.
if os.environ.get("GENREWEB_TEST_DB_NAME"):
    DATABASES["default"].setdefault("TEST", {})["NAME"] = os.environ["GENREWEB_TEST_DB_NAME"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "login"
# Anonymous visitors see only the login page unless read-only browsing is switched on.
GENREWEB_ANONYMOUS_READ = env_bool("GENREWEB_ANONYMOUS_READ", default=False)

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Static and media -----------------------------------------------------
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", DATA_DIR / "staticfiles"))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
MEDIA_URL = os.environ.get("MEDIA_URL", "/media/")
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT", DATA_DIR / "media"))

AWS_STORAGE_BUCKET_NAME = os.environ.get("AWS_STORAGE_BUCKET_NAME", "").strip()
if AWS_STORAGE_BUCKET_NAME:
    default_storage = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": AWS_STORAGE_BUCKET_NAME,
            "endpoint_url": os.environ.get("AWS_S3_ENDPOINT_URL") or None,
            "region_name": os.environ.get("AWS_S3_REGION_NAME") or None,
            "access_key": os.environ.get("AWS_ACCESS_KEY_ID") or None,
            "secret_key": os.environ.get("AWS_SECRET_ACCESS_KEY") or None,
            "file_overwrite": False,
            "default_acl": None,
            # Posters are private: every URL handed out is signed and expires soon.
            # Model artifacts are never linked (see catalog.models.Poster.display_url).
            "querystring_auth": True,
            "querystring_expire": int(os.environ.get("GENREWEB_MEDIA_URL_TTL_S", "300")),
        },
    }
else:
    default_storage = {"BACKEND": "django.core.files.storage.FileSystemStorage"}
STORAGES = {
    "default": default_storage,
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if PRODUCTION
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}

# Uploads: refuse huge bodies early; image checks live in catalog.images.
DATA_UPLOAD_MAX_MEMORY_SIZE = 12 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 12 * 1024 * 1024

# --- Catalog / preprocessing ---------------------------------------------
# Largest poster a person may upload (API and predict page); checked before decoding.
GENREWEB_UPLOAD_MAX_BYTES = int(os.environ.get("GENREWEB_UPLOAD_MAX_BYTES", 10 * 1024 * 1024))
# Pixel limit for those uploads, checked from the header before any pixel is decoded: lower than
# the import limit, since anyone allowed to predict can send one per request.
GENREWEB_UPLOAD_MAX_PIXELS = int(os.environ.get("GENREWEB_UPLOAD_MAX_PIXELS", "12000000"))
# Folders that imports given through the web UI, the API or a job may read from (":"-separated;
# symlinks and ".." are resolved before the check). Management commands run on the shell may
# read any path.
GENREWEB_IMPORT_ROOTS = [
    Path(item).expanduser().resolve()
    for item in os.environ.get("GENREWEB_IMPORT_ROOTS", str(DATA_DIR / "imports")).split(":")
    if item.strip()
]
if "GENREWEB_IMPORT_ROOTS" not in os.environ:
    (DATA_DIR / "imports").mkdir(parents=True, exist_ok=True)
# The development set beside the project (<project>/../shared/data/devset). When that folder
# holds a movies.csv it is an import root too (catalog.importers.registry.import_roots) and
# the empty catalog offers staff a one-click import of it; otherwise it changes nothing.
GENREWEB_DEVSET_DIR = BASE_DIR.parent / "shared" / "data" / "devset"

# Folders a model config given through the web UI, the API or a job may name as a local
# encoder (text_model_path: a sentence-transformers folder; image_model_path: a torchvision
# checkpoint). ":"-separated; empty (the default) refuses every such path.
GENREWEB_ENCODER_ROOTS = [
    Path(item).expanduser().resolve()
    for item in os.environ.get("GENREWEB_ENCODER_ROOTS", "").split(":")
    if item.strip()
]
GENREWEB_POSTER_MAX_PIXELS = int(os.environ.get("GENREWEB_POSTER_MAX_PIXELS", 40_000_000))
GENREWEB_POSTER_MIN_SIDE = int(os.environ.get("GENREWEB_POSTER_MIN_SIDE", 64))
GENREWEB_POSTER_DERIVATIVE_SIZE = int(os.environ.get("GENREWEB_POSTER_DERIVATIVE_SIZE", 224))
# Genre names outside the vocabulary (catalog/genres.py) one import may create, and only
# when it is run with allow_new_genres=true; otherwise unknown names are reported, not created.
GENREWEB_MAX_NEW_GENRES = int(os.environ.get("GENREWEB_MAX_NEW_GENRES", 50))
# Genres shown in the insight page's co-occurrence heatmap and share table (the most used).
GENREWEB_INSIGHT_MAX_GENRES = int(os.environ.get("GENREWEB_INSIGHT_MAX_GENRES", 30))
# The "model unsure" review queue: one batch per label audit, the movies whose audit scores
# expect the most wrong genre decisions: at most this many, at most this share of the
# audited movies, and each expecting at least this many wrong decisions (ml.services.review).
GENREWEB_UNSURE_BATCH = int(os.environ.get("GENREWEB_UNSURE_BATCH", 100))
GENREWEB_UNSURE_SHARE = float(os.environ.get("GENREWEB_UNSURE_SHARE", 0.05))
GENREWEB_UNSURE_MIN_EXPECTED_ERRORS = float(os.environ.get("GENREWEB_UNSURE_MIN_EXPECTED_ERRORS", 1.0))
# keep | convert | exclude
GENREWEB_GRAYSCALE_POLICY = os.environ.get("GENREWEB_GRAYSCALE_POLICY", "convert")
TMDB_API_KEY = os.environ.get("TMDB_API_KEY", "")
TMDB_BEARER_TOKEN = os.environ.get("TMDB_BEARER_TOKEN", "")
# The TMDB API the importer talks to (and sends the key to): a setting, never a job parameter.
TMDB_API_BASE = os.environ.get("TMDB_API_BASE", "https://api.themoviedb.org/3")

# --- ML --------------------------------------------------------------------
GENREWEB_ML_CACHE_DIR = Path(os.environ.get("GENREWEB_ML_CACHE_DIR", DATA_DIR / "ml-cache"))
# PyTorch threads per worker pool process (0: PyTorch's default, one per core). Set it to
# cores / processes when several CPU worker processes share a machine.
GENREWEB_TORCH_THREADS = int(os.environ.get("GENREWEB_TORCH_THREADS", "0") or 0)

# --- Celery -----------------------------------------------------------------
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "").strip()
CELERY_EMBEDDED_BROKER = not CELERY_BROKER_URL
BROKER_DIR = DATA_DIR / "broker"
if CELERY_EMBEDDED_BROKER:
    # kombu's filesystem transport: a real broker with no server, so a real worker
    # process consumes real messages on a laptop.
    for sub in ("out", "processed", "control"):
        (BROKER_DIR / sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_URL = "filesystem://"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "out"),
        "data_folder_out": str(BROKER_DIR / "out"),
        "processed_folder": str(BROKER_DIR / "processed"),
        # exchange -> queue bindings; kombu's default is ./control in the working directory
        "control_folder": str(BROKER_DIR / "control"),
        "store_processed": False,
    }
    (DATA_DIR / "celery-results").mkdir(parents=True, exist_ok=True)
    CELERY_RESULT_BACKEND = os.environ.get("CELERY_RESULT_BACKEND", f"file://{DATA_DIR / 'celery-results'}")
else:
    # Longer than the longest job (training: hard limit 6 h), so Redis never
    # redelivers a task that is still running.
    # GENREWEB_VISIBILITY_TIMEOUT_S exists for fault tests that need a quick redelivery.
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": int(os.environ.get("GENREWEB_VISIBILITY_TIMEOUT_S", 8 * 3600))
    }
    if CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"] < 600:
        # A short timeout only helps if unacked messages are also scanned for often.
        CELERY_BROKER_TRANSPORT_OPTIONS.update(unacked_restore_interval=1, unacked_restore_throttle=1)
    if os.environ.get("GENREWEB_REDIS_KEY_PREFIX"):
        # Keeps runs that share one Redis server apart (tests/conftest.py sets it per run).
        CELERY_BROKER_TRANSPORT_OPTIONS["global_keyprefix"] = os.environ["GENREWEB_REDIS_KEY_PREFIX"]
    CELERY_RESULT_BACKEND = os.environ.get("CELERY_RESULT_BACKEND", CELERY_BROKER_URL)
CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS = CELERY_BROKER_TRANSPORT_OPTIONS
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TRACK_STARTED = True
CELERY_RESULT_EXPIRES = 7 * 24 * 3600
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", default=False)
# Jobs (workers/): shard size for batch prediction; the stale-job sweep re-sends queued jobs
# whose broker message vanished (e.g. Redis restarted) after GENREWEB_REQUEUE_GRACE_S, and runs
# in every worker at start and then every GENREWEB_REQUEUE_INTERVAL_S (0 = only at start).
GENREWEB_PREDICT_SHARD_SIZE = int(os.environ.get("GENREWEB_PREDICT_SHARD_SIZE", 512))
# The model config whose frozen encoders (and text input) embed_catalog fills the embedding
# store for (a preset name; empty: the recommended preset, the platform's default model);
# prune_embeddings keeps its spaces and those of every model version.
GENREWEB_EMBED_CONFIG = os.environ.get("GENREWEB_EMBED_CONFIG", "")
GENREWEB_REQUEUE_GRACE_S = float(os.environ.get("GENREWEB_REQUEUE_GRACE_S", 120))
GENREWEB_REQUEUE_INTERVAL_S = float(os.environ.get("GENREWEB_REQUEUE_INTERVAL_S", 60))
# A running job or shard writes a heartbeat every GENREWEB_HEARTBEAT_INTERVAL_S; the sweep
# treats one silent for GENREWEB_HEARTBEAT_TIMEOUT_S as lost (worker killed, machine gone):
# shards are re-sent, other jobs fail (or end cancelled when that was asked). Lost work is
# back within about HEARTBEAT_TIMEOUT_S + REQUEUE_INTERVAL_S, whatever the Redis visibility
# timeout.
GENREWEB_HEARTBEAT_INTERVAL_S = float(os.environ.get("GENREWEB_HEARTBEAT_INTERVAL_S", 15))
GENREWEB_HEARTBEAT_TIMEOUT_S = float(os.environ.get("GENREWEB_HEARTBEAT_TIMEOUT_S", 120))
# Sending a job's message from a web request gives up after this many seconds (no retry);
# the job stays queued and the sweep sends it once the broker is back.
GENREWEB_ENQUEUE_TIMEOUT_S = float(os.environ.get("GENREWEB_ENQUEUE_TIMEOUT_S", 1))

# --- Outgoing webhooks (webhooks/) --------------------------------------------
# Deliveries go only to public addresses, plus the networks listed here (comma-separated CIDRs,
# e.g. "127.0.0.1/32" for a receiver on this machine); link-local (169.254.0.0/16, metadata
# services) is never allowed. Each attempt waits at most TIMEOUT_S; a failing delivery is
# tried MAX_ATTEMPTS times, RETRY_BASE_S x 4^(n-1) apart (30 s, 2 min, 8 min, 32 min).
GENREWEB_WEBHOOK_ALLOWED_NETWORKS = os.environ.get("GENREWEB_WEBHOOK_ALLOWED_NETWORKS", "")
GENREWEB_WEBHOOK_TIMEOUT_S = float(os.environ.get("GENREWEB_WEBHOOK_TIMEOUT_S", 5))
GENREWEB_WEBHOOK_MAX_ATTEMPTS = int(os.environ.get("GENREWEB_WEBHOOK_MAX_ATTEMPTS", 5))
GENREWEB_WEBHOOK_RETRY_BASE_S = float(os.environ.get("GENREWEB_WEBHOOK_RETRY_BASE_S", 30))
# Succeeded and failed deliveries older than this are deleted by the workers' sweep (0: keep all).
GENREWEB_WEBHOOK_RETENTION_DAYS = float(os.environ.get("GENREWEB_WEBHOOK_RETENTION_DAYS", 30))

# --- Cache (throttles) -------------------------------------------------------
# Throttle counters must be shared by every web process: the database cache by default
# (its table is created by `migrate`, see genreweb/apps.py), Redis when GENREWEB_CACHE_URL
# is a redis:// URL or, unset, when Celery uses Redis. GENREWEB_CACHE_URL=locmem:// keeps
# counters per process (tests only).
GENREWEB_CACHE_URL = os.environ.get("GENREWEB_CACHE_URL", "").strip()
if not GENREWEB_CACHE_URL and not CELERY_EMBEDDED_BROKER and CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    GENREWEB_CACHE_URL = CELERY_BROKER_URL
GENREWEB_CACHE_TABLE = "genreweb_cache"
if GENREWEB_CACHE_URL.startswith(("redis://", "rediss://", "unix://")):
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": GENREWEB_CACHE_URL,
            "KEY_PREFIX": os.environ.get("GENREWEB_REDIS_KEY_PREFIX", "") + "genreweb-cache",
        }
    }
elif GENREWEB_CACHE_URL.startswith("locmem://"):
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
elif GENREWEB_CACHE_URL in ("", "db://"):
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": GENREWEB_CACHE_TABLE}}
else:
    raise ImproperlyConfigured(
        f"GENREWEB_CACHE_URL must be redis://..., db:// or locmem://, not {GENREWEB_CACHE_URL!r}"
    )

# --- Accounts -----------------------------------------------------------------
# API tokens stop working this many hours after they were created (0: never expire).
GENREWEB_TOKEN_TTL_HOURS = float(os.environ.get("GENREWEB_TOKEN_TTL_HOURS", "720"))
# Failed logins allowed per minute, per username and per client IP, before the login form
# refuses further attempts for that username / IP (others are not affected).
GENREWEB_LOGIN_RATE = os.environ.get("GENREWEB_LOGIN_RATE", "10/min")

# --- REST API ---------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "base.authentication.ExpiringTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    # Documents the error responses of every operation (genreweb/schema.py).
    "DEFAULT_SCHEMA_CLASS": "base.schema.AutoSchema",
    # JSON bodies with a NUL character are a 400 (genreweb/text_input.py).
    "DEFAULT_PARSER_CLASSES": [
        "base.text_input.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_THROTTLE_RATES": {"predict": os.environ.get("GENREWEB_PREDICT_RATE", "60/min")},
}
SPECTACULAR_SETTINGS = {
    "TITLE": "genreweb API",
    "DESCRIPTION": "Movies, genre labels, jobs, model versions and predictions.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Deny by default: the schema and its docs pages map every operation, so only a signed-in
    # user (session or token) reads them.
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Several models have a "status" choice set; name each enum after its model.
    "ENUM_NAME_OVERRIDES": {
        "RunStatusEnum": "base.runs.RunStatus",  # jobs, shards, imports, training runs
        "PosterStatusEnum": "catalog.models.Poster.Status",
        "LabelOriginEnum": "catalog.models.LabelOrigin",
        "LabelSetOriginEnum": "catalog.models.LABEL_SET_ORIGINS",
        "ChangeSetKindEnum": "catalog.models.ChangeSet.Kind",
        "JobKindEnum": "workers.kinds.kind_choices",
        "LabelIssueKindEnum": "ml.models.LabelIssue.Kind",
        "LabelIssueResolutionEnum": "ml.models.LabelIssue.Resolution",
        "ReviewVerdictEnum": "ml.models.LabelReview.Verdict",
        "LabelChangeActionEnum": "catalog.models.LabelChange.Action",
        "ReviewActionEnum": "ml.services.review.REVIEW_ACTIONS",
    },
}

# --- Transport security -------------------------------------------------------
# Production defaults: HTTPS only (redirect + one year of HSTS), secure cookies. Each can be
# changed from the environment, e.g. SECURE_SSL_REDIRECT=0 when the proxy already redirects.
SECURE_CONTENT_TYPE_NOSNIFF = True
SESSION_COOKIE_HTTPONLY = True
if PRODUCTION:
    SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", True)
    CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", True)
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", "31536000"))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
    # /healthz answers plain HTTP for load balancers and compose health checks.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
else:
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
    SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", "0"))
# X-Forwarded-Proto decides whether a request counts as HTTPS only when the proxy in front is
# known to set it (and strip it from clients); trusting it otherwise lets anyone claim HTTPS.
if env_bool("GENREWEB_TRUST_X_FORWARDED_PROTO", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {"httpx": {"level": "WARNING"}},
}
