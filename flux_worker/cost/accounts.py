"""Cloudflare accounts in order of preference, and which one a generation uses.

`CF_ACCOUNTS` lists accounts as `account_id:token[@neurons]`, comma-separated (or a file holding
that list, for secrets managers). A generation takes the first usable one: an account whose
daily allocation is used up (Cloudflare 4006/3036) or whose own `@budget` is reached is skipped
until 00:00 UTC, when Workers AI resets; one whose token was rejected is skipped for a cool-down,
because a fixed token must be picked up again without a restart. The "used up" mark is kept in
the budget ledger, so every instance learns it from the first that hit it; the cool-down is per
process. With a single account (the `CF_ACCOUNT_ID` + `CF_API_TOKEN` form) there is nothing to
move on to, so the marks are not applied and Cloudflare answers for itself every time.

No Flask here, and no token ever leaves this module in a message, a log line or a repr.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from ..catalog.spec import FREE_DAILY_NEURONS
from ..errors import APIError, QuotaExceeded, UpstreamAuthFailed
from .books import Books
from .budgets import BudgetRules, parse_neurons
from .days import Clock, human_duration, next_reset, utc_now
from .ledgers import MemoryLedger, account_counter, short_account

log = logging.getLogger("flux_worker.cost.accounts")

DEFAULT_COOLDOWN = 300.0      # seconds an account with a rejected token is skipped

OK, EXHAUSTED, OVER_BUDGET, REJECTED = "ok", "allocation_used_up", "budget_reached", \
    "token_rejected"


@dataclass(frozen=True)
class Account:
    """One Cloudflare account: id, token (never shown) and an optional daily budget."""

    id: str
    token: str = field(repr=False)
    budget: float | None = None

    @property
    def label(self) -> str:
        """The id shortened for pages, logs and metrics."""
        return short_account(self.id)


def parse_accounts(text: str) -> tuple[Account, ...]:
    """Parse `id:token[@neurons]` entries separated by commas or lines; raise ValueError.

    Lines starting with `#` are comments. Messages name entries by position, never a token.
    """
    accounts: list[Account] = []
    items = [part.strip() for line in text.splitlines() if not line.strip().startswith("#")
             for part in line.split(",")]
    for position, item in enumerate((i for i in items if i), start=1):
        account_id, sep, rest = item.partition(":")
        token, at, budget_text = rest.rpartition("@") if "@" in rest else (rest, "", "")
        account_id, token = account_id.strip(), token.strip()
        if not sep or not account_id or not token:
            raise ValueError(f"entry {position} must look like account_id:token or "
                             "account_id:token@neurons")
        budget = parse_neurons(budget_text, f"entry {position} budget") if at else None
        if any(a.id == account_id for a in accounts):
            raise ValueError(f"entry {position} repeats account {short_account(account_id)}")
        accounts.append(Account(account_id, token, budget))
    if not accounts:
        raise ValueError("lists no account; write account_id:token[,account_id:token...]")
    return tuple(accounts)


def read_accounts(value: str) -> tuple[Account, ...]:
    """Parse CF_ACCOUNTS: the list itself, or the path of a file holding it; raise ValueError."""
    value = value.strip()
    if os.path.isfile(value):
        try:
            with open(value, encoding="utf-8") as handle:
                return parse_accounts(handle.read())
        except OSError as exc:
            raise ValueError(f"cannot read the file {value}: {exc.strerror}") from None
    if ":" not in value:
        raise ValueError(f"is neither a list of account_id:token nor an existing file ({value})")
    return parse_accounts(value)


class AccountPool:
    """Hands out accounts in order, skipping those used up, over budget or rejected."""

    def __init__(self, accounts: tuple[Account, ...], books: Books | None = None, *,
                 clock: Clock = utc_now, cooldown: float = DEFAULT_COOLDOWN):
        if not accounts:
            raise ValueError("an account pool needs at least one account")
        self.accounts = accounts
        self.books = books or Books(MemoryLedger(), BudgetRules(), clock)
        self.clock = clock
        self.cooldown = cooldown
        self._rejected: dict[str, datetime] = {}
        self._lock = threading.Lock()

    @property
    def single(self) -> bool:
        """Whether there is only one account and no budget of its own: nothing to move on to."""
        return len(self.accounts) == 1 and self.accounts[0].budget is None

    def tokens(self) -> tuple[str, ...]:
        """Every token, for redaction only."""
        return tuple(a.token for a in self.accounts)

    def choose(self, estimate: float) -> list[Account]:
        """The accounts to try for an image of `estimate` neurons, in order of preference."""
        if self.single:
            return list(self.accounts)
        spent = self.books.spent()
        now = self.clock()
        return [a for a in self.accounts if self._state(a, spent, now, estimate) == OK]

    def exhausted(self, account: Account) -> None:
        """Mark `account`'s daily allocation as used up until 00:00 UTC (for every instance)."""
        if self.single:
            return
        self.books.add(self.books.today(), {_exhausted(account): 1})
        log.warning("cloudflare account %s: daily allocation used up; skipped until 00:00 UTC",
                    account.label)

    def rejected(self, account: Account, why: str) -> None:
        """Skip `account` for the cool-down because its token (or id) was refused; log loudly."""
        until = self.clock() + timedelta(seconds=self.cooldown)
        with self._lock:
            self._rejected[account.id] = until
        log.error("cloudflare account %s REJECTED (%s): check its token in CF_ACCOUNTS / "
                  "CF_API_TOKEN; %s", account.label, why,
                  "it is retried with every request" if self.single else
                  f"skipped for {self.cooldown:g} s")

    def out_of_accounts(self, last: APIError | None, estimate: float) -> APIError:
        """The error when no account can take a generation: 429 naming the reset, or 502."""
        spent = self.books.spent()
        now = self.clock()
        states = [self._state(a, spent, now, estimate) for a in self.accounts]
        if self.single and last is not None:
            return last
        if all(s == REJECTED for s in states):
            return last if isinstance(last, UpstreamAuthFailed) else UpstreamAuthFailed(
                "Cloudflare rejected the token of every account in CF_ACCOUNTS; your API key "
                "was accepted.")
        reset = next_reset(now)
        wait = max(1, math.ceil((reset - now).total_seconds()))
        return QuotaExceeded(
            f"All {len(self.accounts)} Cloudflare accounts are out for today (daily allocation "
            f"used up or budget reached). They reset at 00:00 UTC (in {human_duration(wait)}); "
            "try again then.", retry_after=wait)

    def status(self) -> list[dict]:
        """Each account's state and spend today (shortened ids, never tokens)."""
        spent = self.books.spent()
        now = self.clock()
        lines = []
        for account in self.accounts:
            state = self._state(account, spent, now, 0.0)
            line = {"account": account.label, "state": state,
                    "spent_neurons": round(spent.get(account_counter(account.id), 0.0), 3),
                    "allocation_neurons": (account.budget if account.budget is not None
                                           else FREE_DAILY_NEURONS),
                    "budget_neurons": account.budget}
            if state == REJECTED:
                line["retry_in_seconds"] = max(
                    1, math.ceil((self._rejected[account.id] - now).total_seconds()))
            lines.append(line)
        return lines

    def _state(self, account: Account, spent: dict[str, float], now: datetime,
               estimate: float) -> str:
        with self._lock:
            until = self._rejected.get(account.id)
        if until is not None and until > now:
            return REJECTED
        if spent.get(_exhausted(account)):
            return EXHAUSTED
        used = spent.get(account_counter(account.id), 0.0)
        if account.budget is not None and (used + estimate > account.budget
                                           or used >= account.budget):
            return OVER_BUDGET
        return OK


def _exhausted(account: Account) -> str:
    return "exhausted:" + account.id
