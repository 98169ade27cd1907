#!/usr/bin/env python3
"""Writes the curated seed corpus: corpus/framing/* and corpus/session/*.

Each file is named for what it is. Run from crates/mqtt-core/fuzz; it only adds or overwrites
the named seeds (what the fuzzer added since is left alone). Input layouts are documented in
../tests/harness/framing.rs and ../tests/harness/session.rs.
"""
import os

# ---------------------------------------------------------------- framing
# [chunk seed (0 = whole stream, n = pieces of 1..=n bytes), max packet size seed
#  (16 + s % 241: 240 -> 256 bytes, 0 -> 16 bytes), stream ...]
WHOLE, BYTEWISE = 0, 1
MAX256, MAX16, MAX100 = 240, 0, 84


def publish(topic, payload, qos=0, pid=1, retain=False, dup=False):
    body = len(topic).to_bytes(2, "big") + topic
    if qos:
        body += pid.to_bytes(2, "big")
    body += payload
    return bytes([0x30 | (dup << 3) | (qos << 1) | retain]) + remaining(len(body)) + body


def remaining(n):
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


CONNACK = bytes([0x20, 0x02, 0x00, 0x00])  # Mosquitto 2.0, clean session
SUBACK_QOS1 = bytes([0x90, 0x03, 0x00, 0x01, 0x01])
PINGRESP = bytes([0xD0, 0x00])

