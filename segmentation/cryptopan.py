"""Crypto-PAn: prefix-preserving IP address anonymization (Xu, Fan, Ammar, Moon, ICNP 2002).

Bit i of the anonymized address is bit i of the original XOR the first bit of
AES_K(first i bits of the original, followed by bits i..127 of the pad), where K is the first
16 bytes of the 32-byte key and the pad is the last 16 bytes encrypted once under K. Two
addresses that share their first n bits therefore share the first n bits of their images, and
nothing more. IPv4 uses 32 such rounds; IPv6 the same construction over all 128 bits (an IPv4
address anonymized as the top 32 bits of an IPv6 address gives the IPv4 result).

The 32 (or 128) AES inputs of one address depend only on that address, so they are encrypted
in one ECB call, and results are cached because addresses repeat in a capture.
"""

import ipaddress
from functools import lru_cache

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

KEY_BYTES = 32
CACHE_SIZE = 65536

_BLOCK_BITS = 128
_ALL_ONES = (1 << _BLOCK_BITS) - 1


class CryptoPAn:
    """A Crypto-PAn anonymizer for one 32-byte key.

    Not safe to share between threads (the AES context is reused); make one per worker.
    """

    def __init__(self, key: bytes):
        if not isinstance(key, bytes | bytearray) or len(key) != KEY_BYTES:
            raise ValueError(f"a Crypto-PAn key is {KEY_BYTES} bytes")
        # ECB is what the construction calls for: every block is a separate PRF evaluation.
        self._aes = Cipher(algorithms.AES(bytes(key[:16])), modes.ECB()).encryptor()  # noqa: S305
        pad = int.from_bytes(self._aes.update(bytes(key[16:])), "big")
        # For round i the low 128 - i bits of the AES input come from the pad.
        self._pad_tail = [pad & (_ALL_ONES >> i) for i in range(_BLOCK_BITS)]
        self._head_mask = [_ALL_ONES ^ (_ALL_ONES >> i) for i in range(_BLOCK_BITS)]
        self.anonymize_bytes = lru_cache(maxsize=CACHE_SIZE)(self._anonymize_bytes)

    def _one_time_pad(self, address: int, bits: int) -> int:
        """The `bits`-bit mask whose bit i is the PRF output of round i (MSB first)."""
        block = address << (_BLOCK_BITS - bits)
        head, tail = self._head_mask, self._pad_tail
        inputs = b"".join(((block & head[i]) | tail[i]).to_bytes(16, "big") for i in range(bits))
        first_bytes = self._aes.update(inputs)[::16]
        mask = 0
        for byte in first_bytes:
            mask = (mask << 1) | (byte >> 7)
        return mask

    def anonymize_int(self, address: int, bits: int) -> int:
        """Anonymize an address given as an integer of `bits` bits (32 for IPv4, 128 for IPv6)."""
        if bits not in (32, 128):
            raise ValueError("an address has 32 or 128 bits")
        if not 0 <= address < (1 << bits):
            raise ValueError(f"address out of range for {bits} bits")
        return address ^ self._one_time_pad(address, bits)

    def _anonymize_bytes(self, raw: bytes) -> bytes:
        size = len(raw)
        if size not in (4, 16):
            raise ValueError("an IP address is 4 or 16 bytes")
        return self.anonymize_int(int.from_bytes(raw, "big"), size * 8).to_bytes(size, "big")

    def anonymize(
        self, address: str | ipaddress.IPv4Address | ipaddress.IPv6Address
    ) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        """Anonymize an address given as text or an `ipaddress` object; returns the same kind."""
        parsed = ipaddress.ip_address(address)
        return ipaddress.ip_address(self.anonymize_bytes(parsed.packed))
