#!/bin/sh
# Writes the named seeds of corpus/keycheck/ and corpus/upload/, and keycheck_seeds.txt.
#
# keycheck: real DER certificates (self-signed) and PKCS#8 keys made here with openssl, for
# RSA-2048, RSA-4096, P-256, P-384, P-521 and Ed25519, and the certificates of ../tests/data.
# keycheck_seeds.txt records what openssl says each holds (algorithm, then bits or curve; "- -"
# for keys in a traditional form), for tests/fuzz_corpus.rs to check the key type the crate
# reads from them.
# upload: operator scripts (layout in ../tests/harness/upload.rs) that upload, add, commit and
# load such certificates and keys, and refuse bad text.
#
# Run from crates/provisioning/fuzz. Keys are fresh on every run, so the seeds' bytes change:
# re-run only to replace the seeds (then merge the corpus again).
set -eu
out=corpus/keycheck
mkdir -p "$out" corpus/upload
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
: > keycheck_seeds.txt.new

make() { # name, genpkey arguments...
    name=$1
    shift
    openssl genpkey "$@" -out "$tmp/key.pem" 2>/dev/null
    openssl pkcs8 -topk8 -nocrypt -in "$tmp/key.pem" -outform DER -out "$out/seed_key_$name"
    openssl req -x509 -new -key "$out/seed_key_$name" -keyform DER -subj "/CN=seed $name" \
        -days 3650 -outform DER -out "$out/seed_cert_$name"
}

make rsa2048 -algorithm RSA -pkeyopt rsa_keygen_bits:2048
make rsa4096 -algorithm RSA -pkeyopt rsa_keygen_bits:4096
make p256 -algorithm EC -pkeyopt ec_paramgen_curve:P-256
make p384 -algorithm EC -pkeyopt ec_paramgen_curve:P-384
make p521 -algorithm EC -pkeyopt ec_paramgen_curve:P-521
make ed25519 -algorithm ED25519
# The same keys in their traditional forms (PKCS#1, SEC 1), which the device does not take:
# not PKCS#8, so no key type is read from them.
for name in rsa2048 p256; do
    openssl pkey -inform DER -in "$out/seed_key_$name" -traditional -outform DER 2>/dev/null \
        -out "$out/seed_traditional_key_$name"
    echo "seed_traditional_key_$name - -" >> keycheck_seeds.txt.new
done
for f in ../tests/data/*.der; do
    cp "$f" "$out/seed_data_$(basename "$f" .der | tr . _)"
done

# What openssl says: the algorithm OID's name, then the curve's name or the key's bits.
for f in "$out"/seed_cert_* "$out"/seed_data_* "$out"/seed_key_*; do
    case $f in
    */seed_key_*) text=$(openssl pkey -inform DER -in "$f" -noout -text) ;;
    *) openssl x509 -inform DER -in "$f" -noout -pubkey > "$tmp/pub.pem"
       text=$(openssl pkey -pubin -in "$tmp/pub.pem" -noout -text) ;;
    esac
    case $f in
    */seed_key_*) der=$f ;;
    *) openssl pkey -pubin -in "$tmp/pub.pem" -outform DER -out "$tmp/pub.der"; der=$tmp/pub.der ;;
    esac
    algorithm=$(openssl asn1parse -inform DER -in "$der" | sed -n 's/.*OBJECT *:\(.*\)/\1/p' | head -n 1 | tr -d ' ')
    curve=$(printf '%s\n' "$text" | sed -n 's/^ASN1 OID: *//p')
    bits=$(printf '%s\n' "$text" | sed -n 's/.*Key: (\([0-9]*\) bit.*/\1/p' | head -n 1)
    echo "$(basename "$f") $algorithm ${curve:-${bits:--}}" >> keycheck_seeds.txt.new
done
mv keycheck_seeds.txt.new keycheck_seeds.txt

python3 - <<'PY'
import base64, os

BEGIN, ADD, DATA, ENC, END, ABORT, DELETE, IMAGE, COMMIT, LOAD, COMMITTED = range(11)
CA, CERT, KEY = 0, 1, 2
COMMIT_FULL = 0x20 | 0x10  # a MAX_RECORD buffer, then committed; the image with all three


def read(name):
    with open(os.path.join("corpus/keycheck", name), "rb") as f:
        return f.read()


def enc(raw, width=64, nopad=False):
    return bytes([ENC, (width - 1) | (0x80 if nopad else 0), len(raw) >> 8, len(raw) & 0xFF]) + raw


def upload(kind, raw, width=64):
    return bytes([BEGIN, kind]) + enc(raw, width) + bytes([END, 0])


