/*
 * onebit: the sign of every element and one scale per chunk.
 * Payload: f32 scale, u32 zero, ceil(n / 64) x u64 sign words; bit i % 64
 * of word i / 64 is the sign bit of g[i] (1 = negative, -0 included), and
 * bits past n are zero. D(C(g))[i] = sign(g[i]) * scale with
 * scale = mean |g| (summed in float within each 64-element word, in
 * double across words, rounded once). Ratio about 32.
 *
 * Signs are exact. A NaN in the chunk makes the scale NaN, so the whole
 * chunk decodes to NaN and the agent's finite check sees it; an inf makes
 * it inf. The decoder refuses a negative scale or set padding bits.
 */
#include "config.h"

#include <math.h>
#include <string.h>

#include <immintrin.h>

#include <ragg/ragg.h>

#include "compress/codec.h"

static size_t onebit_size(const struct ragg__codec_spec *s, size_t n)
{
	(void)s;
	return 8 + (n + 63) / 64 * 8;
}

/* With `add` (error feedback in one pass): in[i] += add[i] first, the
 * sum stored back into in (the residual), and encoded. */
__attribute__((target("avx2"))) static size_t encode_avx2(float *in, const float *add, size_t n,
                                                          unsigned char *words, double *sum)
{
	const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
	__m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
	size_t i = 0;
	for (; i + 64 <= n; i += 64) {
		uint64_t w = 0;
		__m256 a = _mm256_setzero_ps();
		for (int j = 0; j < 8; j++) {
			__m256 v = _mm256_loadu_ps(in + i + 8 * j);
			if (add) {
				v = _mm256_add_ps(v, _mm256_loadu_ps(add + i + 8 * j));
				_mm256_storeu_ps(in + i + 8 * j, v);
			}
			w |= (uint64_t)(unsigned)_mm256_movemask_ps(v) << (8 * j);
			a = _mm256_add_ps(a, _mm256_and_ps(v, absmask));
		}
		/* 8 terms per lane in float (relative error <= 8 u), then double */
		s0 = _mm256_add_pd(s0, _mm256_cvtps_pd(_mm256_castps256_ps128(a)));
		s1 = _mm256_add_pd(s1, _mm256_cvtps_pd(_mm256_extractf128_ps(a, 1)));
		memcpy(words + i / 8, &w, 8);
	}
	double t[4];
	_mm256_storeu_pd(t, _mm256_add_pd(s0, s1));
	*sum = (t[0] + t[1]) + (t[2] + t[3]);
	return i;
}

/* The encoding of in (+ add, stored into in, when add is not NULL). */
static float encode_words(float *in, const float *add, size_t n, unsigned char *o)
{
	unsigned char *words = o + 8;
	double sum = 0;
	size_t i = ragg__codec_have_avx2() ? encode_avx2(in, add, n, words, &sum) : 0;
	float scale;
	for (; i < n; i += 64) {
		uint64_t w = 0;
		size_t end = n - i < 64 ? n - i : 64;
		for (size_t j = 0; j < end; j++) {
			if (add)
				in[i + j] += add[i + j];
			w |= (uint64_t)(signbit(in[i + j]) != 0) << j;
			sum += fabs((double)in[i + j]);
		}
		memcpy(words + i / 8, &w, 8);
	}
	scale = n ? (float)(sum / (double)n) : 0.0f;
	memcpy(o, &scale, 4);
	memset(o + 4, 0, 4);
	return scale;
}

static void onebit_encode(const struct ragg__codec_spec *s, const float *in, size_t n, void *out,
                          uint64_t seed)
{
	(void)s, (void)seed;
	/* Only read: without `add` nothing is stored. */
	encode_words((float *)(uintptr_t)in, NULL, n, out);
}

__attribute__((target("avx2,fma"))) static void decode_avx2(const unsigned char *words, float *out,
                                                            size_t n, int accumulate, float weight,
                                                            float scale);

/* Error feedback in two passes instead of four: e += in with the signs
 * and the sum in one, then e -= D(c), bit for bit the separate passes. */
static void onebit_encode_ef(const struct ragg__codec_spec *s, const float *in, float *e, size_t n,
                             void *out, uint64_t seed)
{
	const unsigned char *words = (const unsigned char *)out + 8;
	float scale = encode_words(e, in, n, out);
	size_t i = 0;
	(void)s, (void)seed;
	if (ragg__codec_have_avx2()) {
		decode_avx2(words, e, n, 1, -1.0f, scale);
		i = n / 8 * 8;
	}
	for (; i < n; i++)
		e[i] -= (words[i / 8] >> (i % 8)) & 1 ? -scale : scale;
}

__attribute__((target("avx2,fma"))) static void decode_avx2(const unsigned char *words, float *out,
                                                            size_t n, int accumulate, float weight,
                                                            float scale)
{
	const __m256i bit = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
	const __m256 pos = _mm256_set1_ps(accumulate ? weight * scale : scale);
	const __m256 neg = _mm256_set1_ps(accumulate ? -(weight * scale) : -scale);
	for (size_t i = 0; i + 8 <= n; i += 8) {
		__m256i b = _mm256_set1_epi32(words[i / 8]);
		__m256 m = _mm256_castsi256_ps(_mm256_cmpeq_epi32(_mm256_and_si256(b, bit), bit));
		__m256 v = _mm256_blendv_ps(pos, neg, m);
		if (accumulate)
			v = _mm256_add_ps(v, _mm256_loadu_ps(out + i));
		_mm256_storeu_ps(out + i, v);
	}
}

static int onebit_decode(const struct ragg__codec_spec *s, const void *in, float *out, size_t n,
                         int accumulate, float weight, uint64_t seed)
{
	const unsigned char *p = in, *words = p + 8;
	float scale;
	uint32_t pad;
	size_t i = 0;
	(void)s, (void)seed;
	memcpy(&scale, p, 4);
	memcpy(&pad, p + 4, 4);
	if (pad || signbit(scale))
		return RAGG_ERR_PROTO;
	if (n % 64) {
		uint64_t last;
		memcpy(&last, words + (n / 64) * 8, 8);
		if (last >> (n % 64))
			return RAGG_ERR_PROTO;
	}
	if (ragg__codec_have_avx2()) {
		decode_avx2(words, out, n, accumulate, weight, scale);
		i = n / 8 * 8;
	}
	for (; i < n; i++) {
		float v = (words[i / 8] >> (i % 8)) & 1 ? -scale : scale;
		out[i] = accumulate ? out[i] + weight * v : v;
	}
	return 0;
}

const struct ragg__codec ragg__codec_onebit = {
	.size = sizeof(struct ragg__codec),
	.name = "onebit",
	.id = 6,
	.flags = RAGG_CODEC_LOSSY,
	.payload_size = onebit_size,
	.encode_payload = onebit_encode,
	.decode_payload = onebit_decode,
	.encode_ef_payload = onebit_encode_ef,
};
