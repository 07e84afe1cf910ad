/*
 * bf16: the top 16 bits of the float (bfloat16). Payload: n x u16.
 * Ratio 2.
 *
 * Round to nearest, ties to even, on the bit pattern: add 0x7fff plus the
 * lowest kept bit, keep the top half. Finite values past bf16's largest
 * round to +-inf by the same carry; a NaN keeps its sign and top payload
 * bits and gets the quiet bit (it could otherwise round into an inf).
 * Same exponent range as fp32, so the half-ulp bound holds over the whole
 * normal range: |g - D(C(g))| <= 2^-8 |g|.
 */
#include "config.h"

#include <string.h>

#include <immintrin.h>

#include "compress/codec.h"

static uint16_t bf16_from_float(float f)
{
	uint32_t x;
	memcpy(&x, &f, 4);
	if ((x & 0x7fffffffu) > 0x7f800000u)
		return (uint16_t)((x >> 16) | 0x40u);
	return (uint16_t)((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

static size_t bf16_size(const struct ragg__codec_spec *s, size_t n)
{
	(void)s;
	return n * 2;
}

__attribute__((target("avx2"))) static __m256i round8(__m256i x)
{
	const __m256i one = _mm256_set1_epi32(1), bias = _mm256_set1_epi32(0x7fff);
	__m256i ax = _mm256_and_si256(x, _mm256_set1_epi32(0x7fffffff));
	__m256i nan = _mm256_cmpgt_epi32(ax, _mm256_set1_epi32(0x7f800000));
	__m256i r = _mm256_add_epi32(
	    x, _mm256_add_epi32(bias, _mm256_and_si256(_mm256_srli_epi32(x, 16), one)));
	__m256i q = _mm256_or_si256(x, _mm256_set1_epi32(0x400000));
	return _mm256_srli_epi32(_mm256_blendv_epi8(r, q, nan), 16);
}

__attribute__((target("avx2"))) static size_t encode_avx2(const float *in, size_t n,
                                                          unsigned char *out)
{
	size_t i = 0;
	for (; i + 16 <= n; i += 16) {
		__m256i a = round8(_mm256_loadu_si256((const __m256i *)(in + i)));
		__m256i b = round8(_mm256_loadu_si256((const __m256i *)(in + i + 8)));
		__m256i p = _mm256_permute4x64_epi64(_mm256_packus_epi32(a, b), 0xd8);
		_mm256_storeu_si256((__m256i *)(out + 2 * i), p);
	}
	return i;
}

__attribute__((target("avx2,fma"))) static size_t
decode_avx2(const unsigned char *in, float *out, size_t n, int accumulate, float weight)
{
	size_t i = 0;
	__m256 w = _mm256_set1_ps(weight);
	for (; i + 8 <= n; i += 8) {
		__m256i h = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(in + 2 * i)));
		__m256 v = _mm256_castsi256_ps(_mm256_slli_epi32(h, 16));
		if (accumulate)
			v = _mm256_fmadd_ps(w, v, _mm256_loadu_ps(out + i));
		_mm256_storeu_ps(out + i, v);
	}
	return i;
}

/* Error feedback in one pass: g = e + in, out = C(g), e = g - D(out). */
__attribute__((target("avx2"))) static size_t encode_ef_avx2(const float *in, float *e, size_t n,
                                                             unsigned char *out)
{
	size_t i = 0;
	for (; i + 16 <= n; i += 16) {
		__m256 ga = _mm256_add_ps(_mm256_loadu_ps(e + i), _mm256_loadu_ps(in + i));
		__m256 gb = _mm256_add_ps(_mm256_loadu_ps(e + i + 8), _mm256_loadu_ps(in + i + 8));
		__m256i a = round8(_mm256_castps_si256(ga)), b = round8(_mm256_castps_si256(gb));
		__m256i p = _mm256_permute4x64_epi64(_mm256_packus_epi32(a, b), 0xd8);
		_mm256_storeu_si256((__m256i *)(out + 2 * i), p);
		_mm256_storeu_ps(e + i, _mm256_sub_ps(ga, _mm256_castsi256_ps(_mm256_slli_epi32(a, 16))));
		_mm256_storeu_ps(e + i + 8,
		                 _mm256_sub_ps(gb, _mm256_castsi256_ps(_mm256_slli_epi32(b, 16))));
	}
	return i;
}

static void bf16_encode_ef(const struct ragg__codec_spec *s, const float *in, float *e, size_t n,
                           void *out, uint64_t seed)
{
	unsigned char *o = out;
	size_t i = ragg__codec_have_avx2() ? encode_ef_avx2(in, e, n, o) : 0;
	(void)s, (void)seed;
	for (; i < n; i++) {
		float g = e[i] + in[i], v;
		uint16_t h = bf16_from_float(g);
		uint32_t x = (uint32_t)h << 16;
		memcpy(o + 2 * i, &h, 2);
		memcpy(&v, &x, 4);
		e[i] = g - v;
	}
}

static void bf16_encode(const struct ragg__codec_spec *s, const float *in, size_t n, void *out,
                        uint64_t seed)
{
	unsigned char *o = out;
	size_t i = ragg__codec_have_avx2() ? encode_avx2(in, n, o) : 0;
	(void)s, (void)seed;
	for (; i < n; i++) {
		uint16_t h = bf16_from_float(in[i]);
		memcpy(o + 2 * i, &h, 2);
	}
}

static int bf16_decode(const struct ragg__codec_spec *s, const void *in, float *out, size_t n,
                       int accumulate, float weight, uint64_t seed)
{
	const unsigned char *p = in;
	size_t i = ragg__codec_have_avx2() ? decode_avx2(p, out, n, accumulate, weight) : 0;
	(void)s, (void)seed;
	for (; i < n; i++) {
		uint16_t h;
		uint32_t x;
		float v;
		memcpy(&h, p + 2 * i, 2);
		x = (uint32_t)h << 16;
		memcpy(&v, &x, 4);
		out[i] = accumulate ? out[i] + weight * v : v;
	}
	return 0;
}

const struct ragg__codec ragg__codec_bf16 = {
	.size = sizeof(struct ragg__codec),
	.name = "bf16",
	.id = 3,
	.flags = RAGG_CODEC_LOSSY,
	.payload_size = bf16_size,
	.encode_payload = bf16_encode,
	.decode_payload = bf16_decode,
	.encode_ef_payload = bf16_encode_ef,
};
