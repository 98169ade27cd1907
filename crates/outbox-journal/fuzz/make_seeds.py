#!/usr/bin/env python3
"""Writes the named seeds of corpus/record/.

Each file is named for what it is. Run from crates/outbox-journal/fuzz; it only adds or
overwrites the named seeds (what the fuzzer added since is left alone). The same bytes are read
as a record, as a message to encode and as a journal script: see
../tests/harness/record.rs.
"""
import os

# Journal script operations (op % 6) and their arguments.
RESERVE, BIND, CANCEL, ACK, SLOT_OF, RESTORE = range(6)


def restore(slot, record):
    return bytes([RESTORE, slot, len(record)]) + record


def record(topic, payload=b"", retain=0):
    return bytes([retain, len(topic)]) + topic + payload


seeds = {
    # Records as the firmware writes them.
    "record_golden": b"\x01\x0bdevice/seqs42",
    "record_retain_off_empty_payload": record(b"a/b"),
    "record_empty_topic": record(b"", b"payload"),
    "record_topic_255": record(b"t" * 255, b"p", 1),
    "record_multibyte_topic": record("é€😀/x".encode(), b"\x00\xff"),
    # Records that must be refused.
    "record_empty": b"",
    "record_one_byte": b"\x00",
    "record_unknown_retain": b"\x02\x01tp",
    "record_ends_inside_topic": b"\x00\x05abc",
    "record_topic_not_utf8": b"\x00\x02\xc3\x28payload",
    "record_topic_truncated_utf8": b"\x01\x01\xc3",
    # Journal scripts.
    "script_fill_and_overflow": bytes([RESERVE, 0] * 5),
    "script_bind_ack": bytes([RESERVE, 0, BIND, 0, 3, ACK, 3, ACK, 3]),
    "script_cancel_reserve": bytes([RESERVE, 0, RESERVE, 0, CANCEL, 0, RESERVE, 0, SLOT_OF, 0]),
    "script_boot": restore(0, b"\x00\x01tpayload")
    + restore(1, b"")
    + restore(2, b"\x05\x00")
    + restore(6, b"\x00\x01t")
    + bytes([BIND, 0, 4, RESERVE, 0, ACK, 4]),
    "script_restore_taken_slot": bytes([RESERVE, 0, BIND, 0, 1]) + restore(0, b"\x00\x01t"),
    "script_duplicate_ids": bytes([RESERVE, 0, BIND, 0, 2, RESERVE, 0, BIND, 0, 2, ACK, 2, SLOT_OF, 2]),
}

os.makedirs("corpus/record", exist_ok=True)
for name, data in seeds.items():
    with open(os.path.join("corpus/record", name), "wb") as f:
        f.write(data)
print(f"{len(seeds)} seeds")
