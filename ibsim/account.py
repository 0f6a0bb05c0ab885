"""The margin account IB reports: every account value of a Reg T margin account,
computed from cash and positions, and the margin impact of a hypothetical order
(whatIf).

Rules (sources in ibsim/README.md):
* options have no loan value: EquityWithLoanValue = cash + stock market value;
* stock: initial 50 % (Reg T), maintenance 25 % long / 30 % short;
* short puts: max(20 % of the underlying - the out-of-the-money amount, 10 % of the
  strike) x 100 x qty + the option's market value (the premium); short calls the same
  with 10 % of the underlying as the floor; long options need no margin;
* AvailableFunds = EWL - initial, ExcessLiquidity = EWL - maintenance,
  Cushion = ExcessLiquidity / NetLiquidation, BuyingPower = 4 x AvailableFunds.

Pure functions of (cash, positions, prices): the whatIf reuses them on a copy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

Quote = Callable[[dict[str, Any]], tuple[float, float, float]]  # contract -> bid, ask, mark

# The list (IB's margin-account set), in the order IB's account window has it.
SUMMARY_TAGS = (
    "AccountType", "NetLiquidation", "TotalCashValue", "SettledCash", "AccruedCash",
    "BuyingPower", "EquityWithLoanValue", "PreviousDayEquityWithLoanValue",
    "GrossPositionValue", "RegTEquity", "RegTMargin", "SMA", "InitMarginReq",
    "MaintMarginReq", "AvailableFunds", "ExcessLiquidity", "Cushion", "FullInitMarginReq",
    "FullMaintMarginReq", "FullAvailableFunds", "FullExcessLiquidity", "LookAheadNextChange",
    "LookAheadInitMarginReq", "LookAheadMaintMarginReq", "LookAheadAvailableFunds",
    "LookAheadExcessLiquidity", "HighestSeverity", "DayTradesRemaining",
    "DayTradesRemainingT+1", "DayTradesRemainingT+2", "DayTradesRemainingT+3",
    "DayTradesRemainingT+4", "Leverage", "Currency",
)
# $LEDGER / $LEDGER:ALL: the cash-balance tags, in the base currency.
LEDGER_TAGS = ("CashBalance", "TotalCashBalance", "StockMarketValue", "OptionMarketValue",
               "NetLiquidationByCurrency", "UnrealizedPnL", "RealizedPnL", "ExchangeRate",
               "AccruedCash")
# Tags whose value is not an amount of money: no currency field (IB sends it empty).
NO_CURRENCY = {"AccountType", "Cushion", "HighestSeverity", "LookAheadNextChange",
               "DayTradesRemaining", "DayTradesRemainingT+1", "DayTradesRemainingT+2",
               "DayTradesRemainingT+3", "DayTradesRemainingT+4", "Leverage", "ExchangeRate"}


def option_margin(c: dict[str, Any], qty: float, und: float, price: float) -> float:
    """IB's uncovered option rule for a short option (0 for a long one); qty signed."""
    if qty >= 0:
        return 0.0
    k = float(c["strike"])
    mult = float(c.get("multiplier") or 100)
    if c["right"] == "P":
        otm = max(0.0, und - k)
        per_share = max(0.20 * und - otm, 0.10 * k)
    else:
        otm = max(0.0, k - und)
        per_share = max(0.20 * und - otm, 0.10 * und)
    return (per_share + price) * mult * -qty


FOREX_MARGIN = 0.03  # IB's margin on major pairs is a few percent of notional


def commission(c: dict[str, Any], qty: float, price: float) -> float:
    """IB's tiered-ish fees: options 0.65/contract, stock 0.005/share (min $1), forex
    0.2 bp of notional (min $2)."""
    if c["sec_type"] == "OPT":
        return 0.65 * qty
    if c["sec_type"] == "CASH":
        notional = qty * (price if c.get("currency") == "USD" else 1.0)
        return max(2.0, 0.00002 * notional)
    return max(1.0, 0.005 * qty)


def stock_margin(value: float) -> tuple[float, float]:
    """(initial, maintenance) for a stock position of signed market value."""
    if value >= 0:
        return 0.50 * value, 0.25 * value
    return 0.50 * -value, 0.30 * -value


@dataclass
class Book:
    """Cash and positions as the margin rules see them (a copy for a whatIf)."""

    cash: float
    positions: list[tuple[dict[str, Any], float]]  # (contract, signed qty)
    realized: float = 0.0
    unrealized: float = 0.0


