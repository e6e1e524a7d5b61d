"""read_receipt_outcome (run by `check`) takes the text's id and stat only when the TLVs
leave them needed: each combination of the two TLVs (present, absent, a state no MessageState has, a blank
id) gives receipt_outcome's reading of the strictly decoded PDU."""

from __future__ import annotations

import pytest

from gateway.smpp import pdu as P
from gateway.smpp.receipt import receipt_outcome, receipt_outcome_read
from tests.test_receipt_reads import MS, RMI, TEXT, check


@pytest.mark.parametrize("rid", [None, "1F", " 0x1f ", "\0", ""])
@pytest.mark.parametrize("state", [None, 2, 5, 0, 9, 255])
@pytest.mark.parametrize("stat", ["DELIVRD", "UNDELIV", "bogus"])
@pytest.mark.parametrize("esm", [0x04, 0x20])
def test_each_tlv_combination_reads_as_receipt_outcome(rid, state, stat, esm) -> None:
    tlvs = []
    if rid is not None:
        tlvs.append(P.Tlv(RMI, rid))
    if state is not None:
        tlvs.append(P.Tlv(MS, state))
    b = P.DeliverSm(
        sequence_number=4, esm_class=esm, short_message=TEXT.format("2a", stat, "021").encode(), tlvs=tlvs
    ).encode()
    read = check(b)  # the read and its outcome against the strict decoder's PDU
    assert read is not None
    outcome = receipt_outcome_read(read)
    assert outcome == receipt_outcome(P.decode(b))
    assert outcome is not None and outcome[2] == "021"
