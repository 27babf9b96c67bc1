"""Execution: target positions from the bus -> sized, risk-checked, idempotent broker orders.

    EXECUTION_BROKER=ib python -m execution     # IB through ib_async (default: ibsim on :4002)
    EXECUTION_BROKER=sim python -m execution    # in-process broker: next bar's open + costs

Modules: ``broker`` (the ``Broker`` port and its value types), ``sim_broker``, ``ib_broker``
(with ``ib_orders``, ``ib_contracts``, ``ib_translation``: ib_async objects -> port value types,
``fill_book``: which fills are booked),
``risk`` (sizing, limits, trading hours), ``order_journal`` (SQLite: references written before
sending), ``service`` (the asyncio loop), ``config`` (env + ``shared.paper_config``), ``bench``.
"""
