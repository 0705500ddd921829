import numpy as np
import pytest

from vqcodec.entropy import StaticPrior, decode_symbols, encode_symbols
from vqcodec.entropy.prior import TOTAL
from vqcodec.errors import BitstreamError


@pytest.mark.parametrize("size", [1, 2, 16, 1024, 16384])
def test_round_trip_random(size):
    rng = np.random.default_rng(size)
    prior = StaticPrior.uniform(size)
    symbols = rng.integers(0, size, 3000)
    data = encode_symbols(symbols, prior)
    assert np.array_equal(decode_symbols(data, len(symbols), prior), symbols)


def test_round_trip_skewed_and_overhead():
    rng = np.random.default_rng(1)
    counts = np.bincount(rng.zipf(1.3, 200_000) % 1024, minlength=1024)
    prior = StaticPrior.from_counts(counts)
    symbols = rng.choice(1024, 1536, p=counts / counts.sum())  # one 768x512 image at f16
    data = encode_symbols(symbols, prior)
    assert np.array_equal(decode_symbols(data, len(symbols), prior), symbols)
    ideal = prior.cross_entropy_bits(symbols)
    assert len(data) * 8 <= ideal * 1.01 + 32


def test_rare_symbols_still_codable():
    counts = np.zeros(256)
    counts[0] = 1e9
    prior = StaticPrior.from_counts(counts)
    assert prior.frequencies.min() >= 1 and prior.frequencies.sum() == TOTAL
    symbols = np.array([255, 0, 128, 0, 0, 1])
    assert np.array_equal(decode_symbols(encode_symbols(symbols, prior), 6, prior), symbols)


def test_prior_is_deterministic_integers():
    counts = np.array([3, 1, 4, 1, 5, 9, 2, 6])
    a = StaticPrior.from_counts(counts).frequencies
    b = StaticPrior.from_counts(counts.astype(np.float32)).frequencies
    assert a.dtype == np.int64 and np.array_equal(a, b) and a.sum() == TOTAL
    assert list(np.argsort(-a, kind="stable")[:2]) == [5, 7]


def test_out_of_range_symbols_refused():
    with pytest.raises(ValueError):
        encode_symbols(np.array([0, 8]), StaticPrior.uniform(8))


def test_invalid_prior_refused():
    with pytest.raises(ValueError):
        StaticPrior(np.array([0, TOTAL]))
    with pytest.raises(ValueError):
        StaticPrior.from_counts(np.zeros(4))


def test_garbage_payload_gives_symbols_or_bitstream_error():
    prior = StaticPrior.uniform(64)
    for payload in [b"", b"\xff", b"\x00\x01\x02\x03\x04", bytes(range(256))]:
        try:
            out = decode_symbols(payload, 100, prior)
        except BitstreamError:
            continue
        assert out.shape == (100,) and out.min() >= 0 and out.max() < 64
