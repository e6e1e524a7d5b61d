"""The per-message structs the cyclic GC does not track (gc=False) must never be part of a
reference cycle: their fields hold scalars, or (Job) containers of things that cannot refer
back to a Job. A field added with another type must be looked at again."""

from __future__ import annotations

import gc
import types
import typing

import msgspec

from gateway.channels import Job
from gateway.states import State
from gateway.store.base import InsertResult
from gateway.store.records import MessageRecord, SegmentRecord

_SCALARS = (str, int, float, bool, type(None))


def _leaf_types(tp: object) -> set[object]:
    """The non-union types a field annotation allows."""
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return set().union(*(_leaf_types(a) for a in args))
    return {tp}


def _scalar(tp: object) -> bool:
    if typing.get_origin(tp) is typing.Literal:
        return all(type(a) in _SCALARS for a in typing.get_args(tp))
    return tp in _SCALARS or (isinstance(tp, type) and issubclass(tp, State))


def test_records_hold_scalars_only() -> None:
    for cls in (MessageRecord, SegmentRecord):
        hints = typing.get_type_hints(cls)
        assert hints  # the structs have fields to look at
        for name, tp in hints.items():
            assert all(_scalar(t) for t in _leaf_types(tp)), f"{cls.__name__}.{name}: {tp}"


def test_insert_results_hold_a_record_and_a_bool() -> None:
    assert typing.get_type_hints(InsertResult) == {"record": MessageRecord, "existing": bool}


def test_job_fields_cannot_refer_back_to_a_job() -> None:
    allowed = {"record", "segments", "pdus", "pending", "outcomes", "receipts_in_flight", "final_move"}
    assert {f.name for f in msgspec.structs.fields(Job)} == allowed


def test_records_and_jobs_are_untracked() -> None:
    rec = MessageRecord(
        id="m1", tenant="t", source_addr="S", destination="447700900001", text="hi",
        category="otp", priority=0, data_coding=0, segment_count=1,
        created_at=1.0, updated_at=1.0, expires_at=2.0,
    )
    seg = SegmentRecord(message_id="m1", seq=1)
    job = Job(rec, [seg])
    for obj in (rec, seg, job, InsertResult(rec, False)):
        assert not gc.is_tracked(obj), type(obj).__name__
    assert gc.is_tracked(job.segments)  # a list: the collector still sees its own
