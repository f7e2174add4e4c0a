"""Data at rest: keys, field envelopes, blind indexes, the chunked encrypted file format, modes."""

from __future__ import annotations

import os
import stat

import pytest

from voicebot.crypto import (
    DataKeyError,
    DecryptionError,
    EncryptedFileReader,
    EncryptedFileWriter,
    Keyring,
    generate_key_entry,
    is_encrypted_file,
    open_private,
    read_stored_file,
    reencrypt_file,
    tighten_tree,
    unseal,
    write_stored_file,
)

KEY1 = generate_key_entry("k1")
KEY2 = generate_key_entry("k2")


def test_key_format_errors_name_the_variable_and_the_fix():
    with pytest.raises(DataKeyError, match="VOICEBOT_DATA_KEY.*no key id"):
        Keyring.parse("c2VjcmV0")
    with pytest.raises(DataKeyError, match="not 32 bytes.*data-key generate"):
        Keyring.parse("k1:c2hvcnQ=")
    with pytest.raises(DataKeyError, match="appears twice"):
        Keyring.parse(f"{KEY1},{KEY1}")
    assert Keyring.parse("") is None
    ring = Keyring.parse(f"{KEY2}, {KEY1}")
    assert ring is not None and ring.primary.kid == "k2" and set(ring.by_kid) == {"k1", "k2"}


def test_field_round_trip_hides_the_value_and_binds_it_to_its_place():
    ring = Keyring.parse(KEY1)
    sealed = ring.encrypt_field("Ada Lovelace", "interviews/candidate_name/iv_1")
    assert "Ada" not in sealed and sealed.startswith("vbenc1.k1.")
    assert ring.decrypt_field(sealed, "interviews/candidate_name/iv_1") == "Ada Lovelace"
    with pytest.raises(DecryptionError, match="iv_2.*fails authentication"):
        ring.decrypt_field(sealed, "interviews/candidate_name/iv_2")  # swapped between rows
    tampered = sealed[:-6] + ("A" if sealed[-6] != "A" else "B") + sealed[-5:]
    with pytest.raises(DecryptionError, match="fails authentication"):
        ring.decrypt_field(tampered, "interviews/candidate_name/iv_1")
    assert ring.decrypt_field("plain old value", "x") == "plain old value"


def test_rotation_old_values_read_with_both_keys_and_refused_once_the_old_key_is_gone():
    old = Keyring.parse(KEY1)
    sealed = old.encrypt_field("+14155550123", "calls/from_number/CA1")
    both = Keyring.parse(f"{KEY2},{KEY1}")
    assert both.decrypt_field(sealed, "calls/from_number/CA1") == "+14155550123"
    resealed = both.encrypt_field("+14155550123", "calls/from_number/CA1")
    assert resealed.startswith("vbenc1.k2.")
    new_only = Keyring.parse(KEY2)
    assert new_only.decrypt_field(resealed, "calls/from_number/CA1") == "+14155550123"
    with pytest.raises(DecryptionError, match="key id 'k1'.*does not hold"):
        new_only.decrypt_field(sealed, "calls/from_number/CA1")
    with pytest.raises(DecryptionError, match="not set"):
        unseal(None, sealed, "calls/from_number/CA1")


def test_blind_index_is_keyed_and_found_under_every_key():
    one = Keyring.parse(KEY1)
    both = Keyring.parse(f"{KEY2},{KEY1}")
    index = one.blind_index("+14155550123", "phone")
    assert "4155550123" not in index
    assert index in both.blind_indexes("+14155550123", "phone")
    assert both.blind_index("+14155550123", "phone") != index
    assert one.blind_index("+14155550124", "phone") != index


def test_chunked_file_streams_and_serves_ranges(tmp_path):
    ring = Keyring.parse(KEY1)
    path = tmp_path / "CA1" / "call.wav"
    data = os.urandom(10_000) + b"the candidate said hello" + os.urandom(5_000)
    with EncryptedFileWriter(path, ring, chunk_size=4096) as writer:
        writer.write(data[:7000])
        writer.flush()  # a short chunk, as a recorder flushing each second writes
        writer.write(data[7000:])
    raw = path.read_bytes()
    assert b"the candidate said hello" not in raw and is_encrypted_file(path)
    with EncryptedFileReader(path, ring) as reader:
        assert reader.size == len(data) and reader.complete
        assert reader.read_all() == data
        assert b"".join(reader.read_range(9000, 10_030)) == data[9000:10_030]
    assert read_stored_file(path, ring) == data


