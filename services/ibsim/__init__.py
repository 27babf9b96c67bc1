"""ibsim: an IB Gateway simulator that speaks the TWS API wire protocol (server version 157).

The unchanged ``ib_async`` client connects to it like to TWS / IB Gateway (default
127.0.0.1:4002) and trades US stocks against bars from the project's bus (``bar.<SYM>``) or pushed
by tests. Modules, in the order a message travels:

- ``wire``: framing and field encoding; ``requests``: incoming messages -> typed requests;
- ``server``: asyncio server, client ids, dispatch, order requests and order-event routing;
  ``session``: one ``ClientSession`` per connection and the limits a hostile client meets
  (connection cap, handshake and frame timeouts, frame size); ``account_requests`` and
  ``market_data_requests``: the request handlers of their kind;
- ``exchange``: orders, matching on bars, the execution record (``account_book``: cash,
  positions, account values; ``order_book``: orders by id, parent, OCA group; ``matching``: fill
  prices; ``order_checks``: refusals and the margin check; ``execution_filter``;
  ``exchange_listener``; ``commissions``, ``contracts``, ``bars``, ``journal``, ``models`` support
  it); every start is a new session whose token is in each exec id, so a re-run never repeats one;
- ``encoders``: one function per outgoing message, written from ib_async's decoder for 157;
- ``faults`` + ``control``: fault switches and the JSON-lines control port (default 4003), which
  validates every field of every command and answers ``"<field>: <why>"``;
- ``pricefeed``: the bus subscription; ``app``: wiring; ``config``: ``IBSIM_*`` settings;
- ``process``: run ``python -m ibsim`` from tests; ``bench``: ``bench_order_ack(n)``.
"""
