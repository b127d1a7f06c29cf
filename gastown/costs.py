"""What the agents cost: per call, per role, per bead, per build; prices and budgets."""
from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gastown.bead import Bead, RoleSpec
from gastown.runners.base import RunResult

# $ per million tokens (input, output), by model name prefix; the Gasfile's `prices` win.
DEFAULT_PRICES: dict[str, tuple[float, float]] = {
    "claude-opus-4-5": (5.0, 25.0),
    "claude-opus-4": (15.0, 75.0),
    "claude-sonnet-4": (3.0, 15.0),
    "claude-3-7-sonnet": (3.0, 15.0),
    "claude-3-5-sonnet": (3.0, 15.0),
    "claude-haiku-4": (1.0, 5.0),
    "claude-3-5-haiku": (0.8, 4.0),
    "gpt-5-nano": (0.05, 0.4),
    "gpt-5-mini": (0.25, 2.0),
    "gpt-5": (1.25, 10.0),
    "gpt-4.1-nano": (0.1, 0.4),
    "gpt-4.1-mini": (0.4, 1.6),
    "gpt-4.1": (2.0, 8.0),
    "gpt-4o-mini": (0.15, 0.6),
    "gpt-4o": (2.5, 10.0),
    "o4-mini": (1.1, 4.4),
    "o3": (2.0, 8.0),
}


def price(model: str | None, overrides: Mapping[str, Mapping[str, float]]
          ) -> tuple[float, float] | None:
    """($/MTok in, $/MTok out) for a model: an exact Gasfile entry, else the longest prefix."""
    if model is None:
        return None
    if model in overrides:
        return overrides[model]["input"], overrides[model]["output"]
    bare = model.split("/", 1)[-1]
    matches = [p for p in DEFAULT_PRICES if bare.startswith(p)]
    return DEFAULT_PRICES[max(matches, key=len)] if matches else None


def entry(result: RunResult, role: RoleSpec,
          overrides: Mapping[str, Mapping[str, float]]) -> dict[str, Any]:
    """One runner call's usage, priced: the CLI's own cost when it reports one."""
    tokens_in = int(result.usage.get("input_tokens", 0))
    tokens_out = int(result.usage.get("output_tokens", 0))
    usd = result.usage.get("usd")
    if usd is None:
        rate = price(role.model, overrides)
        usd = (tokens_in * rate[0] + tokens_out * rate[1]) / 1e6 if rate else 0.0
    return {"runner": role.runner, "model": role.model, "usd": round(float(usd), 6),
            "input_tokens": tokens_in, "output_tokens": tokens_out, "calls": 1}


def combine(total: Mapping[str, Any] | None, more: Mapping[str, Any]) -> dict[str, Any]:
    """Add one usage entry to a running total of the same role."""
    if not total:
        return dict(more)
    summed = {key: total.get(key, 0) + more.get(key, 0)
              for key in ("usd", "input_tokens", "output_tokens", "calls")}
    summed["usd"] = round(summed["usd"], 6)
    return {"runner": more.get("runner"), "model": more.get("model"), **summed}


def usd(amount: float) -> str:
    return f"${amount:,.2f}" if amount >= 1 or amount == 0 else f"${amount:.4f}"


@dataclass
class CostBook:
    """The build's spend by role and model; thread-safe; knows the budget."""

    budget_usd: float | None = None
    spent: dict[tuple[str, str], float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, role: str, usage: Mapping[str, Any]) -> None:
        key = (role, str(usage.get("model") or usage.get("runner") or "default"))
        with self.lock:
            self.spent[key] = self.spent.get(key, 0.0) + float(usage.get("usd", 0.0))

    def total(self) -> float:
        with self.lock:
            return sum(self.spent.values())

    def exhausted(self) -> bool:
        return self.budget_usd is not None and self.total() >= self.budget_usd

    def lines(self, merged: int) -> list[str]:
        if not self.spent:
            return []
        total = self.total()
        rows = [f"Total API cost: {usd(total)}"]
        rows += [f"{role.capitalize()} ({model}): {usd(amount)}"
                 for (role, model), amount in sorted(self.spent.items())]
        if merged:
            rows.append(f"Cost per merged bead: {usd(total / merged)}")
        if self.budget_usd is not None:
            rows.append(f"Budget: {usd(total)} of {usd(self.budget_usd)} spent")
        return rows


def estimate(beads: Iterable[Bead], records: Mapping[str, Mapping[str, Any]]) -> str | None:
    """`Estimated cost` of running `beads`, from past spend per backlog and role in the ledger."""
    past: dict[tuple[str, str], list[float]] = {}
    for record in records.values():
        for role, spent in (record.get("cost") or {}).items():
            past.setdefault((record.get("backlog", ""), role), []).append(spent.get("usd", 0.0))
    if not past:
        return None
    total, known = 0.0, 0
    beads = list(beads)
    for bead in beads:
        rows = [sum(v) / len(v) for (backlog, _), v in past.items() if backlog == bead.backlog]
        if rows:
            total, known = total + sum(rows), known + 1
    if not known:
        return "Estimated cost: unknown (no past costs for these backlogs in the ledger)"
    return (f"Estimated cost: ~{usd(total)} for {known} of {len(beads)} beads "
            f"(average past cost per bead of their backlog, per role)")
