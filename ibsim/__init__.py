"""ibsim: a simulated IB Gateway speaking the TWS API wire protocol (server version 176)."""
