"""Build the long-lived parts of one service instance from its Config.

Everything here is created once per process (in `create_app`) and shared by all request
threads: one pooled HTTP session, one store, one backend, one translator (or None), and the one
generation entry point every interface calls (`generations`; `chat` for chat-shaped ones).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import requests

from .backends.providers import Providers
from .catalog.comfyui import Workflow, comfyui_models, load_workflows
from .catalog.fal import FAL_CATALOG
from .catalog.partners import partner_models
from .catalog.providers import CF_PARTNER, COMFYUI, DEMO, FAL, OPENAI, REPLICATE, WORKERS_AI
from .catalog.registry import ModelRegistry
from .catalog.replicate import REPLICATE_CATALOG
from .catalog.spec import ModelSpec
from .catalog.workers_ai import CATALOG
from .chat.phrases import Phrasebook
from .chat.turn import ChatTurns
from .config import Config, ConfigError
from .config.values import ALL_MODELS
from .config.variables import DEFAULT_EDIT_MODEL, DEFAULT_FLUX_MODEL
from .cost.accounts import AccountPool
from .cost.admission import Admission
from .cost.books import Books, BudgetRules
from .cost.health import CountersHealth
from .cost.ledgers import MemoryLedger, ledger_from_location
from .cost.throttle import InflightGate, RateLimiter
from .generation.backend import ImageBackend
from .generation.fallback import resolve_chains
from .generation.pipeline import Pipeline
from .generation.planner import Planner
from .generation.provider_health import ProviderHealth
from .generation.service import Generations
from .generation.translate import ChatTranslator, Translator
from .history.activity import ActivityLog, activity_from_location
from .history.recorder import History
from .history.stores import history_from_location
from .inputs.intake import ImageIntake
from .keys.admin import KeyAdmin
from .keys.ring import KeyRing
from .keys.store import keys_from_location
from .moderation.checkers import (
    LLAMA_GUARD_MODEL,
    OPENAI_MODERATION_MODEL,
    Checker,
    LlamaGuard,
    OpenAIModeration,
)
from .moderation.policy import Moderation
from .net.upstream import make_session
from .responses.answer import Responses
from .responses.background import Jobs
from .responses.store import ResponseStore
from .storage import ImageStore, open_store
from .storage.health import StoreHealth
from .storage.links import ImageLinks
from .storage.marks import Marks, MemoryMarks, marks_from_location

log = logging.getLogger(__name__)


@dataclass
class Services:
    """The parts a request needs, built once."""

    config: Config
    models: ModelRegistry
    backend: ImageBackend
    store: ImageStore
    translator: Translator | None
    pipeline: Pipeline
    generations: Generations
    chat: ChatTurns
    responses: Responses                      # the Responses API: its turns and stored records
    jobs: Jobs                                # background responses running in this process
    session: requests.Session | None = None
    admission: Admission = field(default_factory=lambda: Admission(None, InflightGate(0)))
    links: ImageLinks = field(default_factory=ImageLinks)  # IMAGE_LINKS: how answers link images
    books: Books = field(default_factory=lambda: Books(MemoryLedger(), BudgetRules()))
    accounts: AccountPool | None = None       # the Cloudflare backend's accounts
    # Small shared integers that expire (COUNTERS_URL): provider health, admin sign-ins.
    marks: Marks = field(default_factory=MemoryMarks)
    keyring: KeyRing = field(default_factory=lambda: KeyRing(()))  # who may call
    key_admin: KeyAdmin | None = None         # run-time keys: on with ADMIN_API_KEY
    history: History | None = None           # each key's kept images; None: IMAGE_HISTORY=off
    activity: ActivityLog | None = None      # the newest answered errors, for the admin

    def close(self) -> None:
        """Release connections and files."""
        self.store.close()
        self.books.ledger.close()
        for part in (self.keyring.store, self.history, self.activity):
            if part is not None:
                part.close()
        if self.pipeline.providers is not None:
            self.pipeline.providers.marks.close()
        if self.session is not None:
            self.session.close()


def build_services(config: Config) -> Services:
    """Create store, backend, translator and pipeline; raise ConfigError for bad settings."""
    models = build_models(config)
    # Each gunicorn thread may hold one upstream connection: the pool is as large as the threads.
    session = make_session(config.gunicorn_threads)
    # The budgets count where the rate limits count, so every instance sees the same spend;
    # one CountersHealth remembers an outage of that store for both.
    rules = config.budget_rules()
    counters = CountersHealth(required=bool(config.rate_limit) or rules.any or any(
        a.budget is not None for a in config.cloudflare_accounts))
    books = Books(ledger_from_location(config.counters), rules, health=counters)
    accounts = (AccountPool(config.cloudflare_accounts, books)
                if WORKERS_AI in config.image_providers else None)
    backend = build_backend(config, session, accounts)
    translator = build_translator(config, session)
    try:
        store = open_store(config.storage, max_bytes=config.storage_max_bytes, s3=config.s3)
    except ValueError as exc:
        raise ConfigError(f"STORAGE_URL: {exc}") from None
    health = StoreHealth(store)
    marks = marks_from_location(config.counters)
    providers = ProviderHealth(marks,
                               limit=config.provider_failure_limit,
                               retry_seconds=config.provider_retry_seconds)
    pipeline = Pipeline(backend=backend, store=store, translator=translator,
                        expiration=config.image_expiration, health=health, providers=providers,
                        moderation=build_moderation(config, session))
    # Run-time keys (ADMIN_API_KEY) may carry their own rate limit, so they need the limiter.
    limiter = (RateLimiter(config.rate_limit, config.counters, health=counters)
               if config.rate_limit or config.admin_api_key else None)
    admission = Admission(limiter, InflightGate(config.max_inflight), books)
    links = ImageLinks(config.image_links, store, public_base=config.s3_public_base_url,
                       lifetime=config.image_expiration)
    intake = ImageIntake(store, max_bytes=config.max_input_image_bytes,
                         fetch_remote=config.fetch_remote_images,
                         expiration=config.image_expiration,
                         foreign_origin=links.foreign_origin())
    try:
        chains = resolve_chains(config.model_fallbacks, models)
    except ValueError as exc:
        raise ConfigError(f"MODEL_FALLBACKS: {exc}") from None
    planner = Planner(models, config.flux_num_steps, chains=chains, providers=providers,
                      fits=lambda caller, cost: books.fits(caller.key, cost.neurons, cost.usd,
                                                           caller.terms))
    # In the counter store, so instances that share counts share the history too.
    history = (History(history_from_location(config.counters), store, config.image_expiration)
               if config.image_history == "on" else None)
    generations = Generations(planner=planner, pipeline=pipeline, admission=admission,
                              intake=intake, health=health, recorder=history)
    chat = ChatTurns(generations, models, Phrasebook(config.language), translator=translator,
                     auto_edits=config.chat_edits == "auto",
                     foreign_origin=links.foreign_origin(), show_cost=config.show_cost)
    responses, jobs = build_responses(config, chat, store)
    keyring, key_admin = build_keys(config, models)
    return Services(config=config, models=models, backend=backend, store=store,
                    translator=translator, pipeline=pipeline, generations=generations, chat=chat,
                    session=session, admission=admission, books=books, accounts=accounts,
                    links=links, responses=responses, jobs=jobs, keyring=keyring,
                    key_admin=key_admin, history=history,
                    activity=activity_from_location(config.counters), marks=marks)


def build_keys(config: Config, models: ModelRegistry) -> tuple[KeyRing, KeyAdmin | None]:
    """API_KEY's keys, and with ADMIN_API_KEY the run-time keys kept beside the counters."""
    if not config.admin_api_key:
        return KeyRing(config.api_keys, closed=config.auth_required), None
    store = keys_from_location(config.counters)
    ring = KeyRing(config.api_keys, store, closed=config.auth_required)
    return ring, KeyAdmin(store, lambda name: models.require(name, param="models").id)


