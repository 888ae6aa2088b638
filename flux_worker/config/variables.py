"""The declaration: every environment variable the service reads, once, as a field of `Config`.

Each field names its variable, its default (the text a user would set, parsed as a set value is)
and its help, the "meaning" column of docs/configuration.md (tests/test_config.py compares the two).
`Config.from_env()` is the only place that reads the environment: a bad value raises ConfigError
naming the variable, so the service refuses to start instead of failing per request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Mapping, Self
from urllib.parse import urlsplit

from pydantic import (
    AliasChoices,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from ..catalog.providers import (
    CF_PARTNER,
    COMFYUI,
    DEMO,
    FAL,
    LEGACY_BACKENDS,
    OPENAI,
    REPLICATE,
    WORKERS_AI,
)
from ..catalog.spec import GPT_IMAGE_ALIASES, RESPONSE_FORMATS
from ..storage.location import S3, CountersLocation, S3Options
from .values import (
    BLANK_MEANS_NONE,
    Accounts,
    BaseURL,
    Categories,
    ConfigError,
    Dollars,
    Fallbacks,
    Flag,
    Hosts,
    HttpURL,
    ModelChoice,
    ModelNames,
    Names,
    Neurons,
    Origins,
    Proxies,
    RateLimit,
    Storage,
    UsdAmount,
    choose,
    config_error,
    one_of,
    read_counters,
    read_whole,
    seconds,
    whole,
)

if TYPE_CHECKING:  # cost/ is imported when the configuration is read: see Config.from_env
    from ..cost.accounts import Account
    from ..cost.budgets import BudgetRules, KeyBudgets

DEFAULT_FLUX_MODEL = "@cf/black-forest-labs/flux-1-schnell"
DEFAULT_EDIT_MODEL = "flux-2-klein-4b"
DEFAULT_CF_API_BASE = "https://api.cloudflare.com/client/v4"
# A current, cheap text model that Cloudflare keeps (llama-3.1-8b-instruct was deprecated
# on 2026-05-30; the -fast variant stays).
DEFAULT_TRANSLATE_MODEL = "@cf/meta/llama-3.1-8b-instruct-fast"
LANGUAGES = ("en", "de", "zh-cn", "zh-hant", "ja", "es", "fr", "ru")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
BACKENDS = tuple(sorted(LEGACY_BACKENDS))
# How answers link to images: through this service, straight to a public bucket, or presigned.
IMAGE_LINK_MODES = ("service", "direct", "presigned")


def variable(name: str, default: str, help: str, *, alias: str = "",
             secret: bool = False) -> Any:
    """A field's environment variable: its name, default and help (the "meaning" column of docs/configuration.md).

    The default is text, as a user would set it, and goes through the field's parser like a set
    value (validate_default). `alias` is an older name, read when `name` is unset. A secret is
    left out of the repr.
    """
    return Field(default, validation_alias=AliasChoices(name, alias) if alias else name,
                 description=help, validate_default=True, repr=not secret)


def _names_of(field: FieldInfo) -> list[str]:
    """The environment variable(s) a field reads, the preferred name first."""
    alias = field.validation_alias
    if isinstance(alias, AliasChoices):
        return [str(choice) for choice in alias.choices]
    return [str(alias)]


class Config(BaseSettings):
    """The whole configuration of one service instance, validated.

    Fields are validated in order, so a field whose value follows from another's comes after it
    (IMAGE_BACKEND after the Cloudflare credentials, COUNTERS_URL after STORAGE_URL, MAX_INFLIGHT
    after GUNICORN_THREADS, KEY_BUDGETS after API_KEY).
    """

    model_config = SettingsConfigDict(frozen=True)

    api_keys: Names = variable("API_KEY", "", "Client key(s) for `Authorization: Bearer`; comma-separated for several. Required with a real backend; without it the demo backend needs no key.", secret=True)
    admin_api_key: str = variable("ADMIN_API_KEY", "", "Key for the admin API, the `/admin` page and everyone's spend on `GET /v1/usage`; with it set, run-time keys can be handed out (docs/admin.md). Not a client key.", secret=True)

    # Cloudflare Workers AI (backends/cloudflare.py, cost/accounts.py)
    cf_account_id: str = variable("CF_ACCOUNT_ID", "", "Cloudflare account id for Workers AI. Without it (and the token) the offline demo backend runs.")
    cf_api_token: str = variable("CF_API_TOKEN", "", "Cloudflare API token with Workers AI permission.", secret=True)
    cf_accounts: Accounts = variable("CF_ACCOUNTS", "", "Several Cloudflare accounts, used in order: `account_id:token[@neurons],...` (optional daily budget per account), or the path of a file holding that list. Replaces `CF_ACCOUNT_ID` + `CF_API_TOKEN`.")
    cf_api_base: BaseURL = variable("CF_API_BASE", DEFAULT_CF_API_BASE, "Cloudflare API base; the service calls `{CF_API_BASE}/accounts/{CF_ACCOUNT_ID}/ai/run/{model}`. Point it at a proxy or a local fake.")
    cf_ai_gateway: BaseURL = variable("CF_AI_GATEWAY", "", "Cloudflare AI Gateway base URL (`https://gateway.ai.cloudflare.com/v1/{account}/{gateway}`); when set, Workers AI calls go through it.")
    cf_ai_gateway_token: str = variable("CF_AI_GATEWAY_TOKEN", "", "Gateway token, sent as `cf-aig-authorization: Bearer ...` (authenticated gateways).", secret=True)

    # More image providers (backends/fal, backends/replicate, backends/comfyui): each is on when
    # its key or address is set, beside the others.
    fal_key: str = variable("FAL_KEY", "", "fal.ai API key (`key_id:key_secret`); set, fal's models (`fal:<model id>`) are offered.", secret=True)
    fal_api_base: BaseURL = variable("FAL_API_BASE", "https://fal.run", "fal's synchronous endpoint base (`{FAL_API_BASE}/{model id}`).")
    fal_queue_base: BaseURL = variable("FAL_QUEUE_BASE", "https://queue.fal.run", "fal's queue API base, used when a model takes longer than the synchronous call may wait.")
    replicate_api_token: str = variable("REPLICATE_API_TOKEN", "", "Replicate API token; set, Replicate's models (`replicate:<owner>/<name>`) are offered.", secret=True)
    replicate_api_base: BaseURL = variable("REPLICATE_API_BASE", "https://api.replicate.com/v1", "Replicate's API base.")
    comfyui_url: BaseURL = variable("COMFYUI_URL", "", "Address of a ComfyUI server you run (`http://gpu-box:8188`); set, each workflow of `COMFYUI_WORKFLOWS` is a model (`comfyui:<workflow name>`). Trusted as given (usually a private address).")
    comfyui_workflows: Names = variable("COMFYUI_WORKFLOWS", "", "ComfyUI workflows in API format, each with its node map: a folder, or a comma list of files; empty: the shipped examples (`flux_worker/catalog/comfyui_workflows/`).")
    comfyui_price_usd: UsdAmount = variable("COMFYUI_PRICE_USD", "0", "What one ComfyUI image costs in US dollars, counted against the dollar budgets (`DAILY_USD`, ...); `0`: free (your own GPU).")

    # Prompt translation (generation/translate.py)
    translate: Flag = variable("CF_IS_TRANSLATE", "false", "`true`: translate and enrich the prompt with an LLM before generating.", alias="PROMPT_OPTIMIZATION")
    external_api_base: HttpURL = variable("EXTERNAL_API_BASE", "", "OpenAI-compatible LLM base URL for translation, with or without `/v1`. Unset: Cloudflare's own chat endpoint is used.")
    external_model: str = variable("EXTERNAL_MODEL", "", "Model name for `EXTERNAL_API_BASE`.")
    external_api_key: str = variable("EXTERNAL_API_KEY", "", "API key for `EXTERNAL_API_BASE`.", secret=True)
    translate_model: str = variable("TRANSLATE_MODEL", DEFAULT_TRANSLATE_MODEL, "Workers AI text model used for translation when `EXTERNAL_API_BASE` is unset.")
    system_message: str = variable("SYSTEM_MESSAGE", "", "Replaces the built-in system message for prompt translation.")
    translate_timeout: Annotated[float, seconds(0.1, 600)] = variable("TRANSLATE_TIMEOUT", "20", "Seconds to wait for the translation LLM before falling back to the original prompt.")

    # Models and image backends (catalog/, backends/)
    flux_model: str = variable("FLUX_MODEL", DEFAULT_FLUX_MODEL, "Default image model (id or alias).")
    flux_num_steps: Annotated[int, whole(1, 100)] = variable("FLUX_NUM_STEPS", "4", "Diffusion steps sent to Workers AI's models when a request names none, clamped to the model's range; other providers' models run their own default (fal's FLUX dev 28, a ComfyUI workflow's own).")
    gpt_image_aliases: Annotated[ModelNames, BLANK_MEANS_NONE] = variable("GPT_IMAGE_ALIASES", ",".join(GPT_IMAGE_ALIASES), "Comma-separated model names that mean `FLUX_MODEL` and, like OpenAI's GPT image models, answer the Images API with `b64_json` unless `response_format: \"url\"` is asked; empty for none. (`dall-e-2` and `dall-e-3` are always aliases and answer links.)")
    image_response_format: Annotated[str, one_of(*RESPONSE_FORMATS)] = variable("IMAGE_RESPONSE_FORMAT", "both", "How the Images API answers a request that names one of this service's own models (or none) and sends no `response_format`: `both` (each item has `url` and `b64_json`), `url` or `b64_json`. GPT image names always answer `b64_json` and DALL·E names `url`, as OpenAI's do.")
    image_models: Names = variable("IMAGE_MODELS", "", "Comma-separated model ids or aliases offered; empty offers the whole catalog.")
    image_api_base: HttpURL = variable("IMAGE_API_BASE", "", "For `IMAGE_BACKEND=openai`: base URL of an OpenAI-compatible Images API.")
    image_api_key: str = variable("IMAGE_API_KEY", "", "For `IMAGE_BACKEND=openai`: its API key.", secret=True)
    image_api_models: Names = variable("IMAGE_API_MODELS", "", "The model names `IMAGE_API_BASE` serves, offered as `image-api:<name>` (and `<name>` where no other provider uses it) beside the other providers' models; empty: `IMAGE_MODELS` when that upstream is the only provider (as before), else `dall-e-3`.")
    image_backend: str = variable("IMAGE_BACKEND", "", "`cloudflare`, `openai` or `demo`; empty picks `cloudflare` when Cloudflare credentials are set, else `openai` when `IMAGE_API_BASE` is, else `demo`. Other providers whose variables are set join `cloudflare` (docs: providers).")
    cf_partner_models: ModelChoice = variable("CF_PARTNER_MODELS", "false", "`true` offers Cloudflare's partner image models (`openai/gpt-image-2`, `google/nano-banana-2`, ...) through the same account and token, or a comma list of their ids. They bill US dollars from Unified Billing credits, not the free neurons. Off by default.")
    model_fallbacks: Fallbacks = variable("MODEL_FALLBACKS", "", "Ordered alternatives per model, tried when a provider answers capacity, quota, rate limit, 5xx or a timeout (never a refused prompt or a bad request): `flux-1-schnell=flux-2-klein-4b,openai/gpt-image-2;model2=...`.")
    provider_failure_limit: Annotated[int, whole(0, 1000)] = variable("PROVIDER_FAILURE_LIMIT", "3", "Failures in a row (capacity, quota, rate limit, 5xx, timeout) after which a provider is skipped for `PROVIDER_RETRY_SECONDS` while its models' `MODEL_FALLBACKS` draw; shared by every instance through `COUNTERS_URL`. `0` never skips.")
    provider_retry_seconds: Annotated[float, seconds(1, 86400)] = variable("PROVIDER_RETRY_SECONDS", "30", "Seconds a failing provider is skipped; then one request tries it again, and a success restores it.")
    provider_file_hosts: Hosts = variable("PROVIDER_FILE_HOSTS", "", "Extra hosts (`host` or `host:port`) from which providers' result files may be downloaded, besides each provider's own file hosts; a host listed here may be a private or loopback address (a local mirror).")
    max_images: Annotated[int, whole(1, 10)] = variable("MAX_IMAGES", "4", "Largest `n` accepted by the Images API.")

    # Storage of images and counters (storage/)
    image_expiration: Annotated[int, whole(0, 366 * 86400)] = variable("IMAGE_EXPIRATION", "1800", "Seconds an image is kept and served; `0` keeps images for ever (bounded by `STORAGE_MAX_BYTES`, Redis's maxmemory or the bucket).")
    storage: Storage = variable("STORAGE_URL", "disk://data", "`memory://`, `disk://<relative path>`, `disk:///<absolute path>`, `redis://[:password@]host:port/db` (`rediss://` for TLS) or `s3://bucket/optional/prefix` (S3, R2, MinIO).")
    storage_max_bytes: Annotated[int, whole(1 << 20, 1 << 50)] = variable("STORAGE_MAX_BYTES", "1073741824", "Upper bound of the bytes kept by `memory://` and `disk://` storage (oldest go first; with `IMAGE_EXPIRATION=0` nothing is evicted and a full store refuses new images with 507).")
    counters: CountersLocation = variable("COUNTERS_URL", "", "Where rate-limit and budget counters live: `redis://…`, `rediss://…`, a directory (`disk://…` or a path) or `memory://`. Empty: beside the images for memory, disk and Redis storage; `./data/counters` for S3 (start-up warns that hosts do not share counts).")
    image_history: Annotated[str, one_of("on", "off")] = variable("IMAGE_HISTORY", "on", "`on`: each key's generated images are listed for that key at `GET /v1/images/history` (kept in the counter store, as long as the images); `off`: no history is kept.")
    responses_stale_seconds: Annotated[float, seconds(2, 3600)] = variable("RESPONSES_STALE_SECONDS", "60", "Seconds without a sign of life after which a background response (Responses API) is reported `failed`: the instance running it has died. A running job refreshes its record every quarter of this (at most every 5 seconds, which is also how soon it sees a cancel asked on another instance).")
    image_links: Annotated[str, one_of(*IMAGE_LINK_MODES)] = variable("IMAGE_LINKS", "service", "Image links in answers: `service` (`/image/<key>` through this service), `direct` (`S3_PUBLIC_BASE_URL/<object key>`) or `presigned` (presigned S3 GET, at most 7 days).")
    s3_endpoint_url: BaseURL = variable("S3_ENDPOINT_URL", "", "S3 API endpoint for `s3://` storage: `https://<account>.r2.cloudflarestorage.com` for R2, a MinIO address; empty: AWS S3.")
    s3_public_base_url: BaseURL = variable("S3_PUBLIC_BASE_URL", "", "For `IMAGE_LINKS=direct`: public base URL of the bucket (an R2 public bucket, custom domain or CDN); links are `<base>/<prefix><key>`.")
    aws_region: str = variable("AWS_REGION", "", "Region of the bucket for `s3://` storage (`auto` for R2); empty: boto3's default.")
    aws_access_key_id: str = variable("AWS_ACCESS_KEY_ID", "", "Access key id for `s3://` storage; empty: boto3's usual credential chain (instance role, ~/.aws).")
    aws_secret_access_key: str = variable("AWS_SECRET_ACCESS_KEY", "", "Secret access key for `s3://` storage.", secret=True)

    # HTTP (web/)
    public_base_url: BaseURL = variable("PUBLIC_BASE_URL", "", "Base of image links (`https://img.example.com`); empty derives it from the request.")
    trusted_proxies: Annotated[Proxies, BLANK_MEANS_NONE] = variable("TRUSTED_PROXIES", "127.0.0.1,::1", "Comma-separated addresses/networks whose `X-Forwarded-Proto`/`-Host`/`-For` are believed; `*` trusts all, empty none.")
    language: Annotated[str, one_of(*LANGUAGES)] = variable("LANGUAGE", "en", f"Language of the chat answer: {', '.join(LANGUAGES)}.")
    cors_origins: Origins = variable("CORS_ORIGINS", "*", "Allowed CORS origins, comma-separated, or `*`.")
    max_body_bytes: Annotated[int, whole(1024, 1 << 30)] = variable("MAX_BODY_BYTES", "1048576", "Largest request body accepted (413 above it).")
    log_level: Annotated[str, one_of(*LOG_LEVELS)] = variable("LOG_LEVEL", "INFO", f"Logging level ({', '.join(LOG_LEVELS)}).")

    # Upstream calls and capacity (net/upstream.py, cost/throttle.py, gunicorn_worker.py)
    upstream_timeout: Annotated[float, seconds(1, 3600)] = variable("UPSTREAM_TIMEOUT", "120", "Seconds to wait for one image generation upstream.")
    upstream_retries: Annotated[int, whole(0, 10)] = variable("UPSTREAM_RETRIES", "2", "Retries of a capacity error (3040), 5xx or connection failure, with backoff and jitter.")
    rate_limit: RateLimit = variable("RATE_LIMIT", "", "Per API key limits such as `30/minute;500/day`; empty: none.")
    gunicorn_threads: Annotated[int, whole(1, 10000)] = variable("GUNICORN_THREADS", "256", "Threads per process: each holds one generation in flight (see docs/benchmarks.md).")
    max_inflight: int = variable("MAX_INFLIGHT", "", "Images one process generates at once before answering 503 with `Retry-After`; empty: `GUNICORN_THREADS` minus an eighth (at least 4 threads stay free for health checks and quick requests); 0: no cap.")
    request_read_timeout: Annotated[float, seconds(1, 3600)] = variable("REQUEST_READ_TIMEOUT", "30", "Seconds a client has to send a whole request (request line, headers and body); a slower connection is closed. Requests are gathered without holding a thread, so slow clients cannot starve the others.")

    # Budgets in neurons and US dollars (cost/budgets.py, cost/books.py)
    daily_neurons: Neurons = variable("DAILY_NEURONS", "", "Daily budget of the whole service in Workers AI neurons (e.g. `10000`, the free allocation); empty: none. Resets 00:00 UTC.")
    key_daily_neurons: Neurons = variable("KEY_DAILY_NEURONS", "", "Default daily budget in neurons of each API key; empty: none.")
    daily_usd: Dollars = variable("DAILY_USD", "", "Daily budget of the whole service in US dollars (`5`, `5.00` or `$5`), counting every image: a provider's dollar price, Workers AI neurons at the paid rate; empty: none. Resets 00:00 UTC.")
    key_daily_usd: Dollars = variable("KEY_DAILY_USD", "", "Default daily budget in US dollars of each API key; empty: none.")
    key_budgets: KeyBudgets = variable("KEY_BUDGETS", "", "Daily budgets of single API keys: `sk-alice=3000,sk-bob=$2.50` (a bare number is neurons; `$2.50` or `2.5usd` is dollars; a key may have one of each); they override `KEY_DAILY_NEURONS` and `KEY_DAILY_USD`.")
    show_cost: Flag = variable("SHOW_COST", "false", "`true`: the chat answer ends with one line giving the neurons the image cost and its price at the paid rate (for a model billed in US dollars only, its dollars).")

    # Image input: edits, variations, images in chat (inputs/intake.py, generation/edits.py)
    edit_model: Annotated[str, BLANK_MEANS_NONE] = variable("EDIT_MODEL", DEFAULT_EDIT_MODEL, "Model that draws a request bringing images when the named model takes none (the answer says so); empty: such a request is a 400.")
    chat_edits: Annotated[str, one_of("explicit", "auto")] = variable("CHAT_EDITS", "explicit", "`explicit`: a chat message edits only with attached images or `--edit`; `auto`: the translation LLM also decides whether a follow-up edits the last image (without an LLM, as `explicit`).")
    fetch_remote_images: Flag = variable("FETCH_REMOTE_IMAGES", "false", "`true`: image links to other sites are downloaded (public addresses only, 10 s, no redirects to other hosts); off, only uploads, `data:` URLs and this service's own links are read.")
    max_input_image_bytes: Annotated[int, whole(1024, 1 << 30)] = variable("MAX_INPUT_IMAGE_BYTES", "10485760", "Largest single input image (upload, `data:` URL or download), in bytes.")
    max_upload_bytes: Annotated[int, whole(1024, 1 << 31)] = variable("MAX_UPLOAD_BYTES", "20971520", "Largest multipart body of `/v1/images/edits` and `/v1/images/variations` (413 above it); JSON bodies keep `MAX_BODY_BYTES`.")

    # Moderation of prompts before any paid call (moderation/)
    moderation: Annotated[str, one_of("off", "cloudflare", "openai")] = variable("MODERATION", "off", "Check every prompt (and its translation) before drawing: `cloudflare` (Llama Guard on the Workers AI account), `openai` (an OpenAI-compatible `/v1/moderations` at `MODERATION_URL`) or `off`.")
    moderation_model: str = variable("MODERATION_MODEL", "", "The moderation model; empty: `@cf/meta/llama-guard-3-8b` for `cloudflare`, `omni-moderation-latest` for `openai`.")
    moderation_url: BaseURL = variable("MODERATION_URL", "", "Base URL of the OpenAI-compatible moderations API (`MODERATION=openai`), with or without `/v1`.")
    moderation_api_key: str = variable("MODERATION_API_KEY", "", "Bearer key for `MODERATION_URL`.", secret=True)
    moderation_low: Categories = variable("MODERATION_LOW", "", "Categories a request's `moderation: \"low\"` lets through, comma-separated (`sexual,violence`; Llama Guard codes such as `S12` and OpenAI names work too); empty: `low` relaxes nothing.")
    moderation_on_error: Annotated[str, one_of("refuse", "allow")] = variable("MODERATION_ON_ERROR", "refuse", "When the moderation service cannot answer: `refuse` (503, nothing drawn) or `allow` (draw, with a WARNING in the log and a count in /metrics).")
    moderation_timeout: Annotated[float, seconds(0.1, 120)] = variable("MODERATION_TIMEOUT", "10", "Seconds to wait for the moderation service.")

    # ---- values that follow from other variables -----------------------------------------------

    @field_validator("image_backend", mode="plain")
    @classmethod
    def _pick_backend(cls, text: str, info: ValidationInfo) -> str:
        if text:
            return choose(text, BACKENDS)
        has_cf = any(info.data.get(name) for name in ("cf_account_id", "cf_api_token",
                                                      "cf_accounts"))
        if has_cf:
            return "cloudflare"
        if info.data.get("image_api_base"):
            return "openai"
        # Only newer providers set: none of the original three is chosen.
        newer = any(info.data.get(name) for name in ("fal_key", "replicate_api_token",
                                                     "comfyui_url"))
        return "" if newer else "demo"

    @field_validator("counters", mode="plain")
    @classmethod
    def _counters(cls, text: str, info: ValidationInfo) -> CountersLocation:
        if text:
            return read_counters(text)
        if "storage" not in info.data:
            raise ValueError("follows STORAGE_URL, which is invalid")  # its error comes first
        return CountersLocation.following(info.data["storage"])

    @field_validator("max_inflight", mode="plain")
    @classmethod
    def _max_inflight(cls, text: str, info: ValidationInfo) -> int:
        if text:
            return read_whole(text, 0, 100000)
        if "gunicorn_threads" not in info.data:
            raise ValueError("follows GUNICORN_THREADS, which is invalid")  # its error comes first
        return default_max_inflight(info.data["gunicorn_threads"])

    @field_validator("key_budgets", mode="plain")
    @classmethod
    def _key_budgets(cls, text: str, info: ValidationInfo) -> KeyBudgets:
        from ..cost.budgets import parse_key_budgets

        # Its messages name entries by position, never by key.
        return parse_key_budgets(text, info.data.get("api_keys", ()))

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        check_consistency(self)
        return self

    # ---- reading -------------------------------------------------------------------------------

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Config:
        """Read and validate the configuration; raise ConfigError naming the bad variable."""
        if not cls.__pydantic_complete__:
            # Account and KeyBudgets come with cost/, which loads prometheus_client: they are
            # imported now, when the configuration is read, rather than with this module.
            from ..cost.accounts import Account
            from ..cost.budgets import KeyBudgets

            cls.model_rebuild(_types_namespace={"Account": Account, "KeyBudgets": KeyBudgets})
        given: dict[str, Any] = {}
        for field in cls.model_fields.values():
            # The first name that is set is read (CF_IS_TRANSLATE before PROMPT_OPTIMIZATION), and
            # only it is handed over: given both, pydantic-settings may take either.
            name = next((name for name in _names_of(field) if name in environ), None)
            if name is None:
                continue  # unset: the default
            text = environ[name].strip()
            # Blank counts as unset (deploy dashboards keep variables that were emptied),
            # except where blank means "none".
            given[name] = text if text or BLANK_MEANS_NONE in field.metadata else field.default
        try:
            return cls(**given)
        except ValidationError as exc:
            # `from None`: the ValidationError quotes every input, secrets included.
            raise config_error(exc) from None

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Only what from_env hands over is read. It reads the mapping it is given (os.environ in
        # the service, a dict in tests); os.environ, .env files or a secrets directory read here
        # as well would fill in what a test's dict leaves unset.
        return (init_settings,)

    # ---- derived views -------------------------------------------------------------------------

    @property
    def cloudflare_accounts(self) -> tuple[Account, ...]:
        """The Cloudflare accounts in order: CF_ACCOUNTS, or CF_ACCOUNT_ID + CF_API_TOKEN."""
        if self.cf_accounts:
            return self.cf_accounts
        if self.cf_account_id and self.cf_api_token:
            from ..cost.accounts import Account

            return (Account(self.cf_account_id, self.cf_api_token),)
        return ()

    def budget_rules(self) -> BudgetRules:
        """The daily budgets as the books apply them."""
        from ..cost.budgets import BudgetRules

        return BudgetRules(self.daily_neurons, self.key_daily_neurons,
                           dict(self.key_budgets.neurons), self.daily_usd, self.key_daily_usd,
                           dict(self.key_budgets.usd))

    @property
    def image_providers(self) -> tuple[str, ...]:
        """The providers whose models are offered, in the order their models are listed.

        IMAGE_BACKEND (`cloudflare`, `openai`, `demo`) keeps choosing one of the original three,
        as before; empty turns on each whose variables are set. Cloudflare's partner models join
        Workers AI when CF_PARTNER_MODELS asks for them. With nothing set: the demo.
        """
        chosen = LEGACY_BACKENDS.get(self.image_backend)
        if chosen == DEMO:
            return (DEMO,)
        on: list[str] = [chosen] if chosen else []
        if chosen == WORKERS_AI:
            on += [CF_PARTNER] if self.cf_partner_models else []
            on += [OPENAI] if self.image_api_base else []
        on += [FAL] if self.fal_key else []
        on += [REPLICATE] if self.replicate_api_token else []
        on += [COMFYUI] if self.comfyui_url else []
        return tuple(on)

    @property
    def auth_required(self) -> bool:
        """Whether every request must carry a key, whatever run-time keys exist: API_KEY is
        set, or a real provider is on (then only ADMIN_API_KEY's run-time keys may call)."""
        return bool(self.api_keys) or self.image_providers != (DEMO,)

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
                  self.moderation_api_key,
                  *(a.token for a in self.cf_accounts), self.aws_secret_access_key,
                  _password(self.storage.url), _password(self.counters.url))
        return tuple(v for v in values if v and len(v) >= 4)