framing = {
    # The four inputs that panic mqttrs 0.4.1's decode_slice when handed to it unchecked.
    "mqttrs_panic_connack_len0": [BYTEWISE, MAX256, 0x20, 0x00],
    "mqttrs_panic_puback_len0": [BYTEWISE, MAX256, 0x40, 0x00],
    "mqttrs_panic_publish_qos1_no_pid": [BYTEWISE, MAX256, 0x32, 0x02, 0x00, 0x00],
    "mqttrs_panic_publish_topic_past_frame": [WHOLE, MAX256, 0x30, 0x02, 0x00, 0x05, *b"abcde"],
    # CONNACK
    "connack_accepted_mosquitto": [WHOLE, MAX256, *CONNACK],
    "connack_session_present": [WHOLE, MAX256, 0x20, 0x02, 0x01, 0x00],
    **{f"connack_refused_code{c}": [WHOLE, MAX256, 0x20, 0x02, 0x00, c] for c in range(1, 6)},
    "connack_code6_invalid": [WHOLE, MAX256, 0x20, 0x02, 0x00, 0x06],
    "connack_reserved_ack_flag": [WHOLE, MAX256, 0x20, 0x02, 0x02, 0x00],
    "connack_reserved_header_flag": [WHOLE, MAX256, 0x21, 0x02, 0x00, 0x00],
    "connack_len3": [WHOLE, MAX256, 0x20, 0x03, 0x00, 0x00, 0x00],
    # PUBLISH
    "publish_qos0_a_b_hello": [WHOLE, MAX256, *publish(b"a/b", b"hello")],
    "publish_qos0_empty_payload": [WHOLE, MAX256, *publish(b"t", b"")],
    "publish_qos1_retain": [WHOLE, MAX256, *publish(b"dev/1/cmd", b"on", qos=1, pid=0x1234, retain=True)],
    "publish_qos2_dup": [WHOLE, MAX256, *publish(b"a", b"x", qos=2, pid=7, dup=True)],
    "publish_utf8_topic": [WHOLE, MAX256, *publish("ü/☃".encode(), b"\x00\xff")],
    "publish_sys_topic": [WHOLE, MAX256, *publish(b"$SYS/broker/uptime", b"42 seconds")],
    "publish_qos3_invalid": [WHOLE, MAX256, 0x36, 0x05, 0x00, 0x01, 0x61, 0x00, 0x01],
    "publish_dup_on_qos0": [WHOLE, MAX256, 0x38, 0x03, 0x00, 0x01, 0x61],
    "publish_qos1_zero_pid": [WHOLE, MAX256, *publish(b"a", b"", qos=1, pid=0)],
    "publish_wildcard_topic": [WHOLE, MAX256, *publish(b"a/#", b"")],
    "publish_plus_topic": [WHOLE, MAX256, *publish(b"+", b"")],
    "publish_empty_topic": [WHOLE, MAX256, 0x30, 0x02, 0x00, 0x00],
    "publish_nul_in_topic": [WHOLE, MAX256, *publish(b"a\x00b", b"")],
    "publish_invalid_utf8_topic": [WHOLE, MAX256, *publish(b"\xc3\x28", b"")],
    "publish_len1": [WHOLE, MAX256, 0x30, 0x01, 0x00],
    # Acknowledgements
    "puback_pid1": [WHOLE, MAX256, 0x40, 0x02, 0x00, 0x01],
    "pubrec_pid_ffff": [WHOLE, MAX256, 0x50, 0x02, 0xFF, 0xFF],
    "pubrel_flags_0010": [WHOLE, MAX256, 0x62, 0x02, 0x00, 0x01],
    "pubrel_flags_0000_invalid": [WHOLE, MAX256, 0x60, 0x02, 0x00, 0x01],
    "pubcomp_zero_pid": [WHOLE, MAX256, 0x70, 0x02, 0x00, 0x00],
    "unsuback_pid2": [WHOLE, MAX256, 0xB0, 0x02, 0x00, 0x02],
    "puback_len3": [WHOLE, MAX256, 0x40, 0x03, 0x00, 0x01, 0x00],
    # SUBACK
    "suback_one_code": [WHOLE, MAX256, *SUBACK_QOS1],
    "suback_five_codes": [WHOLE, MAX256, 0x90, 0x07, 0x00, 0x01, 0x00, 0x01, 0x02, 0x80, 0x00],
    "suback_six_codes": [WHOLE, MAX256, 0x90, 0x08, 0x00, 0x01, 0, 0, 0, 0, 0, 0],
    "suback_code3_invalid": [WHOLE, MAX256, 0x90, 0x03, 0x00, 0x01, 0x03],
    "suback_no_codes": [WHOLE, MAX256, 0x90, 0x02, 0x00, 0x01],
    # PINGRESP
    "pingresp": [WHOLE, MAX256, *PINGRESP],
    "pingresp_len1": [WHOLE, MAX256, 0xD0, 0x01, 0x00],
    "pingresp_nonminimal_length": [WHOLE, MAX256, 0xD0, 0x80, 0x00],
    # Packets only a client sends, and reserved types.
    "connect_from_server": [WHOLE, MAX256, 0x10, 0x00],
    "subscribe_from_server": [WHOLE, MAX256, 0x82, 0x00],
    "unsubscribe_from_server": [WHOLE, MAX256, 0xA2, 0x00],
    "pingreq_from_server": [WHOLE, MAX256, 0xC0, 0x00],
    "disconnect_from_server": [WHOLE, MAX256, 0xE0, 0x00],
    "reserved_type0": [WHOLE, MAX256, 0x00, 0x00],
    "reserved_type15": [WHOLE, MAX256, 0xF0, 0x00],
    # Remaining length edge cases.
    "remaining_len_4byte_max": [WHOLE, MAX256, 0x30, 0xFF, 0xFF, 0xFF, 0x7F],
    "remaining_len_5byte_invalid": [WHOLE, MAX256, 0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F],
    "remaining_len_2byte_128": [WHOLE, MAX256, *publish(b"t", b"p" * 125)],
    "remaining_len_header_only": [BYTEWISE, MAX256, 0x30, 0x80],
    "frame_exactly_max256": [WHOLE, MAX256, *publish(b"t", b"p" * (256 - 6))],
    "frame_one_over_max256": [WHOLE, MAX256, *publish(b"t", b"p" * (256 - 5))],
    "frame_over_max16_refused_from_header": [BYTEWISE, MAX16, 0x30, 0x20],
    "frame_exactly_max16": [WHOLE, MAX16, *publish(b"t", b"p" * 10)],
    # Streams: several packets back to back, whole, byte by byte and in pieces.
    "stream_session_whole": [WHOLE, MAX256, *CONNACK, *SUBACK_QOS1,
                             *publish(b"a/b", b"hello", qos=1, pid=3), *PINGRESP, 0x62, 0x02, 0x00, 0x03],
    "stream_session_bytewise": [BYTEWISE, MAX256, *CONNACK, *SUBACK_QOS1,
                                *publish(b"a/b", b"hello", qos=1, pid=3), *PINGRESP],
    "stream_session_pieces_of_7": [7, MAX100, *CONNACK, *publish(b"x", b"y" * 90), *PINGRESP],
    "stream_fills_buffer_with_small_frames": [WHOLE, MAX256, *(PINGRESP * 140)],
    "stream_frame_then_garbage": [3, MAX256, *CONNACK, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF],
    "stream_ends_mid_frame": [2, MAX256, *CONNACK, *publish(b"a", b"bcdef")[:-2]],
}

