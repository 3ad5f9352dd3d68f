"""Crypto-PAn against the published vectors, and its prefix-preserving property."""

import ipaddress
import random

import pytest

from segmentation.cryptopan import CryptoPAn

# The key of the sample program in the Crypto-PAn reference distribution (the C++
# implementation by Jinliang Fan, Georgia Tech).
REFERENCE_KEY = bytes(
    [
        *(21, 34, 23, 141, 51, 164, 207, 128, 19, 10, 91, 22, 73, 144, 125, 16),
        *(216, 152, 143, 131, 121, 121, 101, 39, 98, 87, 76, 45, 42, 132, 34, 2),
    ]
)

# The distinct address pairs of sample_trace_raw.dat / sample_trace_sanitized.dat from the
# reference distribution, as extracted (sorted, de-duplicated) in Yawning Angel's Go port,
# github.com/Yawning/cryptopan, cryptopan_test.go (TestCryptopanIPv4). Data, not code.
IPV4_VECTORS = [
    ("128.11.68.132", "135.242.180.132"),
    ("129.118.74.4", "134.136.186.123"),
    ("130.132.252.244", "133.68.164.234"),
    ("141.223.7.43", "141.167.8.160"),
    ("141.233.145.108", "141.129.237.235"),
    ("152.163.225.39", "151.140.114.167"),
    ("156.29.3.236", "147.225.12.42"),
    ("165.247.96.84", "162.9.99.234"),
    ("166.107.77.190", "160.132.178.185"),
    ("192.102.249.13", "252.138.62.131"),
    ("192.215.32.125", "252.43.47.189"),
    ("192.233.80.103", "252.25.108.8"),
    ("192.41.57.43", "252.222.221.184"),
    ("193.150.244.223", "253.169.52.216"),
    ("195.205.63.100", "255.186.223.5"),
    ("198.200.171.101", "249.199.68.213"),
    ("198.26.132.101", "249.36.123.202"),
    ("198.36.213.5", "249.7.21.132"),
    ("198.51.77.238", "249.18.186.254"),
    ("199.217.79.101", "248.38.184.213"),
    ("202.49.198.20", "245.206.7.234"),
    ("203.12.160.252", "244.248.163.4"),
    ("204.184.162.189", "243.192.77.90"),
    ("204.202.136.230", "243.178.4.198"),
    ("204.29.20.4", "243.33.20.123"),
    ("205.178.38.67", "242.108.198.51"),
    ("205.188.147.153", "242.96.16.101"),
    ("205.188.248.25", "242.96.88.27"),
    ("205.245.121.43", "242.21.121.163"),
    ("207.105.49.5", "241.118.205.138"),
    ("207.135.65.238", "241.202.129.222"),
    ("207.155.9.214", "241.220.250.22"),
    ("207.188.7.45", "241.255.249.220"),
    ("207.25.71.27", "241.33.119.156"),
    ("207.33.151.131", "241.1.233.131"),
    ("208.147.89.59", "227.237.98.191"),
    ("208.234.120.210", "227.154.67.17"),
    ("208.28.185.184", "227.39.94.90"),
    ("208.52.56.122", "227.8.63.165"),
    ("209.12.231.7", "226.243.167.8"),
    ("209.238.72.3", "226.6.119.243"),
    ("209.246.74.109", "226.22.124.76"),
    ("209.68.60.238", "226.184.220.233"),
    ("209.85.249.6", "226.170.70.6"),
    ("212.120.124.31", "228.135.163.231"),
    ("212.146.8.236", "228.19.4.234"),
    ("212.186.227.154", "228.59.98.98"),
    ("212.204.172.118", "228.71.195.169"),
    ("212.206.130.201", "228.69.242.193"),
    ("216.148.237.145", "235.84.194.111"),
    ("216.157.30.252", "235.89.31.26"),
    ("216.184.159.48", "235.96.225.78"),
    ("216.227.10.221", "235.28.253.36"),
    ("216.254.18.172", "235.7.16.162"),
    ("216.32.132.250", "235.192.139.38"),
    ("216.35.217.178", "235.195.157.81"),
    ("24.0.250.221", "100.15.198.226"),
    ("24.13.62.231", "100.2.192.247"),
    ("24.14.213.138", "100.1.42.141"),
    ("24.5.0.80", "100.9.15.210"),
    ("24.7.198.88", "100.10.6.25"),
    ("24.94.26.44", "100.88.228.35"),
    ("38.15.67.68", "64.3.66.187"),
    ("4.3.88.225", "124.60.155.63"),
    ("63.14.55.111", "95.9.215.7"),
    ("63.195.241.44", "95.179.238.44"),
    ("63.97.7.140", "95.97.9.123"),
    ("64.14.118.196", "0.255.183.58"),
    ("64.34.154.117", "0.221.154.117"),
    ("64.39.15.238", "0.219.7.41"),
]

