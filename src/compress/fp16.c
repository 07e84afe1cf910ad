/*
 * fp16: IEEE binary16. Payload: n x u16. Ratio 2.
 *
 * Rounding is to nearest, ties to even; magnitudes from 65520 up become
 * +-inf; subnormal halves are kept (gradual underflow); a NaN stays a NaN
 * with its sign, quiet bit set and the top 9 bits of its payload, which is
 * what F16C's VCVTPS2PH does, so the vector path (picked at run time when
 * the CPU has F16C) and the scalar one give the same bits for every input.
 * Error over the normal range of binary16 (6.1e-5 .. 65504): at most half
 * an ulp, |g - D(C(g))| <= 2^-11 |g|.
 */
#include "config.h"

#include <string.h>

#include <immintrin.h>

#include "compress/codec.h"

uint16_t ragg__fp16_from_float(float f);
float ragg__fp16_to_float(uint16_t h);

uint16_t ragg__fp16_from_float(float f)
{
	uint32_t x, sign, ax;
	memcpy(&x, &f, 4);
	sign = (x >> 16) & 0x8000u;
	ax = x & 0x7fffffffu;
	if (ax > 0x7f800000u) /* NaN: quiet, payload truncated */
		return (uint16_t)(sign | 0x7e00u | ((ax >> 13) & 0x3ffu));
	if (ax >= 0x477ff000u) /* rounds to 65536 or more: inf */
		return (uint16_t)(sign | 0x7c00u);
	if (ax >= 0x38800000u) { /* normal half (>= 2^-14) */
		uint32_t r = ax - 0x38000000u; /* rebias 127 -> 15 */
		r += 0xfffu + ((r >> 13) & 1u); /* round to nearest even */
		return (uint16_t)(sign | (r >> 13));
	}
	if (ax < 0x33000000u) /* below half the smallest subnormal: 0 */
		return (uint16_t)sign;
	{
		/* Subnormal half, in units of 2^-24: the float is m * 2^(e - 150)
		 * (m with its implicit bit), so 126 - e bits of m are dropped.
		 * Rounding up from the largest subnormal gives the smallest
		 * normal's bits, as it should. */
		uint32_t e = ax >> 23, m = (ax & 0x7fffffu) | 0x800000u;
		uint32_t sh = 126 - e;
		uint32_t q = m >> sh, rem = m & ((1u << sh) - 1), half = 1u << (sh - 1);
		if (rem > half || (rem == half && (q & 1u)))
			q++;
		return (uint16_t)(sign | q);
	}
}

float ragg__fp16_to_float(uint16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu, x;
	float f;
	if (e == 0x1f)
		x = sign | 0x7f800000u | (m << 13);
	else if (e)
		x = sign | ((e + 112) << 23) | (m << 13);
	else if (m) {
		/* subnormal: normalise */
		int sh = 0;
		while (!(m & 0x400u)) {
			m <<= 1;
			sh++;
		}
		x = sign | ((uint32_t)(113 - sh) << 23) | ((m & 0x3ffu) << 13);
	} else
		x = sign;
	memcpy(&f, &x, 4);
	return f;
}

static size_t fp16_size(const struct ragg__codec_spec *s, size_t n)
{
	(void)s;
	return n * 2;
}

__attribute__((target("avx2,f16c,fma"))) static size_t encode_f16c(const float *in, size_t n,
                                                                   unsigned char *out)
{
	size_t i = 0;
	for (; i + 16 <= n; i += 16) {
		__m256 a = _mm256_loadu_ps(in + i), b = _mm256_loadu_ps(in + i + 8);
		__m128i ha = _mm256_cvtps_ph(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
		__m128i hb = _mm256_cvtps_ph(b, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
		_mm_storeu_si128((__m128i *)(out + 2 * i), ha);
		_mm_storeu_si128((__m128i *)(out + 2 * i + 16), hb);
	}
	return i;
}

__attribute__((target("avx2,f16c,fma"))) static size_t
decode_f16c(const unsigned char *in, float *out, size_t n, int accumulate, float weight)
{
	size_t i = 0;
	__m256 w = _mm256_set1_ps(weight);
	for (; i + 8 <= n; i += 8) {
		__m256 v = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(in + 2 * i)));
		if (accumulate)
			v = _mm256_fmadd_ps(w, v, _mm256_loadu_ps(out + i));
		_mm256_storeu_ps(out + i, v);
	}
	return i;
}

/* Error feedback in one pass: g = e + in, out = C(g), e = g - D(out). */
__attribute__((target("avx2,f16c,fma"))) static size_t
encode_ef_f16c(const float *in, float *e, size_t n, unsigned char *out)
{
	size_t i = 0;
	for (; i + 8 <= n; i += 8) {
		__m256 g = _mm256_add_ps(_mm256_loadu_ps(e + i), _mm256_loadu_ps(in + i));
		__m128i h = _mm256_cvtps_ph(g, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
		_mm_storeu_si128((__m128i *)(out + 2 * i), h);
		_mm256_storeu_ps(e + i, _mm256_sub_ps(g, _mm256_cvtph_ps(h)));
	}
	return i;
}

static void fp16_encode_ef(const struct ragg__codec_spec *s, const float *in, float *e, size_t n,
                           void *out, uint64_t seed)
{
	unsigned char *o = out;
	size_t i = ragg__codec_have_f16c() ? encode_ef_f16c(in, e, n, o) : 0;
	(void)s, (void)seed;
	for (; i < n; i++) {
		float g = e[i] + in[i];
		uint16_t h = ragg__fp16_from_float(g);
		memcpy(o + 2 * i, &h, 2);
		e[i] = g - ragg__fp16_to_float(h);
	}
}

static void fp16_encode(const struct ragg__codec_spec *s, const float *in, size_t n, void *out,
                        uint64_t seed)
{
	unsigned char *o = out;
	size_t i = ragg__codec_have_f16c() ? encode_f16c(in, n, o) : 0;
	(void)s, (void)seed;
	for (; i < n; i++) {
		uint16_t h = ragg__fp16_from_float(in[i]);
		memcpy(o + 2 * i, &h, 2);
	}
}

static int fp16_decode(const struct ragg__codec_spec *s, const void *in, float *out, size_t n,
                       int accumulate, float weight, uint64_t seed)
{
	const unsigned char *p = in;
	size_t i = ragg__codec_have_f16c() ? decode_f16c(p, out, n, accumulate, weight) : 0;
	(void)s, (void)seed;
	for (; i < n; i++) {
		uint16_t h;
		memcpy(&h, p + 2 * i, 2);
		float v = ragg__fp16_to_float(h);
		out[i] = accumulate ? out[i] + weight * v : v;
	}
	return 0;
}

const struct ragg__codec ragg__codec_fp16 = {
	.size = sizeof(struct ragg__codec),
	.name = "fp16",
	.id = 2,
	.flags = RAGG_CODEC_LOSSY,
	.payload_size = fp16_size,
	.encode_payload = fp16_encode,
	.decode_payload = fp16_decode,
	.encode_ef_payload = fp16_encode_ef,
};
