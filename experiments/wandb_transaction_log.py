"""Read a W&B run's transaction log (``wandb/[offline-]run-*/run-<id>.wandb``) without the network:
the run's name and group, its config and its history rows.

Written by hand because wandb >= 0.31 has no Python reader any more (the old
``wandb.sdk.internal.datastore`` moved into the Go ``wandb-core``). Two stable parts are used:
- the framing, W&B's variant of the LevelDB log format (the format ``wandb sync`` uploads, so W&B
  keeps reading files that older versions wrote): a 7-byte file header ``":W&B" | 0xBEE1 | version 0``,
  then 32 KiB blocks of chunks ``crc32 (4, little endian) | length (2) | type (1) | data``, where
  the CRC is zlib's CRC-32 of the data seeded with the CRC of the type byte, and a record is one FULL
  chunk or FIRST, MIDDLE..., LAST chunks; a block tail shorter than a header is zero padding;
- the records, ``wandb.proto.wandb_internal_pb2.Record`` protobufs (the SDK's own messages).
A run killed mid-write leaves a torn last record: reading stops there, keeps what came before and
logs a warning. A file that is not a W&B transaction log raises ``ValueError`` naming it.
"""

from __future__ import annotations

import json
import logging
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wandb.proto import wandb_internal_pb2

logger = logging.getLogger(__name__)

FILE_HEADER = struct.Struct("<4sHB")
FILE_IDENT, FILE_MAGIC, FILE_VERSION = b":W&B", 0xBEE1, 0
CHUNK_HEADER = struct.Struct("<IHB")
BLOCK_SIZE = 32 * 1024
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


@dataclass
class WandbRunLog:
    """What a transaction log says about its run; ``history`` rows hold the numbers logged in one
    ``wandb.log`` call (top-level keys only, media and nested values left out)."""

    path: Path
    wandb_id: str = ""
    display_name: str = ""
    group: str = ""
    project: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)


def _chunk_crc(chunk_type: int, data: bytes) -> int:
    return zlib.crc32(data, zlib.crc32(bytes([chunk_type]))) & 0xFFFFFFFF


def iter_records(path: Path) -> Iterator[bytes]:
    """The serialized records of a transaction log, in order, up to a torn or corrupt tail."""
    data = Path(path).read_bytes()
    if len(data) < FILE_HEADER.size or FILE_HEADER.unpack_from(data) != (FILE_IDENT, FILE_MAGIC, FILE_VERSION):
        raise ValueError(f"{path}: not a W&B transaction log (expected header :W&B, magic 0xBEE1, version 0)")
    position, pending = FILE_HEADER.size, None
    while position < len(data):
        block_left = BLOCK_SIZE - position % BLOCK_SIZE
        if block_left < CHUNK_HEADER.size:  # zero padding at the end of a block
            position += block_left
            continue
        if position + CHUNK_HEADER.size > len(data):
            break
        crc, length, chunk_type = CHUNK_HEADER.unpack_from(data, position)
        chunk = data[position + CHUNK_HEADER.size : position + CHUNK_HEADER.size + length]
        if len(chunk) < length or chunk_type not in (FULL, FIRST, MIDDLE, LAST) or crc != _chunk_crc(chunk_type, chunk):
            logger.warning("%s: torn or corrupt record at byte %d; using the records before it", path, position)
            return
        position += CHUNK_HEADER.size + length
        if chunk_type == FULL:
            yield chunk
        elif chunk_type == FIRST:
            pending = chunk
        elif pending is not None:
            pending += chunk
            if chunk_type == LAST:
                yield pending
                pending = None


def _item_path(item: Any) -> list[str]:
    return list(item.nested_key) if item.nested_key else [item.key]


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def read_transaction_log(path: str | Path) -> WandbRunLog:
    """Parse the run, config and history records of one ``.wandb`` file."""
    run_log = WandbRunLog(path=Path(path))
    for serialized in iter_records(run_log.path):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(serialized)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run = record.run
            run_log.wandb_id, run_log.display_name = run.run_id, run.display_name
            run_log.group, run_log.project = run.run_group, run.project
        elif kind == "config":
            for item in record.config.update:
                *parents, leaf = _item_path(item)
                target = run_log.config
                for key in parents:
                    target = target.setdefault(key, {})
                target[leaf] = json.loads(item.value_json)
        elif kind == "history":
            row = {}
            for item in record.history.item:
                key_path = _item_path(item)
                value = json.loads(item.value_json)
                if len(key_path) == 1 and is_number(value):
                    row[key_path[0]] = value
            run_log.history.append(row)
    return run_log