def test_chunked_file_refuses_tampering_truncation_and_moving(tmp_path):
    ring = Keyring.parse(KEY1)
    path = tmp_path / "CA1" / "call.wav"
    with EncryptedFileWriter(path, ring, chunk_size=1000) as writer:
        writer.write(b"x" * 3500)
    raw = bytearray(path.read_bytes())
    flipped = tmp_path / "CA1" / "flipped.wav"
    raw_flipped = bytearray(raw)
    raw_flipped[len(raw) // 2] ^= 1
    flipped.write_bytes(bytes(raw_flipped))
    with pytest.raises(DecryptionError, match="fails authentication"):
        with EncryptedFileReader(flipped, ring, context="CA1/call.wav") as reader:
            reader.read_all()
    cut = tmp_path / "CA1" / "cut.wav"
    cut.write_bytes(bytes(raw[: len(raw) - 1021]))  # the last chunk dropped
    with pytest.raises(DecryptionError, match="cut short"):
        EncryptedFileReader(cut, ring, context="CA1/call.wav")
    moved = tmp_path / "CA2" / "call.wav"
    moved.parent.mkdir()
    moved.write_bytes(bytes(raw))  # another call's recording put in its place
    with pytest.raises(DecryptionError, match="fails authentication"):
        read_stored_file(moved, ring)


def test_a_crashed_writer_is_continued_by_appending(tmp_path):
    ring = Keyring.parse(KEY1)
    path = tmp_path / "CA1" / "timeline.jsonl"
    writer = EncryptedFileWriter(path, ring)
    writer.write(b'{"t": 1}\n')
    writer.flush()
    writer.write(b'{"t": 1.5}\n')  # not flushed when the process died
    writer.abandon()
    with open(path, "ab") as torn:
        torn.write(b"\x00\x00\x00")  # half a chunk head, as a crash mid-write leaves
    assert read_stored_file(path, ring, allow_truncated=True) == b'{"t": 1}\n'
    with EncryptedFileWriter(path, ring, append=True) as writer:
        writer.write(b'{"t": 2}\n')
    assert read_stored_file(path, ring) == b'{"t": 1}\n{"t": 2}\n'


def test_reencrypt_file_moves_it_to_the_current_key(tmp_path):
    path = tmp_path / "CA1" / "call.wav"
    path.parent.mkdir()
    path.write_bytes(b"RIFF plain wav")
    ring1 = Keyring.parse(KEY1)
    assert reencrypt_file(path, ring1) and is_encrypted_file(path)
    both = Keyring.parse(f"{KEY2},{KEY1}")
    assert reencrypt_file(path, both)
    assert not reencrypt_file(path, both)
    assert read_stored_file(path, Keyring.parse(KEY2)) == b"RIFF plain wav"


def test_private_modes_whatever_the_umask(tmp_path):
    previous = os.umask(0o022)
    try:
        with open_private(tmp_path / "new" / "a.txt", "a", encoding="utf-8") as stream:
            stream.write("x")
        write_stored_file(tmp_path / "new" / "b.wav", b"data", None)
        loose = tmp_path / "old"
        loose.mkdir(mode=0o755)
        (loose / "c.sqlite3").write_text("x")
        os.chmod(loose / "c.sqlite3", 0o644)
        assert tighten_tree(tmp_path) >= 2
    finally:
        os.umask(previous)
    for path in (tmp_path / "new" / "a.txt", tmp_path / "new" / "b.wav", loose / "c.sqlite3"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    for path in (tmp_path / "new", loose):
        assert stat.S_IMODE(path.stat().st_mode) == 0o700, path


@pytest.mark.parametrize("keyed", [False, True])
def test_the_writer_a_recorder_streams_to_keeps_what_was_flushed_before_a_crash(tmp_path, keyed):
    from voicebot.crypto import open_stored_file_writer

    ring = Keyring.parse(KEY1) if keyed else None
    path = tmp_path / "CA1" / "call.pcm"
    writer = open_stored_file_writer(path, ring)
    for second in range(3):
        writer.write(bytes([second]) * 16000)  # one second of audio
        writer.flush()
    writer.write(b"\xff" * 100)  # not flushed: lost in the crash
    if keyed:
        writer.abandon()
        assert is_encrypted_file(path)
    else:
        writer.flush()  # a plain file has no unflushed chunk; what the OS got stays
        writer.close()
    data = read_stored_file(path, ring, allow_truncated=True)
    assert data[: 3 * 16000] == b"".join(bytes([s]) * 16000 for s in range(3))
    assert len(data) == 3 * 16000 + (0 if keyed else 100)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    resumed = open_stored_file_writer(path, ring, append=True)  # the next process carries on
    resumed.write(b"end")
    resumed.close()
    assert read_stored_file(path, ring).endswith(b"end")


def test_appending_to_a_finished_or_plain_file_carries_its_content_over(tmp_path):
    ring = Keyring.parse(KEY1)
    path = tmp_path / "CA1" / "timeline.jsonl"
    with EncryptedFileWriter(path, ring) as writer:
        writer.write(b"first call\n")
    with EncryptedFileWriter(path, ring, append=True) as writer:  # the same call sid again
        writer.write(b"second stream\n")
    assert read_stored_file(path, ring) == b"first call\nsecond stream\n"
    plain = tmp_path / "CA2" / "timeline.jsonl"
    plain.parent.mkdir()
    plain.write_bytes(b"written before the key was set\n")
    with EncryptedFileWriter(plain, ring, append=True) as writer:
        writer.write(b"after\n")
    assert is_encrypted_file(plain)
    assert read_stored_file(plain, ring) == b"written before the key was set\nafter\n"
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == [
        "timeline.jsonl",
        "timeline.jsonl",
    ]