def build_responses(config: Config, chat: ChatTurns, store: ImageStore) -> tuple[Responses, Jobs]:
    """The Responses API's parts: records kept beside the images, and background jobs."""
    records = ResponseStore(store, config.image_expiration)
    stale = config.responses_stale_seconds
    return (Responses(chat, records, stale_after=stale),
            Jobs(records, heartbeat=min(5.0, stale / 4)))


def build_models(config: Config) -> ModelRegistry:
    """Offer the models of every provider that is on (Config.image_providers), in one catalog.

    IMAGE_MODELS narrows the offer; FLUX_MODEL and EDIT_MODEL keep their defaults only where
    their provider is on (an OpenAI-compatible upstream alone has no Workers AI model).
    """
    catalog = tuple(spec for provider in config.image_providers
                    for spec in provider_catalog(config, provider))
    names = config.image_models
    if config.image_providers == (OPENAI,) and not names:
        names = tuple(spec.id for spec in catalog)
    default = config.flux_model
    if not _offers(catalog, default) and default == DEFAULT_FLUX_MODEL:
        default = (names or tuple(spec.id for spec in catalog))[0]
    edit = config.edit_model
    if edit and not _offers(catalog, edit) and edit == DEFAULT_EDIT_MODEL:
        edit = ""
    try:
        return ModelRegistry.build(names, default, catalog,
                                   gpt_image_names=config.gpt_image_aliases, edit_name=edit)
    except ValueError as exc:
        raise ConfigError(f"IMAGE_MODELS / FLUX_MODEL / EDIT_MODEL: {exc}") from None


def provider_catalog(config: Config, provider: str) -> tuple[ModelSpec, ...]:
    """The models one provider brings."""
    if provider == WORKERS_AI:
        return CATALOG
    if provider == CF_PARTNER:
        try:
            return partner_models(config.cf_partner_models, ALL_MODELS)
        except ValueError as exc:
            raise ConfigError(f"CF_PARTNER_MODELS: {exc}") from None
    if provider == OPENAI:
        from .backends.openai_images import generic_model
        alone = config.image_providers == (OPENAI,)
        names = config.image_api_models or (alone and config.image_models) or ("dall-e-3",)
        return tuple(generic_model(n, prefixed=not alone) for n in names)
    if provider == FAL:
        return FAL_CATALOG
    if provider == REPLICATE:
        return REPLICATE_CATALOG
    if provider == DEMO:
        from .backends.demo import demo_catalog
        return demo_catalog()     # the Workers AI models, at no cost: the demo bills nothing
    if provider == COMFYUI:
        return comfyui_models(comfyui_workflows(config), config.comfyui_price_usd)
    raise ValueError(f"no catalog for the provider {provider!r}")


