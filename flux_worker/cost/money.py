"""Neurons and what they cost at the Workers Paid rate, written for people."""

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
    amount = dollars(neurons)
    if amount == 0:
        return "$0"
    text = f"{amount:.6f}" if amount < 0.01 else f"{amount:.4f}"
    return "$" + (text.rstrip("0").rstrip(".") if "." in text else text)