def default_max_inflight(threads: int) -> int:
    """The in-flight cap that leaves threads free for health checks and quick requests."""
    # Every generation holds a gunicorn thread; with all of them taken, /healthz, /readyz and
    # the 503s that tell clients to come back would queue behind generations of a minute.
    spare = max(4, threads // 8)
    return max(1, threads - spare)


def check_consistency(cfg: Config) -> None:
    """Refuse settings that are each valid but do not work together."""
    if cfg.cf_accounts and (cfg.cf_account_id or cfg.cf_api_token):
        raise ConfigError("CF_ACCOUNTS replaces CF_ACCOUNT_ID and CF_API_TOKEN: set one form only")
    if cfg.image_backend == "cloudflare" and not cfg.cf_accounts:
        if not (cfg.cf_account_id and cfg.cf_api_token):
            missing = "CF_API_TOKEN" if cfg.cf_account_id else "CF_ACCOUNT_ID"
            raise ConfigError(f"{missing} is required for the Cloudflare backend (set both CF_ACCOUNT_ID and CF_API_TOKEN)")
    if cfg.cf_partner_models and cfg.image_backend != "cloudflare":
        raise ConfigError("CF_PARTNER_MODELS needs the Cloudflare credentials (CF_ACCOUNT_ID and "
                          "CF_API_TOKEN, or CF_ACCOUNTS) and IMAGE_BACKEND=cloudflare or unset")
    if cfg.image_backend == "openai" and not cfg.image_api_base:
        raise ConfigError("IMAGE_API_BASE is required when IMAGE_BACKEND=openai")
    if cfg.image_providers != (DEMO,) and not (cfg.api_keys or cfg.admin_api_key):
        raise ConfigError(
            "API_KEY is required when a real image backend is configured: "
            "set API_KEY to one or more comma-separated client keys (or ADMIN_API_KEY, and "
            "create keys with the admin API)")
    if cfg.image_links != "service" and cfg.storage.scheme != S3:
        raise ConfigError(
            f"IMAGE_LINKS={cfg.image_links} needs object storage (STORAGE_URL=s3://bucket/...); "
            "with other storage, links go through this service (IMAGE_LINKS=service)")
    if cfg.image_links == "direct" and not cfg.s3_public_base_url:
        raise ConfigError(
            "S3_PUBLIC_BASE_URL is required when IMAGE_LINKS=direct: set it to the bucket's "
            "public URL (an R2 public bucket, a custom domain or a CDN)")
    if cfg.moderation == "openai" and not cfg.moderation_url:
        raise ConfigError("MODERATION_URL is required when MODERATION=openai: the base URL of an "
                          "OpenAI-compatible moderations API")
    if cfg.moderation == "cloudflare" and not cfg.cloudflare_accounts:
        raise ConfigError("MODERATION=cloudflare needs the Cloudflare account (CF_ACCOUNT_ID and "
                          "CF_API_TOKEN, or CF_ACCOUNTS) that Llama Guard runs on")
    if cfg.translate and cfg.external_api_base and not cfg.external_model:
        raise ConfigError("EXTERNAL_MODEL is required when EXTERNAL_API_BASE is set")
    if cfg.translate and not cfg.external_api_base and not cfg.cloudflare_accounts:
        raise ConfigError(
            "CF_IS_TRANSLATE=true needs EXTERNAL_API_BASE and EXTERNAL_MODEL, or Cloudflare credentials "
            "(CF_ACCOUNT_ID and CF_API_TOKEN) to translate with a Workers AI text model")


def _password(url: str) -> str:
    try:
        return urlsplit(url).password or ""
    except ValueError:
        return ""


@dataclass(frozen=True)
class Variable:
    """One environment variable: its name, default (as the text a user would set) and help."""

    name: str
    default: str
    help: str


def _variables() -> tuple[Variable, ...]:
    found = []
    for field in Config.model_fields.values():
        name, *aliases = _names_of(field)
        found.append(Variable(name, field.default, field.description or ""))
        found += [Variable(alias, "", f"Alias of `{name}` (used when `{name}` is unset).")
                  for alias in aliases]
    return tuple(found)


# Every variable Config reads, in declaration order: docs/configuration.md's table is checked against it.
VARIABLES: tuple[Variable, ...] = _variables()
