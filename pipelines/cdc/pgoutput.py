"""A decoder for PostgreSQL's `pgoutput` logical-replication messages (protocol version 1).

Input: the `data` bytes of `pg_logical_slot_peek_binary_changes(...)` rows. Only committed
transactions reach us (version 1 never streams in-progress ones). Column values stay as
PostgreSQL's text output; `values.py` converts them. Reference: the PostgreSQL manual,
"Logical Replication Message Formats".
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

# Tuple-data markers of a column value.
NULL = None


class _Unchanged:
    """A TOASTed value an UPDATE did not touch: pgoutput leaves it out; keep the old one."""

    def __repr__(self) -> str:
        return "UNCHANGED_TOAST"


UNCHANGED_TOAST = _Unchanged()
PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)

_I8 = struct.Struct("!b")
_I16 = struct.Struct("!h")
_I32 = struct.Struct("!i")
_U32 = struct.Struct("!I")
_I64 = struct.Struct("!q")
_i16_at, _i32_at, _u32_at = _I16.unpack_from, _I32.unpack_from, _U32.unpack_from
_begin_at = struct.Struct("!qqI").unpack_from  # final LSN, commit time, xid
_commit_at = struct.Struct("!qqq").unpack_from  # commit LSN, end LSN, commit time (after flags)


@dataclass(frozen=True)
class Column:
    name: str
    type_oid: int
    type_modifier: int
    is_key: bool


@dataclass(frozen=True)
class Relation:
    id: int
    namespace: str
    name: str
    replica_identity: str
    columns: tuple[Column, ...]


@dataclass(frozen=True)
class Begin:
    final_lsn: int
    commit_time: datetime
    xid: int


@dataclass(frozen=True)
class Commit:
    commit_lsn: int
    end_lsn: int
    commit_time: datetime


Values = tuple  # of str | None | UNCHANGED_TOAST, one per relation column


@dataclass(frozen=True)
class Insert:
    relation_id: int
    new: Values


@dataclass(frozen=True)
class Update:
    relation_id: int
    new: Values
    old: Values | None  # the old key or row, when the replica identity sends it


@dataclass(frozen=True)
class Delete:
    relation_id: int
    old: Values  # the key columns (others NULL) under the default replica identity


@dataclass(frozen=True)
class Truncate:
    relation_ids: tuple[int, ...]


Message = Begin | Commit | Relation | Insert | Update | Delete | Truncate


def _timestamp(micros: int) -> datetime:
    return PG_EPOCH + timedelta(microseconds=micros)


class _Reader:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = memoryview(data)
        self.pos = 0

    def byte(self) -> str:
        value = chr(self.data[self.pos])
        self.pos += 1
        return value

    def unpack(self, fmt: struct.Struct) -> int:
        (value,) = fmt.unpack_from(self.data, self.pos)
        self.pos += fmt.size
        return value

    def string(self) -> str:
        end = bytes(self.data[self.pos :]).index(0) + self.pos
        value = bytes(self.data[self.pos : end]).decode()
        self.pos = end + 1
        return value


def _tuple_data(data: bytes, pos: int) -> tuple[Values, int]:
    """The values of a TupleData at `pos`, and the position after it. The hot path of the
    stream (every row change), hence bytes and byte codes rather than a reader object."""
    (count,) = _i16_at(data, pos)
    pos += 2
    values: list = []
    append = values.append
    for _ in range(count):
        kind = data[pos]
        if kind == 0x74:  # 't': text
            (length,) = _i32_at(data, pos + 1)
            start = pos + 5
            pos = start + length
            append(data[start:pos].decode())
            continue
        pos += 1
        if kind == 0x6E:  # 'n'
            append(NULL)
        elif kind == 0x75:  # 'u'
            append(UNCHANGED_TOAST)
        else:
            raise ValueError(f"unsupported tuple value kind {chr(kind)!r} (binary mode is off)")
    return tuple(values), pos


def decode(data: bytes) -> Message | None:
    """One message; None for kinds the relay does not need (origin, type, logical message)."""
    if not isinstance(data, bytes):
        data = bytes(data)
    kind = data[0]
    # Row changes: byte 5 says which tuple follows the relation id ('N' new, 'K' key, 'O' old).
    if kind == 0x49:  # 'I'
        return Insert(_u32_at(data, 1)[0], _tuple_data(data, 6)[0])
    if kind == 0x55:  # 'U'
        old, pos = None, 6
        if data[5] in (0x4B, 0x4F):  # the old key or row, then 'N' and the new row
            old, pos = _tuple_data(data, 6)
            pos += 1
        return Update(_u32_at(data, 1)[0], _tuple_data(data, pos)[0], old)
    if kind == 0x44:  # 'D'
        return Delete(_u32_at(data, 1)[0], _tuple_data(data, 6)[0])
    if kind == 0x42:  # 'B'
        final_lsn, commit_time, xid = _begin_at(data, 1)
        return Begin(final_lsn, _timestamp(commit_time), xid)
    if kind == 0x43:  # 'C', then flags (unused)
        commit_lsn, end_lsn, commit_time = _commit_at(data, 2)
        return Commit(commit_lsn, end_lsn, _timestamp(commit_time))
    reader = _Reader(data)
    kind = reader.byte()
    if kind == "R":
        relation_id = reader.unpack(_U32)
        namespace, name = reader.string(), reader.string()
        identity = reader.byte()
        columns = []
        for _ in range(reader.unpack(_I16)):
            flags = reader.unpack(_I8)
            column_name = reader.string()
            type_oid = reader.unpack(_U32)
            columns.append(Column(column_name, type_oid, reader.unpack(_I32), bool(flags & 1)))
        return Relation(relation_id, namespace, name, identity, tuple(columns))
    if kind == "T":
        count = reader.unpack(_I32)
        reader.unpack(_I8)  # options (CASCADE / RESTART IDENTITY)
        return Truncate(tuple(reader.unpack(_U32) for _ in range(count)))
    return None  # 'O' origin, 'Y' type, 'M' message


def lsn_to_int(lsn: str) -> int:
    """'16/B374D848' -> 97500059720."""
    high, low = lsn.split("/")
    return (int(high, 16) << 32) | int(low, 16)


def int_to_lsn(value: int) -> str:
    return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"