# ---------------------------------------------------------------- session
# [config, max packet size seed, op, args..., ...]
# config: bit0 clean session, bits1-2 keepalive (0, 1, 5, 60 s), bits3-4 window 1..=4,
#         bit5 last will, bits6-7 will QoS.
OP_RAW, OP_RAW_IN_PLACE, OP_BROKER_READS, OP_DELIVER, OP_BROKER_PUBLISH, OP_TIME, OP_PUBLISH, \
    OP_SUBSCRIBE, OP_UNSUBSCRIBE, OP_DISCONNECT, OP_RECONNECT, OP_TRANSMIT, OP_EVENT, OP_PUMP, \
    OP_ROUND_TRIP, OP_BROKER_MISC = range(16)
TOPIC_A, TOPIC_A_B = 0, 1
FILTER_A_PLUS, FILTER_A_HASH, FILTER_HASH, FILTER_DENY, FILTER_INVALID = 1, 2, 3, 6, 9
QOS0, QOS1, QOS2 = 0, 1, 2
# Time steps: index into [0, 1, 100, 999, 1000, 2000, 3000, 5000, 30000, 61000, u64::MAX/2]
T_1S, T_3S, T_61S, T_FOREVER = 4, 6, 9, 10
DROP, DROP_AND_RECONNECT, REPLACE, FORGET = 0, 1, 2, 0x10
PERSISTENT = 0b0_11_00_0  # clean session 0, window 4, no keepalive
CLEAN_KA1 = 0b0_11_01_1  # clean session, window 4, keepalive 1 s
CONNECT = [OP_ROUND_TRIP]  # CONNECT, CONNACK, Connected


def pub(topic, qos, filler=8, retain=False):
    return [OP_PUBLISH, topic | (qos << 3) | (0x80 if retain else 0), filler]


def sub(*filters, qos=QOS1):
    return [OP_SUBSCRIBE, len(filters), *[f | (qos << 4) for f in filters]]


def unsub(*filters):
    return [OP_UNSUBSCRIBE, len(filters), *filters]


def room(n):
    """The application's room for messages: 0..=3, or 4 for no limit (OP_BROKER_MISC 0bxxxxxx11)."""
    return [OP_BROKER_MISC, 0b11 | (n << 2)]


def raw(data):
    data = bytes(data)
    return [OP_RAW, len(data) - 1, *data]