# IPv6 under the same key and the same construction over 128 bits, from the same Go port
# (TestCryptopanIPv6); the reference distribution itself is IPv4 only.
IPV6_VECTORS = [
    ("::1", "78ff:f001:9fc0:20df:8380:b1f1:704:ed"),
    ("::2", "78ff:f001:9fc0:20df:8380:b1f1:704:ef"),
    ("::ffff", "78ff:f001:9fc0:20df:8380:b1f1:704:f838"),
    ("2001:db8::1", "4401:2bc:603f:d91d:27f:ff8e:e6f1:dc1e"),
    ("2001:db8::2", "4401:2bc:603f:d91d:27f:ff8e:e6f1:dc1c"),
]


def common_prefix_length(a: int, b: int, bits: int) -> int:
    return bits - (a ^ b).bit_length()


@pytest.fixture(scope="module")
def reference() -> CryptoPAn:
    return CryptoPAn(REFERENCE_KEY)


def test_ipv4_addresses_match_the_reference_sample_trace(reference):
    got = [(raw, str(reference.anonymize(raw))) for raw, _ in IPV4_VECTORS]
    assert got == IPV4_VECTORS


def test_ipv6_addresses_match_the_published_vectors(reference):
    got = [(raw, str(reference.anonymize(raw))) for raw, _ in IPV6_VECTORS]
    expected = [(raw, str(ipaddress.IPv6Address(anon))) for raw, anon in IPV6_VECTORS]
    assert got == expected


def test_an_ipv4_address_in_the_top_bits_of_an_ipv6_address_anonymizes_alike(reference):
    for raw, anonymized in IPV4_VECTORS:
        as_ipv6 = int(ipaddress.IPv4Address(raw)) << 96
        top = reference.anonymize_int(as_ipv6, 128) >> 96
        assert str(ipaddress.IPv4Address(top)) == anonymized


def test_the_reference_vectors_keep_their_common_prefixes():
    pairs = [
        (int(ipaddress.IPv4Address(a)), int(ipaddress.IPv4Address(b))) for a, b in IPV4_VECTORS
    ]
    for raw_a, anon_a in pairs:
        for raw_b, anon_b in pairs:
            assert common_prefix_length(raw_a, raw_b, 32) == common_prefix_length(
                anon_a, anon_b, 32
            )


@pytest.mark.parametrize("bits", [32, 128])
def test_random_addresses_sharing_a_prefix_share_exactly_that_prefix(bits):
    rng = random.Random(20240601)
    cryptopan = CryptoPAn(rng.randbytes(32))
    for _ in range(300):
        shared = rng.randrange(bits)  # the first bit after the shared prefix differs
        a = rng.getrandbits(bits)
        b = a ^ (1 << (bits - 1 - shared)) ^ (rng.getrandbits(bits) >> (shared + 1))
        assert common_prefix_length(a, b, bits) == shared
        anon_a, anon_b = cryptopan.anonymize_int(a, bits), cryptopan.anonymize_int(b, bits)
        assert common_prefix_length(anon_a, anon_b, bits) == shared


def test_a_subnet_maps_one_to_one_onto_a_subnet():
    cryptopan = CryptoPAn(bytes(range(32)))
    base = int(ipaddress.IPv4Address("10.20.0.0"))
    images = {cryptopan.anonymize_int(base + host, 32) for host in range(4096)}
    assert len(images) == 4096
    assert len({image >> 12 for image in images}) == 1  # all in one /20


def test_the_result_depends_on_the_key():
    first, second = CryptoPAn(bytes(32)), CryptoPAn(bytes(31) + b"\x01")
    addresses = [raw for raw, _ in IPV4_VECTORS[:20]]
    assert [first.anonymize(a) for a in addresses] != [second.anonymize(a) for a in addresses]
    assert [first.anonymize(a) for a in addresses] == [
        CryptoPAn(bytes(32)).anonymize(a) for a in addresses
    ]


def test_anonymize_keeps_the_kind_of_address(reference):
    assert isinstance(reference.anonymize("10.0.0.1"), ipaddress.IPv4Address)
    assert isinstance(reference.anonymize(ipaddress.IPv6Address("fe80::1")), ipaddress.IPv6Address)
    assert reference.anonymize_bytes(bytes([128, 11, 68, 132])) == bytes([135, 242, 180, 132])


@pytest.mark.parametrize("key", [b"", bytes(16), bytes(33), "x" * 32])
def test_a_key_that_is_not_32_bytes_is_refused(key):
    with pytest.raises(ValueError, match="32 bytes"):
        CryptoPAn(key)


def test_an_address_of_the_wrong_size_is_refused(reference):
    with pytest.raises(ValueError):
        reference.anonymize_bytes(b"\x01\x02\x03")
    with pytest.raises(ValueError):
        reference.anonymize_int(1 << 32, 32)
    with pytest.raises(ValueError):
        reference.anonymize_int(1, 64)
