"""rltrader's own library: the contracts every service relies on.

Messages (``messages``), the ZeroMQ bus (``bus``, ``busproxy``), command authentication (``auth``),
typed configuration from the environment (``config``), JSON-lines logging (``logs``), and the
trading core shared by training, backtest and live serving (data, features, env, costs, backtest,
metrics, manifest).
"""