def _offers(catalog: tuple[ModelSpec, ...], name: str) -> bool:
    folded = name.strip().lower()
    return any(folded in (spec.id.lower(), *spec.aliases) for spec in catalog)


def build_backend(config: Config, session: requests.Session,
                  accounts: AccountPool | None = None) -> ImageBackend:
    """One backend per provider that is on, behind the router that picks by model."""
    return Providers({provider: provider_backend(config, provider, session, accounts)
                      for provider in config.image_providers})


def provider_backend(config: Config, provider: str, session: requests.Session,
                     accounts: AccountPool | None) -> ImageBackend:
    """The backend of one provider."""
    if provider == WORKERS_AI:
        from .backends.cloudflare import CloudflareBackend
        return CloudflareBackend(
            session=session, api_base=config.cf_api_base, timeout=config.upstream_timeout,
            retries=config.upstream_retries, gateway_url=config.cf_ai_gateway,
            gateway_token=config.cf_ai_gateway_token,
            accounts=accounts or AccountPool(config.cloudflare_accounts))
    if provider == CF_PARTNER:
        from .backends.cloudflare_partner import CloudflarePartnerBackend
        return CloudflarePartnerBackend(
            accounts=config.cloudflare_accounts, session=session, api_base=config.cf_api_base,
            timeout=config.upstream_timeout, retries=config.upstream_retries,
            file_hosts=config.provider_file_hosts)
    if provider == OPENAI:
        from .backends.openai_images import OpenAIImagesBackend
        return OpenAIImagesBackend(api_base=config.image_api_base, api_key=config.image_api_key,
                                   session=session, timeout=config.upstream_timeout)
    if provider == FAL:
        from .backends.fal import FalBackend
        return FalBackend(key=config.fal_key, session=session, api_base=config.fal_api_base,
                          queue_base=config.fal_queue_base, timeout=config.upstream_timeout,
                          file_hosts=config.provider_file_hosts)
    if provider == REPLICATE:
        from .backends.replicate import ReplicateBackend
        return ReplicateBackend(token=config.replicate_api_token, session=session,
                                api_base=config.replicate_api_base,
                                timeout=config.upstream_timeout,
                                file_hosts=config.provider_file_hosts)
    if provider == DEMO:
        from .backends.demo import DemoBackend
        return DemoBackend()
    if provider == COMFYUI:
        from .backends.comfyui import ComfyUIBackend
        return ComfyUIBackend(url=config.comfyui_url, workflows=comfyui_workflows(config),
                              session=session, timeout=config.upstream_timeout)
    raise ValueError(f"no backend for the provider {provider!r}")


def comfyui_workflows(config: Config) -> tuple[Workflow, ...]:
    """COMFYUI_WORKFLOWS read and checked: a broken file stops the start, naming it."""
    try:
        return load_workflows(config.comfyui_workflows)
    except ValueError as exc:
        raise ConfigError(f"COMFYUI_WORKFLOWS: {exc}") from None


def build_moderation(config: Config, session: requests.Session) -> Moderation | None:
    """MODERATION's service and rule, or None when prompts are not checked."""
    checker: Checker
    if config.moderation == "openai":
        checker = OpenAIModeration(api_base=config.moderation_url,
                                   api_key=config.moderation_api_key,
                                   model=config.moderation_model or OPENAI_MODERATION_MODEL,
                                   session=session, timeout=config.moderation_timeout)
    elif config.moderation == "cloudflare":
        first = config.cloudflare_accounts[0]      # the account that draws judges too
        checker = LlamaGuard(api_base=config.cf_api_base, account_id=first.id, token=first.token,
                             model=config.moderation_model or LLAMA_GUARD_MODEL,
                             session=session, timeout=config.moderation_timeout)
    else:
        return None
    return Moderation(checker, low_allows=config.moderation_low,
                      on_error=config.moderation_on_error)


def build_translator(config: Config, session: requests.Session) -> Translator | None:
    """The prompt translator, or None when translation is off."""
    if not config.translate:
        return None
    if config.external_api_base:
        return ChatTranslator(api_base=config.external_api_base, model=config.external_model,
                              api_key=config.external_api_key, session=session,
                              timeout=config.translate_timeout,
                              system_message=config.system_message)
    # No second provider: Cloudflare's own OpenAI-compatible chat endpoint, first account.
    first = config.cloudflare_accounts[0]
    base = f"{config.cf_api_base}/accounts/{first.id}/ai/v1"
    return ChatTranslator(api_base=base, model=config.translate_model,
                          api_key=first.token, session=session,
                          timeout=config.translate_timeout, system_message=config.system_message)