def line(text):
    """DATA of text in the alphabet the harness maps bytes to."""
    alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    special = {"=": 192, " ": 204, "\t": 216, "\r": 224, "\n": 232, "-": 240, ".": 248}
    codes = bytes(alphabet.index(c.encode()) if c not in special else special[c] for c in text)
    return bytes([DATA, len(codes)]) + codes


def load(record):
    return bytes([LOAD, len(record) // 32, len(record) % 32]) + record


def record(*entries):
    out = b"CRD1"
    for source, der in entries:
        out += bytes([source]) + len(der).to_bytes(2, "little") + der
    return out


p256_cert, p256_key = read("seed_cert_p256"), read("seed_key_p256")
seeds = {
    "upload_p256_pair_commit": upload(CA, p256_cert) + upload(CERT, p256_cert, 76)
    + upload(KEY, p256_key, 1) + bytes([COMMIT, COMMIT_FULL]),
    "upload_ca_bundle_add": upload(CA, read("seed_cert_p384")) + bytes([ADD, CA])
    + enc(read("seed_cert_rsa2048")) + bytes([END, 0, ADD, CA]) + enc(read("seed_cert_ed25519"))
    + bytes([END, 0, COMMIT, COMMIT_FULL]),
    "upload_ca_bundle_of_two": upload(CA, read("seed_cert_p256") + read("seed_cert_ed25519")),
    "upload_rsa4096_root": upload(CA, read("seed_cert_rsa4096"), 64),
    "upload_p521_unsupported": upload(CERT, read("seed_cert_p521")),
    "upload_rsa2048_key_too_large": upload(KEY, read("seed_key_rsa2048")),
    "upload_ed25519_key_and_delete": upload(KEY, read("seed_key_ed25519")) + bytes([DELETE, CERT, COMMIT, 0x20, IMAGE, CERT, COMMIT, 0x60]),
    "upload_lines_split_in_groups": bytes([BEGIN, CA]) + line("MAMB") + line("YW") + line("Jj") + line("ZA=") + line("=") + bytes([END, 0]),
    "upload_padded_then_more": bytes([BEGIN, CERT]) + line("MAFh") + line("MAE=") + line("MAFh") + bytes([END, 0]),
    "upload_blank_and_trimmed": bytes([BEGIN, KEY]) + line(" MAJh ") + line("\tYg==\r") + line("") + bytes([END, 0]),
    "upload_invalid_character": bytes([BEGIN, CA]) + line("-----BEGIN") + bytes([END, 0]),
    "upload_space_inside": bytes([BEGIN, CA]) + line("MAFh MAFh") + bytes([END, 0]),
    "upload_truncated": bytes([BEGIN, CA]) + line("MAFhM") + bytes([END, 0]),
    "upload_nonzero_unused_bits": bytes([BEGIN, CA]) + line("MAB=") + bytes([END, 0]),
    "upload_empty": bytes([BEGIN, CA, END, 0]),
    "upload_nested_and_abort": bytes([BEGIN, CA, BEGIN, KEY, ADD, KEY, ADD, CA, DELETE, CA, ABORT, 0, ABORT, 0, END, 0]),
    "upload_add_without_provisioned_ca": bytes([ADD, CA, END, 0, DATA, 0]),
    "upload_bundle_of_five": upload(CA, b"\x30\x00" * 5),
    "upload_nothing_staged": bytes([COMMIT, COMMIT_FULL, COMMITTED, 0, COMMIT, 0x20]),
    "upload_small_record_buffer": upload(CA, p256_cert) + bytes([COMMIT, 0x01, COMMIT, 0x02]),
    "load_record_of_three": load(record((1, b"\x30\x01c"), (1, b"\x30\x01d"), (1, b"\x30\x02dd"))),
    "load_record_image_deleted": load(record((0, b""), (2, b""), (2, b""))),
    "load_bad_magic": load(b"CRD2" + bytes(9)),
    "load_bad_source": load(record((3, b""), (0, b""), (0, b""))),
    "load_provisioned_empty": load(record((1, b""), (0, b""), (0, b""))),
    "load_length_past_end": load(b"CRD1\x01\xff\x00ab"),
    "load_trailing_bytes": load(record((0, b""), (0, b""), (0, b"")) + b"x"),
    "load_none": bytes([LOAD, 0xFF, 0]),
    "load_then_add": load(record((1, p256_cert), (0, b""), (0, b""))) + bytes([ADD, CA]) + enc(read("seed_cert_p384")) + bytes([END, 0]),
}
for name, data in seeds.items():
    with open(os.path.join("corpus/upload", name), "wb") as f:
        f.write(data)
print(f"{len(seeds)} upload seeds")
PY
