"""Framing, field encoding and request parsing of the simulator, checked against ib_async itself."""

import struct

import pytest
from ib_async import Contract, LimitOrder, MarketOrder, Order, Stock, StopOrder
from ib_async.client import Client
from ibsim.requests import (
    RequestRejected,
    parse_cancel_order,
    parse_executions_request,
    parse_historical_request,
    parse_place_order,
)
from ibsim.wire import (
    UNSET_DOUBLE,
    FieldReader,
    FrameReader,
    ProtocolError,
    encode_frame,
    format_field,
    parse_version_range,
)

pytestmark = pytest.mark.unit


class CapturingConnection:
    """Stands in for ib_async's socket so we get the exact bytes the client would send."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.numBytesSent = 0
        self.numMsgSent = 0

    def sendMsg(self, msg: bytes) -> None:
        self.sent.append(msg)


def client_at_157() -> tuple[Client, CapturingConnection]:
    client = Client(wrapper=None)
    conn = CapturingConnection()
    client.conn = conn  # type: ignore[assignment]
    client.connState = Client.CONNECTED
    client._serverVersion = 157
    client.MaxRequests = 0  # no throttling in tests
    return client, conn


def sent_fields(conn: CapturingConnection) -> list[list[str]]:
    reader = FrameReader(expect_handshake=False)
    return [fields for raw in conn.sent for fields in reader.feed(raw)]


def test_frames_round_trip_and_split_anywhere() -> None:
    data = encode_frame([3, "AAPL", 1.5, True, None, ""]) + encode_frame([9, 1, 42])
    reader = FrameReader(expect_handshake=False)
    messages = [m for i in range(len(data)) for m in reader.feed(data[i : i + 1])]
    assert messages == [["3", "AAPL", "1.5", "1", "", ""], ["9", "1", "42"]]


def test_handshake_prefix_and_version_range() -> None:
    reader = FrameReader()
    payload = b"v157..178 +PACEAPI"
    (fields,) = reader.feed(b"API\x00" + struct.pack(">I", len(payload)) + payload)
    assert parse_version_range(fields[0]) == (157, 178)
    with pytest.raises(ProtocolError):
        FrameReader().feed(b"GET / HTTP/1.1\r\n")
    with pytest.raises(ProtocolError):
        parse_version_range("157..178")


def test_oversized_frame_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError):
        FrameReader(expect_handshake=False).feed(struct.pack(">I", 0x1000000) + b"x")


def test_field_formatting_matches_what_decoders_expect() -> None:
    assert format_field(100.0) == "100"  # int() of it must work for int fields
    assert format_field(100.25) == "100.25"
    assert format_field(False) == "0"
    assert format_field(None) == ""
    assert float(format_field(UNSET_DOUBLE)) == UNSET_DOUBLE


def test_field_reader_defaults_and_unset() -> None:
    reader = FieldReader(["", "7", "", "1.7976931348623157E308", "2.5", "1"])
    assert reader.integer() == 0
    assert reader.integer() == 7
    assert reader.number() is None
    assert reader.number() is None  # the API's unset marker
    assert reader.number() == 2.5
    assert reader.flag() is True
    with pytest.raises(ProtocolError):
        reader.text()


@pytest.mark.parametrize(
    "order",
    [
        MarketOrder("BUY", 100, orderRef="strat-AAPL-17"),
        LimitOrder("SELL", 25.5, 101.25, orderRef="lmt", tif="GTC", outsideRth=True),
        StopOrder("SELL", 10, 95.0, parentId=41, transmit=False, ocaGroup="g1", ocaType=3),
        Order(
            orderType="LMT",
            action="BUY",
            totalQuantity=1,
            lmtPrice=1.0,
            whatIf=True,
            algoStrategy="Adaptive",
            hedgeType="F",
            hedgeParam="1",
        ),
    ],
)
def test_place_order_parser_reads_ib_async_bytes(order: Order) -> None:
    client, conn = client_at_157()
    client.placeOrder(42, Stock("AAPL", "SMART", "USD"), order)
    (fields,) = sent_fields(conn)
    request = parse_place_order(fields)
    assert request.order_id == 42
    assert request.contract.symbol == "AAPL" and request.contract.exchange == "SMART"
    assert request.action == order.action
    assert request.total_qty == order.totalQuantity
    assert request.order_type == order.orderType
    assert request.lmt_price == (None if order.lmtPrice == UNSET_DOUBLE else order.lmtPrice)
    assert request.aux_price == (None if order.auxPrice == UNSET_DOUBLE else order.auxPrice)
    assert request.order_ref == order.orderRef
    assert request.transmit == order.transmit
    assert request.parent_id == order.parentId
    assert request.oca_group == order.ocaGroup and request.oca_type == order.ocaType
    assert request.outside_rth == order.outsideRth
    assert request.what_if == order.whatIf  # proves the walk over the variable tail is aligned


def test_combo_orders_are_refused_with_an_order_error() -> None:
    client, conn = client_at_157()
    client.placeOrder(
        5, Contract(secType="BAG", symbol="AAPL", exchange="SMART"), MarketOrder("BUY", 1)
    )
    (fields,) = sent_fields(conn)
    with pytest.raises(RequestRejected) as info:
        parse_place_order(fields)
    assert info.value.req_id == 5 and info.value.code == 201


def test_other_request_parsers_read_ib_async_bytes() -> None:
    from ib_async import ExecutionFilter

    client, conn = client_at_157()
    client.cancelOrder(77)
    client.reqExecutions(9, ExecutionFilter(clientId=3, symbol="MSFT", side="BUY"))
    client.reqHistoricalData(
        11, Stock("IBM", "SMART", "USD"), "", "2 D", "5 mins", "TRADES", True, 2, True, []
    )
    cancel, executions, historical = sent_fields(conn)
    assert parse_cancel_order(cancel) == 77
    req_id, query = parse_executions_request(executions)
    assert (req_id, query.client_id, query.symbol, query.side) == (9, 3, "MSFT", "BUY")
    request = parse_historical_request(historical)
    assert (request.req_id, request.contract.symbol, request.duration, request.bar_size) == (
        11,
        "IBM",
        "2 D",
        "5 mins",
    )
    assert request.format_date == 2 and request.keep_up_to_date and request.use_rth
