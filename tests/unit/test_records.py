"""model.records: a measurement's own records read back, grouped by transaction; hostile records left out."""

from __future__ import annotations

from tamperscope.model.records import by_transaction, failure_of, transaction_of


def test_records_are_grouped_by_transaction_in_order_and_those_without_one_are_left_out() -> None:
    tk = {"requests": [{"transaction_id": 2, "n": 1}, {"n": "no id"}, {"transaction_id": None},
                       {"transaction_id": True}, {"transaction_id": "2"}, {"transaction_id": 2, "n": 3},
                       {"transaction_id": 1, "n": 4}, "not a record"]}
    assert by_transaction(tk, "requests") == {2: [{"transaction_id": 2, "n": 1}, {"transaction_id": 2, "n": 3}],
                                             1: [{"transaction_id": 1, "n": 4}]}
    assert by_transaction({"requests": {"transaction_id": 1}}, "requests") == {}
    assert transaction_of({"transaction_id": False}) is None and transaction_of([1]) is None


def test_only_the_first_records_up_to_the_limit_are_read() -> None:
    """A list of a million records is read up to ``limit`` (8,192 by default), not whole."""
    tk = {"queries": [{"transaction_id": i} for i in range(10)]}
    assert list(by_transaction(tk, "queries", limit=3)) == [0, 1, 2]
    assert len(by_transaction({"queries": [{"transaction_id": i} for i in range(9000)]}, "queries")) == 8192


def test_the_first_failure_is_the_groups_even_an_empty_string() -> None:
    """A failure is anything not null (an empty string too: no success); tcp_connect keeps it in ``status``;
    a failure that is no string is given as one."""
    assert failure_of([{"failure": None}, {"failure": ""}, {"failure": "connection_reset"}]) == ""
    assert failure_of([{"status": {"failure": "generic_timeout_error"}}, {"failure": "x"}]) == "generic_timeout_error"
    assert failure_of([{"status": "odd"}, {"failure": 7}]) == "7"
    assert failure_of([{"failure": None, "status": {"failure": None}}]) is None
