/*
 * topk:r: the k = ceil(r * n) elements of largest magnitude, as
 * (index, value) pairs; everything else decodes to 0.
 * Payload: k x u32 indices (strictly increasing), then k x f32 values.
 * Ratio n / (2k), about 1 / (2r). r in (0, 1], default 0.01.
 *
 * Exactly k elements are kept. Magnitudes are compared on the bit pattern
 * of |g|, which orders non-negative floats, with a NaN above +inf (so a
 * NaN is always sent, and the receiver sees it). Ties at the k-th
 * magnitude are broken by index: the lowest indices win. -0 and +0 tie.
 *
 * The k-th magnitude is found without memory of size n: a radix select
 * over the 31 magnitude bits, 11 + 11 + 9 at a time, each level a pass
 * that histograms the elements still matching the prefix chosen so far;
 * a last pass writes the pairs in index order.
 */
#include "config.h"

#include <string.h>

#include <ragg/ragg.h>

#include "compress/codec.h"

static uint32_t mag(float f)
{
	uint32_t x;
	memcpy(&x, &f, 4);
	return x & 0x7fffffffu;
}

static size_t topk_size(const struct ragg__codec_spec *s, size_t n)
{
	return ragg__codec_k(s->param, n) * 8;
}

static void topk_encode(const struct ragg__codec_spec *s, const float *in, size_t n, void *out,
                        uint64_t seed)
{
	static const struct {
		unsigned shift, bits;
	} level[] = { { 20, 11 }, { 9, 11 }, { 0, 9 } };
	size_t k = ragg__codec_k(s->param, n), need = k, eq_taken = 0, j = 0;
	uint32_t prefix = 0, prefmask = 0, hist[2048];
	unsigned char *idx = out, *val = idx + 4 * k;
	(void)seed;
	if (k == 0)
		return;
	for (size_t l = 0; l < sizeof(level) / sizeof(level[0]); l++) {
		uint32_t mask = (1u << level[l].bits) - 1;
		size_t above = 0;
		unsigned shift = level[l].shift;
		memset(hist, 0, sizeof(hist[0]) << level[l].bits);
		for (size_t i = 0; i < n; i++) {
			uint32_t m = mag(in[i]);
			if ((m & prefmask) == prefix)
				hist[(m >> shift) & mask]++;
		}
		uint32_t b = mask;
		for (;; b--) {
			if (above + hist[b] >= need || b == 0)
				break;
			above += hist[b];
		}
		need -= above;
		prefix |= b << shift;
		prefmask |= mask << shift;
	}
	/* prefix is now the k-th largest magnitude T; `need` elements equal
	 * to T are kept, all greater ones are. */
	for (size_t i = 0; i < n && j < k; i++) {
		uint32_t m = mag(in[i]);
		if (m > prefix || (m == prefix && eq_taken++ < need)) {
			uint32_t u = (uint32_t)i;
			memcpy(idx + 4 * j, &u, 4);
			memcpy(val + 4 * j, &in[i], 4);
			j++;
		}
	}
}

static int topk_decode(const struct ragg__codec_spec *s, const void *in, float *out, size_t n,
                       int accumulate, float weight, uint64_t seed)
{
	size_t k = ragg__codec_k(s->param, n);
	const unsigned char *idx = in, *val = idx + 4 * k;
	uint32_t prev = 0;
	(void)seed;
	for (size_t j = 0; j < k; j++) {
		uint32_t u;
		memcpy(&u, idx + 4 * j, 4);
		if (u >= n || (j && u <= prev))
			return RAGG_ERR_PROTO;
		prev = u;
	}
	if (!accumulate)
		memset(out, 0, n * sizeof(float));
	for (size_t j = 0; j < k; j++) {
		uint32_t u;
		float v;
		memcpy(&u, idx + 4 * j, 4);
		memcpy(&v, val + 4 * j, 4);
		out[u] = accumulate ? out[u] + weight * v : v;
	}
	return 0;
}

const struct ragg__codec ragg__codec_topk = {
	.size = sizeof(struct ragg__codec),
	.name = "topk",
	.id = 4,
	.flags = RAGG_CODEC_LOSSY | RAGG_CODEC_PARAM,
	.param_default = 0.01,
	.param_min = 1e-9,
	.param_max = 1.0,
	.payload_size = topk_size,
	.encode_payload = topk_encode,
	.decode_payload = topk_decode,
};
