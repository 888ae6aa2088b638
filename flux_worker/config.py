"""Configuration: every environment variable, its default and its meaning, read once at start.

`Config.from_env()` is the only place that reads the environment. A bad value raises
`ConfigError` naming the variable, so the service refuses to start instead of failing
per request. `VARIABLES` is the single list the README's table is checked against.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Mapping
from urllib.parse import urlsplit

from .catalog.spec import GPT_IMAGE_ALIASES
from .cost.accounts import Account, read_accounts
from .cost.books import BudgetRules, parse_key_budgets, parse_neurons
from .storage.location import S3, CountersLocation, S3Options, StorageLocation

DEFAULT_FLUX_MODEL = "@cf/black-forest-labs/flux-1-schnell"
DEFAULT_CF_API_BASE = "https://api.cloudflare.com/client/v4"
# A current, cheap text model that Cloudflare keeps (llama-3.1-8b-instruct was deprecated
# on 2026-05-30; the -fast variant stays).
DEFAULT_TRANSLATE_MODEL = "@cf/meta/llama-3.1-8b-instruct-fast"
LANGUAGES = ("en", "de", "zh-cn", "zh-hant", "ja", "es", "fr", "ru")
BACKENDS = ("cloudflare", "demo", "openai")
# How answers link to images: through this service, straight to a public bucket, or presigned.
IMAGE_LINK_MODES = ("service", "direct", "presigned")

TRUE_WORDS = {"1", "true", "yes", "on"}
FALSE_WORDS = {"0", "false", "no", "off", ""}


class ConfigError(ValueError):
    """A configuration value is missing or malformed; the message names the variable."""


@dataclass(frozen=True)
class Variable:
    """One environment variable: its name, default (as the text a user would set) and help."""

    name: str
    default: str
    help: str


VARIABLES: tuple[Variable, ...] = (
    Variable("API_KEY", "", "Client key(s) for `Authorization: Bearer`; comma-separated for several. Required with a real backend; without it the demo backend needs no key."),
    Variable("CF_ACCOUNT_ID", "", "Cloudflare account id for Workers AI. Without it (and the token) the offline demo backend runs."),
    Variable("CF_API_TOKEN", "", "Cloudflare API token with Workers AI permission."),
    Variable("CF_API_BASE", DEFAULT_CF_API_BASE, "Cloudflare API base; the service calls `{CF_API_BASE}/accounts/{CF_ACCOUNT_ID}/ai/run/{model}`. Point it at a proxy or a local fake."),
    Variable("CF_AI_GATEWAY", "", "Cloudflare AI Gateway base URL (`https://gateway.ai.cloudflare.com/v1/{account}/{gateway}`); when set, Workers AI calls go through it."),
    Variable("CF_AI_GATEWAY_TOKEN", "", "Gateway token, sent as `cf-aig-authorization: Bearer ...` (authenticated gateways)."),
    Variable("CF_IS_TRANSLATE", "false", "`true`: translate and enrich the prompt with an LLM before generating."),
    Variable("PROMPT_OPTIMIZATION", "", "Alias of `CF_IS_TRANSLATE` (used when `CF_IS_TRANSLATE` is unset)."),
    Variable("EXTERNAL_API_BASE", "", "OpenAI-compatible LLM base URL for translation, with or without `/v1`. Unset: Cloudflare's own chat endpoint is used."),
    Variable("EXTERNAL_MODEL", "", "Model name for `EXTERNAL_API_BASE`."),
    Variable("EXTERNAL_API_KEY", "", "API key for `EXTERNAL_API_BASE`."),
    Variable("TRANSLATE_MODEL", DEFAULT_TRANSLATE_MODEL, "Workers AI text model used for translation when `EXTERNAL_API_BASE` is unset."),
    Variable("SYSTEM_MESSAGE", "", "Replaces the built-in system message for prompt translation."),
    Variable("TRANSLATE_TIMEOUT", "20", "Seconds to wait for the translation LLM before falling back to the original prompt."),
    Variable("FLUX_MODEL", DEFAULT_FLUX_MODEL, "Default image model (id or alias)."),
    Variable("FLUX_NUM_STEPS", "4", "Diffusion steps sent to the model, clamped to the model's range."),
    Variable("GPT_IMAGE_ALIASES", ",".join(GPT_IMAGE_ALIASES), "Comma-separated model names that mean `FLUX_MODEL` and, like OpenAI's GPT image models, answer the Images API with `b64_json` unless `response_format: \"url\"` is asked; empty for none. (`dall-e-2` and `dall-e-3` are always aliases and answer links.)"),
    Variable("IMAGE_MODELS", "", "Comma-separated model ids or aliases offered; empty offers the whole catalog."),
    Variable("IMAGE_BACKEND", "", "`cloudflare`, `openai` or `demo`; empty picks `cloudflare` when credentials are set, else `demo`."),
    Variable("IMAGE_API_BASE", "", "For `IMAGE_BACKEND=openai`: base URL of an OpenAI-compatible Images API."),
    Variable("IMAGE_API_KEY", "", "For `IMAGE_BACKEND=openai`: its API key."),
    Variable("MAX_IMAGES", "4", "Largest `n` accepted by the Images API."),
    Variable("IMAGE_EXPIRATION", "1800",
             "Seconds an image is kept and served; `0` keeps images for ever (bounded by "
             "`STORAGE_MAX_BYTES`, Redis's maxmemory or the bucket)."),
    Variable("STORAGE_URL", "disk://data",
             "`memory://`, `disk://<relative path>`, `disk:///<absolute path>`, "
             "`redis://[:password@]host:port/db` (`rediss://` for TLS) or "
             "`s3://bucket/optional/prefix` (S3, R2, MinIO)."),
    Variable("STORAGE_MAX_BYTES", "1073741824", "Upper bound of the bytes kept by `memory://` and `disk://` storage (oldest go first)."),
    Variable("COUNTERS_URL", "",
             "Where rate-limit and budget counters live: `redis://…`, `rediss://…`, a "
             "directory (`disk://…` or a path) or `memory://`. Empty: beside the images for "
             "memory, disk and Redis "
             "storage; `./data/counters` for S3 (start-up warns that hosts do not share counts)."),
    Variable("IMAGE_LINKS", "service",
             "Image links in answers: `service` (`/image/<key>` through this service), `direct` "
             "(`S3_PUBLIC_BASE_URL/<object key>`) or `presigned` (presigned S3 GET, at most 7 "
             "days)."),
    Variable("S3_ENDPOINT_URL", "",
             "S3 API endpoint for `s3://` storage: `https://<account>.r2.cloudflarestorage.com` "
             "for R2, a MinIO address; empty: AWS S3."),
    Variable("S3_PUBLIC_BASE_URL", "",
             "For `IMAGE_LINKS=direct`: public base URL of the bucket (an R2 public bucket, "
             "custom domain or CDN); links are `<base>/<prefix><key>`."),
    Variable("AWS_REGION", "",
             "Region of the bucket for `s3://` storage (`auto` for R2); empty: boto3's default."),
    Variable("AWS_ACCESS_KEY_ID", "",
             "Access key id for `s3://` storage; empty: boto3's usual credential chain (instance"
             " role, ~/.aws)."),
    Variable("AWS_SECRET_ACCESS_KEY", "", "Secret access key for `s3://` storage."),
    Variable("PUBLIC_BASE_URL", "", "Base of image links (`https://img.example.com`); empty derives it from the request."),
    Variable("TRUSTED_PROXIES", "127.0.0.1,::1", "Comma-separated addresses/networks whose `X-Forwarded-Proto`/`-Host`/`-For` are believed; `*` trusts all, empty none."),
    Variable("LANGUAGE", "en", "Language of the chat answer: en, de, zh-cn, zh-hant, ja, es, fr, ru."),
    Variable("CORS_ORIGINS", "*", "Allowed CORS origins, comma-separated, or `*`."),
    Variable("UPSTREAM_TIMEOUT", "120", "Seconds to wait for one image generation upstream."),
    Variable("UPSTREAM_RETRIES", "2", "Retries of a capacity error (3040), 5xx or connection failure, with backoff and jitter."),
    Variable("RATE_LIMIT", "", "Per API key limits such as `30/minute;500/day`; empty: none."),
    Variable("MAX_INFLIGHT", "", "Images one process generates at once before answering 503 with `Retry-After`; empty: `GUNICORN_THREADS` minus an eighth (at least 4 threads stay free for health checks and quick requests); 0: no cap."),
    Variable("GUNICORN_THREADS", "256", "Threads per process: each holds one generation in flight (see docs/benchmarks.md)."),
    Variable("REQUEST_READ_TIMEOUT", "30", "Seconds a client has to send a whole request (request line, headers and body); a slower connection is closed. Requests are gathered without holding a thread, so slow clients cannot starve the others."),
    Variable("MAX_BODY_BYTES", "1048576", "Largest request body accepted (413 above it)."),
    Variable("LOG_LEVEL", "INFO", "Logging level (DEBUG, INFO, WARNING, ERROR)."),
    Variable("CF_ACCOUNTS", "", "Several Cloudflare accounts, used in order: `account_id:token[@neurons],...` (optional daily budget per account), or the path of a file holding that list. Replaces `CF_ACCOUNT_ID` + `CF_API_TOKEN`."),
    Variable("DAILY_NEURONS", "", "Daily budget of the whole service in Workers AI neurons (e.g. `10000`, the free allocation); empty: none. Resets 00:00 UTC."),
    Variable("KEY_DAILY_NEURONS", "", "Default daily budget in neurons of each API key; empty: none."),
    Variable("KEY_BUDGETS", "", "Daily budgets of single API keys: `sk-alice=3000,sk-bob=500` (neurons); they override `KEY_DAILY_NEURONS`."),
    Variable("ADMIN_API_KEY", "", "Key for `GET /v1/usage` with every key's (by short hash) and every account's spend; not a client key."),
    Variable("SHOW_COST", "false", "`true`: the chat answer ends with one line giving the neurons the image cost and its price at the paid rate."),
    # --- image input (issue 11) -------------------------------------------------------------------
    Variable("EDIT_MODEL", "flux-2-klein-4b", "Model that draws a request bringing images when the named model takes none; empty: such a request is a 400."),
    Variable("CHAT_EDITS", "explicit", "`explicit`: a chat message edits only with attached images or `--edit`; `auto`: the translation LLM also decides whether a follow-up edits the last image (without an LLM, as `explicit`)."),
    Variable("FETCH_REMOTE_IMAGES", "false", "`true`: image links to other sites are downloaded (public addresses only, short timeout); off, only uploads, `data:` URLs and this service's own links are read."),
    Variable("MAX_INPUT_IMAGE_BYTES", "10485760", "Largest single input image (upload, `data:` URL or download), in bytes."),
    Variable("MAX_UPLOAD_BYTES", "20971520", "Largest multipart body of `/v1/images/edits` and `/v1/images/variations` (413 above it); JSON bodies keep `MAX_BODY_BYTES`."),
    # --- end image input --------------------------------------------------------------------------
)
_DEFAULTS = {v.name: v.default for v in VARIABLES}


@dataclass(frozen=True)
class Config:
    """The whole configuration of one service instance, validated.

    No field has a default of its own: `from_env` fills every one, and the defaults live in
    VARIABLES alone (the table the README is checked against).
    """

    api_keys: tuple[str, ...]
    cf_account_id: str
    cf_api_token: str
    cf_api_base: str
    cf_ai_gateway: str
    cf_ai_gateway_token: str
    translate: bool
    external_api_base: str
    external_model: str
    external_api_key: str
    translate_model: str
    system_message: str
    translate_timeout: float
    flux_model: str
    flux_num_steps: int
    gpt_image_aliases: tuple[str, ...]
    image_models: tuple[str, ...]
    image_backend: str
    image_api_base: str
    image_api_key: str
    max_images: int
    image_expiration: int
    storage: StorageLocation
    storage_max_bytes: int
    counters: CountersLocation
    image_links: str
    s3_endpoint_url: str
    s3_public_base_url: str
    aws_region: str
    aws_access_key_id: str
    aws_secret_access_key: str = field(repr=False)
    public_base_url: str
    trusted_proxies: tuple[str, ...]
    language: str
    cors_origins: tuple[str, ...]
    upstream_timeout: float
    upstream_retries: int
    rate_limit: str
    max_inflight: int
    gunicorn_threads: int
    request_read_timeout: float
    max_body_bytes: int
    log_level: str
    # --- image input (issue 11) -------------------------------------------------------------------
    edit_model: str
    chat_edits: str
    fetch_remote_images: bool
    max_input_image_bytes: int
    max_upload_bytes: int
    # --- end image input --------------------------------------------------------------------------
    cf_accounts: tuple[Account, ...]
    daily_neurons: float | None
    key_daily_neurons: float | None
    key_budgets: tuple[tuple[str, float], ...]
    admin_api_key: str
    show_cost: bool

    @property
    def cloudflare_accounts(self) -> tuple[Account, ...]:
        """The Cloudflare accounts in order: CF_ACCOUNTS, or CF_ACCOUNT_ID + CF_API_TOKEN."""
        if self.cf_accounts:
            return self.cf_accounts
        if self.cf_account_id and self.cf_api_token:
            return (Account(self.cf_account_id, self.cf_api_token),)
        return ()

    def budget_rules(self) -> BudgetRules:
        """The daily budgets as the books apply them."""
        return BudgetRules(self.daily_neurons, self.key_daily_neurons, dict(self.key_budgets))

    @property
    def auth_required(self) -> bool:
        """Whether requests must carry one of the API keys."""
        return bool(self.api_keys)

    @property
    def s3(self) -> S3Options:
        """How to reach the S3-compatible store of `s3://` storage."""
        return S3Options(region=self.aws_region, endpoint_url=self.s3_endpoint_url,
                         access_key_id=self.aws_access_key_id,
                         secret_access_key=self.aws_secret_access_key)

    def secrets(self) -> tuple[str, ...]:
        """Every secret value, so the log filter can redact them."""
        values = (*self.api_keys, self.cf_api_token, self.external_api_key,
                  self.image_api_key, self.cf_ai_gateway_token, self.admin_api_key,
                  *(a.token for a in self.cf_accounts), self.aws_secret_access_key,
                  _password(self.storage.url), _password(self.counters.url))
        return tuple(v for v in values if v and len(v) >= 4)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> "Config":
        """Read and validate the configuration; raise ConfigError naming the bad variable."""
        env = _Reader(environ)
        api_keys = tuple(k.strip() for k in env.text("API_KEY").split(",") if k.strip())
        translate_raw = environ.get("CF_IS_TRANSLATE")
        translate_name = "CF_IS_TRANSLATE"
        if translate_raw is None and environ.get("PROMPT_OPTIMIZATION") is not None:
            translate_name = "PROMPT_OPTIMIZATION"
        storage = _storage(env.text("STORAGE_URL"))
        cfg = cls(
            api_keys=api_keys,
            cf_account_id=env.text("CF_ACCOUNT_ID"),
            cf_api_token=env.text("CF_API_TOKEN"),
            cf_api_base=env.url("CF_API_BASE").rstrip("/"),
            cf_ai_gateway=env.url("CF_AI_GATEWAY", optional=True).rstrip("/"),
            cf_ai_gateway_token=env.text("CF_AI_GATEWAY_TOKEN"),
            translate=env.boolean(translate_name),
            external_api_base=env.url("EXTERNAL_API_BASE", optional=True),
            external_model=env.text("EXTERNAL_MODEL"),
            external_api_key=env.text("EXTERNAL_API_KEY"),
            translate_model=env.text("TRANSLATE_MODEL") or DEFAULT_TRANSLATE_MODEL,
            system_message=environ.get("SYSTEM_MESSAGE", "").strip(),
            translate_timeout=env.number("TRANSLATE_TIMEOUT", minimum=0.1, maximum=600),
            flux_model=env.text("FLUX_MODEL") or DEFAULT_FLUX_MODEL,
            flux_num_steps=env.integer("FLUX_NUM_STEPS", minimum=1, maximum=100),
            gpt_image_aliases=_model_names("GPT_IMAGE_ALIASES",
                                           env.text("GPT_IMAGE_ALIASES", keep_empty=True)),
            image_models=tuple(m.strip() for m in env.text("IMAGE_MODELS").split(",") if m.strip()),
            image_backend=_pick_backend(env),
            image_api_base=env.url("IMAGE_API_BASE", optional=True),
            image_api_key=env.text("IMAGE_API_KEY"),
            max_images=env.integer("MAX_IMAGES", minimum=1, maximum=10),
            image_expiration=env.integer("IMAGE_EXPIRATION", minimum=0, maximum=366 * 86400),
            storage=storage,
            storage_max_bytes=env.integer("STORAGE_MAX_BYTES", minimum=1 << 20, maximum=1 << 50),
            counters=_counters(env.text("COUNTERS_URL"), storage),
            image_links=env.choice("IMAGE_LINKS", IMAGE_LINK_MODES, lower=True),
            s3_endpoint_url=env.url("S3_ENDPOINT_URL", optional=True).rstrip("/"),
            s3_public_base_url=env.url("S3_PUBLIC_BASE_URL", optional=True).rstrip("/"),
            aws_region=env.text("AWS_REGION"),
            aws_access_key_id=env.text("AWS_ACCESS_KEY_ID"),
            aws_secret_access_key=env.text("AWS_SECRET_ACCESS_KEY"),
            public_base_url=env.url("PUBLIC_BASE_URL", optional=True).rstrip("/"),
            trusted_proxies=_proxies(env.text("TRUSTED_PROXIES", keep_empty=True)),
            language=env.choice("LANGUAGE", LANGUAGES, lower=True),
            cors_origins=tuple(o.strip() for o in env.text("CORS_ORIGINS").split(",") if o.strip()) or ("*",),
            upstream_timeout=env.number("UPSTREAM_TIMEOUT", minimum=1, maximum=3600),
            upstream_retries=env.integer("UPSTREAM_RETRIES", minimum=0, maximum=10),
            rate_limit=_rate_limit(env.text("RATE_LIMIT")),
            max_inflight=_max_inflight(env),
            gunicorn_threads=env.integer("GUNICORN_THREADS", minimum=1, maximum=10000),
            request_read_timeout=env.number("REQUEST_READ_TIMEOUT", minimum=1, maximum=3600),
            max_body_bytes=env.integer("MAX_BODY_BYTES", minimum=1024, maximum=1 << 30),
            log_level=env.choice("LOG_LEVEL", ("DEBUG", "INFO", "WARNING", "ERROR"), upper=True),
            cf_accounts=_accounts(env.text("CF_ACCOUNTS")),
            daily_neurons=env.neurons("DAILY_NEURONS"),
            key_daily_neurons=env.neurons("KEY_DAILY_NEURONS"),
            key_budgets=_key_budgets(env.text("KEY_BUDGETS"), api_keys),
            admin_api_key=env.text("ADMIN_API_KEY"),
            show_cost=env.boolean("SHOW_COST"),
            # image input (issue 11)
            edit_model=env.text("EDIT_MODEL", keep_empty=True),
            chat_edits=env.choice("CHAT_EDITS", ("explicit", "auto"), lower=True),
            fetch_remote_images=env.boolean("FETCH_REMOTE_IMAGES"),
            max_input_image_bytes=env.integer("MAX_INPUT_IMAGE_BYTES", minimum=1024,
                                              maximum=1 << 30),
            max_upload_bytes=env.integer("MAX_UPLOAD_BYTES", minimum=1024, maximum=1 << 31),
        )
        _check_consistency(cfg)
        return cfg


class _Reader:
    """Typed access to environment variables; every error names the variable."""

    def __init__(self, environ: Mapping[str, str]):
        self.environ = environ

    def text(self, name: str, keep_empty: bool = False) -> str:
        if keep_empty and name in self.environ:
            return self.environ[name].strip()
        value = self.environ.get(name, "").strip()
        return value or _DEFAULTS.get(name, "")

    def integer(self, name: str, minimum: int, maximum: int) -> int:
        raw = self.text(name)
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
        if not minimum <= value <= maximum:
            raise ConfigError(f"{name} must be between {minimum} and {maximum}, got {value}")
        return value

    def number(self, name: str, minimum: float, maximum: float) -> float:
        raw = self.text(name)
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(f"{name} must be a number of seconds, got {raw!r}") from None
        if not minimum <= value <= maximum:
            raise ConfigError(f"{name} must be between {minimum:g} and {maximum:g}, got {raw}")
        return value

    def neurons(self, name: str) -> float | None:
        raw = self.text(name)
        if not raw:
            return None
        try:
            return parse_neurons(raw, name)
        except ValueError as exc:
            raise ConfigError(f"{exc} (a daily budget such as 10000)") from None

    def boolean(self, name: str) -> bool:
        raw = self.text(name).lower()
        if raw in TRUE_WORDS:
            return True
        if raw in FALSE_WORDS:
            return False
        raise ConfigError(f"{name} must be true or false, got {self.text(name)!r}")

    def choice(self, name: str, allowed: tuple[str, ...], lower=False, upper=False) -> str:
        raw = self.text(name)
        value = raw.lower() if lower else raw.upper() if upper else raw
        value = value.replace("_", "-") if lower else value
        if value not in allowed:
            raise ConfigError(f"{name} must be one of {', '.join(allowed)}, got {raw!r}")
        return value

    def url(self, name: str, optional: bool = False) -> str:
        raw = self.text(name)
        if not raw and optional:
            return ""
        parts = urlsplit(raw)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(f"{name} must be an http(s) URL such as https://host/path, got {raw!r}")
        return raw


def default_max_inflight(threads: int) -> int:
    """The in-flight cap that leaves threads free for health checks and quick requests."""
    # Every generation holds a gunicorn thread; with all of them taken, /healthz, /readyz and
    # the 503s that tell clients to come back would queue behind generations of a minute.
    spare = max(4, threads // 8)
    return max(1, threads - spare)


def _max_inflight(env: _Reader) -> int:
    if not env.text("MAX_INFLIGHT"):
        return default_max_inflight(env.integer("GUNICORN_THREADS", minimum=1, maximum=10000))
    return env.integer("MAX_INFLIGHT", minimum=0, maximum=100000)


def _pick_backend(env: _Reader) -> str:
    chosen = env.text("IMAGE_BACKEND").lower()
    if chosen:
        if chosen not in BACKENDS:
            raise ConfigError(f"IMAGE_BACKEND must be one of {', '.join(BACKENDS)}, got {chosen!r}")
        return chosen
    has_cf = bool(env.text("CF_ACCOUNT_ID") or env.text("CF_API_TOKEN") or env.text("CF_ACCOUNTS"))
    return "cloudflare" if has_cf else "demo"


def _storage(url: str) -> StorageLocation:
    try:
        return StorageLocation.parse(url)
    except ValueError as exc:
        raise ConfigError(f"STORAGE_URL: {exc}") from None


def _counters(url: str, storage: StorageLocation) -> CountersLocation:
    if not url:
        return CountersLocation.following(storage)
    try:
        return CountersLocation.parse(url)
    except ValueError as exc:
        raise ConfigError(f"COUNTERS_URL: {exc}") from None


def _password(url: str) -> str:
    try:
        return urlsplit(url).password or ""
    except ValueError:
        return ""


def _accounts(raw: str) -> tuple[Account, ...]:
    if not raw:
        return ()
    try:
        return read_accounts(raw)
    except ValueError as exc:
        raise ConfigError(f"CF_ACCOUNTS {exc}") from None


def _key_budgets(raw: str, api_keys: tuple[str, ...]) -> tuple[tuple[str, float], ...]:
    try:
        return tuple(parse_key_budgets(raw, api_keys).items())
    except ValueError as exc:
        raise ConfigError(f"KEY_BUDGETS {exc}") from None


def _model_names(name: str, raw: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(n.strip().lower() for n in raw.split(",") if n.strip()))
    for item in names:
        if not re.fullmatch(r"[a-z0-9@/._:-]+", item):
            raise ConfigError(f"{name} must list model names such as gpt-image-1, got {item!r}")
    return names


def _proxies(raw: str) -> tuple[str, ...]:
    items = tuple(p.strip() for p in raw.split(",") if p.strip())
    for item in items:
        if item == "*":
            continue
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise ConfigError(
                f"TRUSTED_PROXIES must list IP addresses or networks (or *), got {item!r}") from None
    return items


_RATE_ITEM = re.compile(r"^\s*\d+\s*(/|per)\s*(\d+\s*)?(second|minute|hour|day|month|year)s?\s*$", re.I)


def _rate_limit(raw: str) -> str:
    for item in filter(None, (p.strip() for p in re.split(r"[;,]", raw))):
        if not _RATE_ITEM.match(item):
            raise ConfigError(f"RATE_LIMIT must look like 30/minute;500/day, got {item!r}")
    return raw


def _check_consistency(cfg: Config) -> None:
    if cfg.cf_accounts and (cfg.cf_account_id or cfg.cf_api_token):
        raise ConfigError("CF_ACCOUNTS replaces CF_ACCOUNT_ID and CF_API_TOKEN: set one form only")
    if cfg.image_backend == "cloudflare" and not cfg.cf_accounts:
        if not (cfg.cf_account_id and cfg.cf_api_token):
            missing = "CF_API_TOKEN" if cfg.cf_account_id else "CF_ACCOUNT_ID"
            raise ConfigError(f"{missing} is required for the Cloudflare backend (set both CF_ACCOUNT_ID and CF_API_TOKEN)")
    if cfg.image_backend == "openai" and not cfg.image_api_base:
        raise ConfigError("IMAGE_API_BASE is required when IMAGE_BACKEND=openai")
    if cfg.image_backend != "demo" and not cfg.api_keys:
        raise ConfigError(
            "API_KEY is required when a real image backend is configured: "
            "set API_KEY to one or more comma-separated client keys")
    if cfg.image_links != "service" and cfg.storage.scheme != S3:
        raise ConfigError(
            f"IMAGE_LINKS={cfg.image_links} needs object storage (STORAGE_URL=s3://bucket/...); "
            "with other storage, links go through this service (IMAGE_LINKS=service)")
    if cfg.image_links == "direct" and not cfg.s3_public_base_url:
        raise ConfigError(
            "S3_PUBLIC_BASE_URL is required when IMAGE_LINKS=direct: set it to the bucket's "
            "public URL (an R2 public bucket, a custom domain or a CDN)")
    if cfg.translate and cfg.external_api_base and not cfg.external_model:
        raise ConfigError("EXTERNAL_MODEL is required when EXTERNAL_API_BASE is set")
    if cfg.translate and not cfg.external_api_base and not cfg.cloudflare_accounts:
        raise ConfigError(
            "CF_IS_TRANSLATE=true needs EXTERNAL_API_BASE and EXTERNAL_MODEL, or Cloudflare credentials "
            "(CF_ACCOUNT_ID and CF_API_TOKEN) to translate with a Workers AI text model")
