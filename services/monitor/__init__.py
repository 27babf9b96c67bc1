"""monitor: the SQLite ledger of orders and fills, PnL computation and the PnL log feed."""
