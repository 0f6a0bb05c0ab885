"""Pure domain: typed records, order refs, pricing, strikes, P&L, risk, calendar, clock. No I/O."""