session = {
    "connect_only": [PERSISTENT, MAX256],
    "connect_clean_keepalive": [CLEAN_KA1, MAX256, *CONNECT],
    "publish_qos0_qos1_qos2": [PERSISTENT, MAX256, *CONNECT, *pub(TOPIC_A, QOS0), *pub(TOPIC_A, QOS1),
                               *pub(TOPIC_A_B, QOS2, retain=True), OP_ROUND_TRIP],
    "publish_while_offline_then_connect": [PERSISTENT, MAX256, OP_RECONNECT, DROP, *pub(TOPIC_A, QOS1),
                                           *pub(TOPIC_A, QOS2), OP_RECONNECT, DROP_AND_RECONNECT],
    "outbox_full": [PERSISTENT, MAX256, *(pub(TOPIC_A, QOS1) * 5)],
    "publish_too_large_for_slot": [PERSISTENT, MAX256, *pub(TOPIC_A, QOS1, filler=127)],
    "qos1_resend_with_dup_after_drop": [PERSISTENT, MAX256, *CONNECT, *pub(TOPIC_A, QOS1), OP_PUMP,
                                        OP_RECONNECT, DROP_AND_RECONNECT, OP_ROUND_TRIP],
    "qos2_pubrec_lost_resume": [PERSISTENT, MAX256, *CONNECT, *pub(TOPIC_A, QOS2), OP_PUMP,
                                OP_BROKER_READS, 0, OP_RECONNECT, DROP_AND_RECONNECT, OP_ROUND_TRIP],
    "qos2_pubrel_resent_after_drop": [PERSISTENT, MAX256, *CONNECT, *pub(TOPIC_A, QOS2), OP_PUMP,
                                      OP_BROKER_READS, 0, OP_DELIVER, 0, 15, OP_EVENT, OP_TRANSMIT, 95,
                                      OP_RECONNECT, DROP_AND_RECONNECT, OP_ROUND_TRIP],
    "qos2_resume_without_session": [PERSISTENT, MAX256, *CONNECT, *pub(TOPIC_A, QOS2), OP_PUMP,
                                    OP_BROKER_READS, 0, OP_RECONNECT, DROP_AND_RECONNECT | FORGET,
                                    OP_ROUND_TRIP],
    "inbound_qos1_qos2": [PERSISTENT, MAX256, *CONNECT, OP_BROKER_PUBLISH, TOPIC_A | (QOS1 << 3), 5,
                          OP_BROKER_PUBLISH, TOPIC_A_B | (QOS2 << 3), 9, OP_ROUND_TRIP],
    "inbound_qos2_redelivered_after_drop": [PERSISTENT, MAX256, *CONNECT,
                                            OP_BROKER_PUBLISH, TOPIC_A | (QOS2 << 3), 5,
                                            OP_DELIVER, 0, 3, OP_EVENT, OP_RECONNECT, DROP_AND_RECONNECT,
                                            OP_ROUND_TRIP],
    "inbound_publishes_fill_ack_queue": [PERSISTENT, MAX256, *CONNECT,
                                         *([OP_BROKER_PUBLISH, TOPIC_A | (QOS1 << 3), 0] * 16),
                                         OP_DELIVER, 0, 16, OP_EVENT, OP_EVENT, OP_ROUND_TRIP],
    "inbound_publish_at_max_packet_size": [PERSISTENT, MAX100, *CONNECT,
                                           OP_BROKER_PUBLISH, TOPIC_A | (QOS1 << 3), 200, OP_ROUND_TRIP],
    "subscribe_unsubscribe": [PERSISTENT, MAX256, *CONNECT, *sub(FILTER_A_PLUS, FILTER_HASH), OP_ROUND_TRIP,
                              *unsub(FILTER_HASH), OP_ROUND_TRIP],
    "subscribe_refused_filter": [PERSISTENT, MAX256, *CONNECT, *sub(FILTER_A_PLUS, FILTER_DENY), OP_ROUND_TRIP],
    "subscribe_invalid_filter": [PERSISTENT, MAX256, *CONNECT, *sub(FILTER_INVALID)],
    "subscribe_six_filters": [PERSISTENT, MAX256, OP_SUBSCRIBE, 6, 0, 1, 2, 3, 4, 5],
    "subscriptions_restored_without_session": [PERSISTENT, MAX256, *CONNECT, *sub(FILTER_A_PLUS),
                                               OP_ROUND_TRIP, OP_RECONNECT, DROP_AND_RECONNECT | FORGET,
                                               OP_ROUND_TRIP],
    "unsubscribe_while_offline": [PERSISTENT, MAX256, *CONNECT, *sub(FILTER_A_HASH), OP_ROUND_TRIP,
                                  OP_RECONNECT, DROP, *unsub(FILTER_A_HASH), OP_RECONNECT, DROP_AND_RECONNECT],
    "keepalive_ping_answered": [CLEAN_KA1, MAX256, *CONNECT, OP_TIME, T_1S, OP_ROUND_TRIP, OP_TIME, T_1S,
                                OP_ROUND_TRIP],
    "keepalive_ping_timeout": [CLEAN_KA1, MAX256, *CONNECT, OP_TIME, T_1S, OP_PUMP, OP_TIME, T_3S, OP_EVENT],
    "connack_timeout": [PERSISTENT, MAX256, OP_PUMP, OP_TIME, T_3S, OP_EVENT],
    "time_jumps_to_the_end": [CLEAN_KA1, MAX256, *CONNECT, OP_TIME, T_FOREVER, OP_TIME, T_FOREVER, OP_ROUND_TRIP],
    "connect_refused_then_accepted": [PERSISTENT, MAX256, OP_BROKER_MISC, 2 << 1, OP_ROUND_TRIP,
                                      OP_RECONNECT, DROP_AND_RECONNECT],
    "disconnect_requested": [PERSISTENT, MAX256, *CONNECT, *pub(TOPIC_A, QOS1), OP_DISCONNECT, OP_ROUND_TRIP],
    "transmit_into_tiny_buffers": [PERSISTENT, MAX256, OP_TRANSMIT, 0, OP_TRANSMIT, 5, OP_TRANSMIT, 40,
                                   OP_BROKER_READS, 0, OP_DELIVER, 0, 0, OP_EVENT, *pub(TOPIC_A_B, QOS1, 60),
                                   OP_TRANSMIT, 3, OP_TRANSMIT, 90],
    "replace_transport_without_disconnect": [PERSISTENT, MAX256, *CONNECT, *pub(TOPIC_A, QOS2), OP_PUMP,
                                             OP_RECONNECT, REPLACE, OP_ROUND_TRIP],
    # Raw broker bytes after CONNACK: the mqttrs-panicking inputs, a flood, and a second CONNACK.
    **{f"raw_after_connack_{name}": [PERSISTENT, MAX256, *CONNECT, *raw(data), OP_PUMP]
       for name, data in [("connack_len0", [0x20, 0x00]), ("puback_len0", [0x40, 0x00]),
                          ("publish_qos1_no_pid", [0x32, 0x02, 0x00, 0x00]),
                          ("publish_topic_past_frame", [0x30, 0x02, 0x00, 0x05, *b"abcde"]),
                          ("second_connack", CONNACK),
                          ("remaining_len_5byte", [0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F])]},
    "raw_flood_over_receive_buffer": [PERSISTENT, MAX256, *CONNECT, *(raw([0x30, 0x7F] + [0] * 62) * 5), OP_PUMP],
    "raw_in_place_pingresp": [PERSISTENT, MAX256, *CONNECT, OP_RAW_IN_PLACE, 1, 0xD0, 0x00, OP_EVENT],
    # Bugs the fuzzer found in src/session.rs, fixed since (tests/subscription_requests.rs).
    "bug_duplicate_filter_in_subscribe_outlives_unsubscribe": [PERSISTENT, MAX256, *CONNECT,
                                                               *sub(FILTER_A_PLUS, FILTER_A_PLUS), *unsub(FILTER_A_PLUS)],
    "bug_resubscribe_while_suback_pending_drops_connection": [PERSISTENT, MAX256, *CONNECT,
                                                              *sub(FILTER_A_PLUS, FILTER_HASH), OP_PUMP,
                                                              *sub(FILTER_A_PLUS), OP_ROUND_TRIP],
    "bug_unsubscribe_while_suback_pending_drops_connection": [PERSISTENT, MAX256, *CONNECT,
                                                              *sub(FILTER_A_PLUS, FILTER_HASH), OP_PUMP,
                                                              *unsub(FILTER_A_PLUS), OP_ROUND_TRIP],
    # Open bug: a CONNACK that arrives before CONNECT is written is accepted and CONNECT is
    # never sent (tests/known_bugs.rs).
    "bug_connack_before_connect_skips_connect": [PERSISTENT, MAX256, *CONNECT, *sub(FILTER_A_HASH),
                                                 OP_RECONNECT, REPLACE, *raw(CONNACK), OP_PUMP],
    "raw_puback_for_inflight": [PERSISTENT, MAX256, *CONNECT, *pub(TOPIC_A, QOS1), OP_PUMP,
                                *raw([0x40, 0x02, 0x00, 0x01]), OP_EVENT],
    # A harness bug: a raw byte that makes a PUBLISH oversized, then more than the receive
    # buffer delivered without a poll while its body is read past (discarded as it arrives).
    "bug_harness_read_past_counted_against_the_receive_buffer": [
        PERSISTENT, MAX256, *CONNECT, OP_BROKER_PUBLISH, TOPIC_A | (QOS1 << 3), 5, OP_DELIVER, 1, 0,
        *raw([0xA2]), OP_DELIVER, 0, 15, OP_EVENT, OP_EVENT,
        *([OP_BROKER_PUBLISH, TOPIC_A | (QOS1 << 3), 100] * 10), OP_DELIVER, 0, 15],
    # Back-pressure: the broker's messages held while the application has no room, the
    # acknowledgements of our own read past them, the buffer full of held QoS 1 or QoS 0.
    "backpressure_held_while_our_puback_is_read_past": [PERSISTENT, MAX256, *CONNECT, *room(0),
                                                        *pub(TOPIC_A, QOS1), OP_PUMP,
                                                        *([OP_BROKER_PUBLISH, TOPIC_A | (QOS1 << 3), 4] * 3),
                                                        OP_BROKER_READS, 0, OP_DELIVER, 0, 0, OP_PUMP,
                                                        *room(2), OP_ROUND_TRIP, *room(4), OP_ROUND_TRIP],
    "backpressure_buffer_full_of_held_qos1": [PERSISTENT, MAX256, *CONNECT, *room(0),
                                              *([OP_BROKER_PUBLISH, TOPIC_A | (QOS1 << 3), 60] * 6),
                                              OP_ROUND_TRIP, *room(1), OP_ROUND_TRIP],
    "backpressure_buffer_full_of_held_qos0": [PERSISTENT, MAX256, *CONNECT, *room(0),
                                              *([OP_BROKER_PUBLISH, TOPIC_A | (QOS0 << 3), 60] * 6),
                                              OP_ROUND_TRIP],
}


def write(directory, seeds):
    os.makedirs(directory, exist_ok=True)
    for name, data in seeds.items():
        with open(os.path.join(directory, name), "wb") as f:
            f.write(bytes(data))


write("corpus/framing", framing)
write("corpus/session", session)
print(f"{len(framing)} framing seeds, {len(session)} session seeds")