@dataclass
class Figures:
    values: dict[str, float | str] = field(default_factory=dict)

    def __getitem__(self, k: str) -> float:
        return float(self.values[k])


def compute(book: Book, quote: Quote, underlying: Callable[[dict[str, Any]], float],
            prev_ewl: float | None = None) -> Figures:
    stock_value = option_value = gross = init = maint = 0.0
    for c, qty in book.positions:
        if qty == 0:
            continue
        _bid, _ask, mark = quote(c)
        if c["sec_type"] == "CASH":
            # A currency trade swaps balances (NLV unchanged); it needs ~3 % of notional.
            notional = abs(qty) * (mark if c.get("currency") == "USD" else 1.0)
            init += FOREX_MARGIN * notional
            maint += FOREX_MARGIN * notional
            continue
        mult = float(c.get("multiplier") or 1)
        value = qty * mark * mult
        gross += abs(value)
        if c["sec_type"] == "OPT":
            option_value += value
            m = option_margin(c, qty, underlying(c), mark)
            init += m
            maint += m
        elif c["sec_type"] in ("STK", "ETF"):
            stock_value += value
            i, mm = stock_margin(value)
            init += i
            maint += mm
    net = book.cash + stock_value + option_value
    ewl = book.cash + stock_value
    avail = ewl - init
    excess = ewl - maint
    prev = ewl if prev_ewl is None else prev_ewl
    v: dict[str, float | str] = {
        "AccountType": "INDIVIDUAL", "NetLiquidation": net, "TotalCashValue": book.cash,
        "SettledCash": book.cash, "AccruedCash": 0.0, "BuyingPower": max(0.0, avail) * 4,
        "EquityWithLoanValue": ewl, "PreviousDayEquityWithLoanValue": prev,
        "GrossPositionValue": gross, "RegTEquity": ewl, "RegTMargin": init,
        "SMA": max(0.0, ewl - init), "InitMarginReq": init, "MaintMarginReq": maint,
        "AvailableFunds": avail, "ExcessLiquidity": excess,
        "Cushion": excess / net if net else 0.0,
        "FullInitMarginReq": init, "FullMaintMarginReq": maint, "FullAvailableFunds": avail,
        "FullExcessLiquidity": excess, "LookAheadNextChange": 0.0,
        "LookAheadInitMarginReq": init, "LookAheadMaintMarginReq": maint,
        "LookAheadAvailableFunds": avail, "LookAheadExcessLiquidity": excess,
        "HighestSeverity": 0.0,
        # -1: no day-trade limit (IB sends it for accounts above $25,000 equity).
        "DayTradesRemaining": -1.0, "DayTradesRemainingT+1": -1.0,
        "DayTradesRemainingT+2": -1.0, "DayTradesRemainingT+3": -1.0,
        "DayTradesRemainingT+4": -1.0, "Leverage": gross / net if net else 0.0,
        "Currency": "USD",
        "CashBalance": book.cash, "TotalCashBalance": book.cash, "StockMarketValue": stock_value,
        "OptionMarketValue": option_value, "NetLiquidationByCurrency": net,
        "UnrealizedPnL": book.unrealized, "RealizedPnL": book.realized, "ExchangeRate": 1.0,
    }
    return Figures(v)


def fmt_value(tag: str, v: float | str) -> str:
    if isinstance(v, str):
        return v
    if tag in ("Cushion", "Leverage"):
        return f"{v:.6f}"
    if tag.startswith("DayTrades") or tag == "HighestSeverity" or tag == "LookAheadNextChange":
        return str(int(v))
    return f"{v:.2f}"


def currency_of(tag: str, base: bool = False) -> str:
    if tag in NO_CURRENCY:
        return ""
    return "BASE" if base else "USD"


