/*
 * qsgd:s: QSGD (Alistarh et al.) with s levels per bucket of 512.
 * Payload: ceil(n / 512) x f32 bucket norms ||g_bucket||_2, then one code of
 * b = 1 + ceil(log2(s + 1)) bits per element, packed little-endian
 * LSB-first into u64 words (bits past n * b are zero). A code is
 * (level << 1) | sign, level in [0, s]. D(C(g))[i] = +-norm * level / s.
 * Ratio 32 / b (before the norms): 16 for s = 1, 10.7 for s = 3,
 * 6.4 for s = 15 (the default), 4 for s = 127. s is an integer in [1, 127].
 *
 * Stochastic rounding: level = floor(|g| / norm * s + u), u uniform in
 * [0, 1) on a 24-bit grid from the ChaCha20 stream of the seed, one word
 * per element; so E[D] = g (unbiased, up to float rounding) and
 * |D - g| <= norm / s. A bucket holding a NaN or an inf has a non-finite
 * norm and level 0 everywhere: it decodes to NaN, which the receiver's
 * finite check reports.
 */
#include "config.h"

#include <math.h>
#include <string.h>

#include <ragg/ragg.h>

#include "compress/codec.h"

#define BUCKET       512
#define QSGD_PURPOSE 0x64677371u /* "qsgd" */

static unsigned code_bits(const struct ragg__codec_spec *s)
{
	unsigned levels = (unsigned)s->param, b = 0;
	while ((1u << b) < levels + 1)
		b++;
	return 1 + b;
}

static size_t buckets(size_t n)
{
	return (n + BUCKET - 1) / BUCKET;
}

static size_t qsgd_size(const struct ragg__codec_spec *s, size_t n)
{
	return buckets(n) * 4 + (n * code_bits(s) + 63) / 64 * 8;
}

static void qsgd_encode(const struct ragg__codec_spec *s, const float *in, size_t n, void *out,
                        uint64_t seed)
{
	unsigned char *norms = out, *bits = norms + 4 * buckets(n);
	unsigned b = code_bits(s);
	double levels = s->param;
	uint64_t acc = 0;
	unsigned have = 0;
	size_t word = 0;
	uint32_t rnd[BUCKET];

	for (size_t start = 0; start < n; start += BUCKET) {
		size_t len = n - start < BUCKET ? n - start : BUCKET;
		double sq = 0, scale;
		float norm;
		for (size_t i = 0; i < len; i++)
			sq += (double)in[start + i] * in[start + i];
		norm = (float)sqrt(sq);
		memcpy(norms + 4 * (start / BUCKET), &norm, 4);
		scale = isfinite(norm) && norm > 0 ? levels / norm : 0;
		for (size_t i = 0; i < len; i += RAGG_CODEC_STREAM_WORDS)
			ragg__codec_stream(
			    seed, QSGD_PURPOSE, start + i, rnd + i,
			    len - i < RAGG_CODEC_STREAM_WORDS ? len - i : RAGG_CODEC_STREAM_WORDS);
		for (size_t i = 0; i < len; i++) {
			float g = in[start + i];
			double x = fabs((double)g) * scale,
			       u = (double)(rnd[i] >> 8) * (1.0 / 16777216.0);
			double f = floor(x + u);
			uint64_t level = scale == 0 || !(f > 0) ? 0
			                 : f >= levels          ? (uint64_t)levels
			                                        : (uint64_t)f;
			uint64_t code = (level << 1) | (uint64_t)(signbit(g) != 0 && level != 0);
			acc |= code << have;
			have += b;
			if (have >= 64) {
				memcpy(bits + 8 * word++, &acc, 8);
				have -= 64;
				acc = have ? code >> (b - have) : 0;
			}
		}
	}
	if (have)
		memcpy(bits + 8 * word, &acc, 8);
}

/* The code of element i. */
static uint32_t code_at(const unsigned char *bits, size_t i, unsigned b)
{
	size_t bit = i * b, w = bit / 64;
	unsigned off = bit % 64;
	uint64_t lo, hi = 0;
	memcpy(&lo, bits + 8 * w, 8);
	if (off + b > 64)
		memcpy(&hi, bits + 8 * (w + 1), 8);
	return (uint32_t)(((lo >> off) | (off ? hi << (64 - off) : 0)) & ((1u << b) - 1));
}

static int qsgd_decode(const struct ragg__codec_spec *s, const void *in, float *out, size_t n,
                       int accumulate, float weight, uint64_t seed)
{
	const unsigned char *norms = in, *bits = norms + 4 * buckets(n);
	unsigned b = code_bits(s), levels = (unsigned)s->param;
	size_t total = n * b, words = (total + 63) / 64;
	(void)seed;
	for (size_t j = 0; j < buckets(n); j++) {
		float norm;
		memcpy(&norm, norms + 4 * j, 4);
		if (signbit(norm))
			return RAGG_ERR_PROTO;
	}
	for (size_t i = 0; i < n; i++)
		if ((code_at(bits, i, b) >> 1) > levels)
			return RAGG_ERR_PROTO;
	if (total % 64) {
		uint64_t last;
		memcpy(&last, bits + 8 * (words - 1), 8);
		if (last >> (total % 64))
			return RAGG_ERR_PROTO;
	}
	for (size_t i = 0; i < n; i++) {
		float norm, v;
		uint32_t c = code_at(bits, i, b);
		memcpy(&norm, norms + 4 * (i / BUCKET), 4);
		v = norm * ((float)(c >> 1) / (float)levels);
		if (c & 1)
			v = -v;
		out[i] = accumulate ? out[i] + weight * v : v;
	}
	return 0;
}

const struct ragg__codec ragg__codec_qsgd = {
	.size = sizeof(struct ragg__codec),
	.name = "qsgd",
	.id = 7,
	.flags = RAGG_CODEC_LOSSY | RAGG_CODEC_PARAM | RAGG_CODEC_SEEDED | RAGG_CODEC_INTEGER,
	.param_default = 15,
	.param_min = 1,
	.param_max = 127,
	.payload_size = qsgd_size,
	.encode_payload = qsgd_encode,
	.decode_payload = qsgd_decode,
};
