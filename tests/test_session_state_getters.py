"""Session.state and Session.bound read through C getters: what was set, and `bound`
exactly when the state is one of the three bound states, through every change."""

from __future__ import annotations

import pytest

from gateway.smpp import pdu as P
from gateway.smpp import session as S
from tests.test_session import bound_pair, pump

BOUND = {S.State.BOUND_TX, S.State.BOUND_RX, S.State.BOUND_TRX}


@pytest.mark.parametrize("role", list(S.Role))
def test_every_state_reads_back_with_its_bound_flag(role: S.Role) -> None:
    s = S.Session(role)
    assert s.state is S.State.OPEN and s.bound is False
    for state in [*S.State, *reversed(S.State)]:
        s.state = state
        assert s.state is state
        assert s.bound is (state in BOUND)


def test_bound_follows_a_bind_and_an_unbind() -> None:
    esme, smsc = bound_pair()
    assert esme.bound and smsc.bound
    esme.send(P.Unbind())
    assert esme.state is S.State.UNBINDING and not esme.bound
    pump(esme, smsc)
    assert smsc.state is S.State.CLOSED and not smsc.bound
    pump(smsc, esme)
    assert esme.state is S.State.CLOSED and not esme.bound


def test_bound_cannot_be_set() -> None:
    s = S.Session(S.Role.ESME)
    with pytest.raises(AttributeError):
        s.bound = True  # type: ignore[misc]