def summary_rows(fig: Figures, tags: str) -> list[tuple[str, str, str]]:
    """(tag, value, currency) rows for a reqAccountSummary tag list: a comma list of
    tags, "All" for every tag, "$LEDGER"/"$LEDGER:ALL"/"$LEDGER:USD" for the cash
    balances. Unknown tags are skipped, as IB skips them."""
    wanted = [t.strip() for t in tags.split(",") if t.strip()]
    rows: list[tuple[str, str, str]] = []
    seen: set[str] = set()
    for t in wanted:
        if t.lower() == "all":
            names: Iterable[str] = SUMMARY_TAGS
        elif t.upper().startswith("$LEDGER"):
            ccy = t.split(":", 1)[1].upper() if ":" in t else "BASE"
            for name in LEDGER_TAGS:
                if ("$" + name) in seen:
                    continue
                seen.add("$" + name)
                rows.append((name, fmt_value(name, fig.values[name]),
                             "BASE" if ccy in ("BASE", "ALL") else "USD"))
            continue
        else:
            names = [t]
        for name in names:
            if name in fig.values and name in SUMMARY_TAGS and name not in seen:
                seen.add(name)
                v = fig.values[name]
                ccy = "USD" if name == "Currency" else currency_of(name)
                rows.append((name, fmt_value(name, v), ccy))
    return rows


def update_rows(fig: Figures) -> list[tuple[str, str, str]]:
    """(key, value, currency) rows for reqAccountUpdates: every summary key in USD,
    and the ledger keys in USD and in BASE, as IB sends them."""
    rows = [(k, fmt_value(k, fig.values[k]), "USD" if k == "Currency" else currency_of(k))
            for k in SUMMARY_TAGS]
    for k in LEDGER_TAGS:
        if k == "AccruedCash":
            continue
        for base in (False, True):
            rows.append((k, fmt_value(k, fig.values[k]), "BASE" if base else "USD"))
    return rows


class AccountModel:
    """The account values of a broker, with yesterday's equity remembered per ET day."""

    def __init__(self, broker: Any) -> None:
        self.broker = broker
        self._prev_ewl: tuple[date, float] | None = None

    def book(self) -> Book:
        b = self.broker
        unreal = 0.0
        positions = []
        for pos in b.positions.values():
            if pos["position"] == 0:
                continue
            c = pos["contract"]
            _bid, _ask, mark = b.quote_of(c)
            mult = float(c.get("multiplier") or 1)
            unreal += pos["position"] * (mark * mult - pos["avg_cost"])
            positions.append((c, float(pos["position"])))
        return Book(b.cash, positions, b.realized, unreal)

    def underlying(self, c: dict[str, Any]) -> float:
        from ibsim import universe

        inst = universe.underlying_of(c)
        m = self.broker.market
        return universe.price(inst, m) if inst else float(m.spot)

    def figures(self, book: Book | None = None) -> Figures:
        book = book or self.book()
        fig = compute(book, self.broker.quote_of, self.underlying)
        today = self.broker.market.now().date()
        if self._prev_ewl is None or self._prev_ewl[0] != today:
            # The first look of a day is its opening equity: yesterday's close.
            self._prev_ewl = (today, fig["EquityWithLoanValue"])
        fig.values["PreviousDayEquityWithLoanValue"] = self._prev_ewl[1]
        return fig

    def what_if(self, contract: dict[str, Any], action: str, qty: float,
                price: float | None, commission: float) -> dict[str, float]:
        """Margin before/change/after of a hypothetical fill; nothing is placed."""
        bid, ask, mark = self.broker.quote_of(contract)
        px = price if price is not None else (ask if action == "BUY" else bid) or mark
        return self.what_if_trades([(contract, qty if action == "BUY" else -qty, px)],
                                   commission)

    def what_if_trades(self, trades: list[tuple[dict[str, Any], float, float]],
                       commission: float) -> dict[str, float]:
        """The same for several fills at once (a combo's legs): (contract, signed qty,
        price) each."""
        before_book = self.book()
        positions = list(before_book.positions)
        paid = 0.0
        for contract, signed, px in trades:
            for i, (c, q) in enumerate(positions):
                if c["con_id"] == contract["con_id"]:
                    positions[i] = (c, q + signed)
                    break
            else:
                positions.append((contract, signed))
            # A forex trade swaps currencies at no change in value: only the fee leaves.
            if contract["sec_type"] != "CASH":
                paid += signed * px * float(contract.get("multiplier") or 1)
        after_book = Book(before_book.cash - paid - commission, positions)
        before = compute(before_book, self.broker.quote_of, self.underlying)
        after = compute(after_book, self.broker.quote_of, self.underlying)
        out: dict[str, float] = {}
        for name, tag in (("init", "InitMarginReq"), ("maint", "MaintMarginReq"),
                          ("ewl", "EquityWithLoanValue")):
            out[f"{name}_before"] = before[tag]
            out[f"{name}_after"] = after[tag]
            out[f"{name}_change"] = after[tag] - before[tag]
        out["commission"] = commission
        return out
