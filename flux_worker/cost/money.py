"""Neurons, US dollars and what neurons cost at the Workers Paid rate, written for people."""

from __future__ import annotations

from ..catalog.spec import USD_PER_NEURON


def neurons_text(neurons: float) -> str:
    """Format neurons for people: `57.6`, `2,593.5`."""
    return f"{neurons:,.1f}" if neurons < 10_000 else f"{neurons:,.0f}"


def dollars(neurons: float) -> float:
    """The dollars `neurons` cost at the Workers Paid rate."""
    return neurons * USD_PER_NEURON


def usd_text(neurons: float) -> str:
    """The dollar price of `neurons` at the paid rate, for people: `$0.000634`, `$0.0285`."""
    return dollars_text(dollars(neurons))


def dollars_text(amount: float) -> str:
    """US dollars for people: `$0.000634`, `$0.0285`, `$0.04`, `$0.10`, `$2.50`, `$1,200.00`."""
    if amount == 0:
        return "$0"
    if amount >= 1:
        return f"${amount:,.2f}"          # a budget, written as money is
    # Below a dollar, the digits that matter (an image of a cheap model costs $0.000634),
    # and never fewer than the cents.
    whole, _, fraction = f"{amount:.{6 if amount < 0.01 else 4}f}".partition(".")
    return f"${whole}.{fraction.rstrip('0').ljust(2, '0')}"

