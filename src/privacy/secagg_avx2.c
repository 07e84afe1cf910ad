/*
 * AVX2 instantiation of secure aggregation's arithmetic (privacy/secagg.h):
 * the fixed-point encoding after its rounding keystream, adding a mask's
 * keystream, and the agent's integer sum. Each function carries its own
 * target attribute (no FMA: the encoding's multiply and add must round as
 * the scalar loop's do), so the library builds with default flags and this
 * code runs only where ragg__sa_have_avx2() found avx2. Each gives, bit for
 * bit, what the scalar loops of secagg.c give.
 */
#include "config.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "privacy/secagg.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#define AVX2 __attribute__((target("avx2")))

bool ragg__sa_have_avx2(void)
{
	static int have = -1;
	int h = __atomic_load_n(&have, __ATOMIC_RELAXED);
	if (h < 0) {
		__builtin_cpu_init();
		h = __builtin_cpu_supports("avx2");
		__atomic_store_n(&have, h, __ATOMIC_RELAXED);
	}
	return h;
}

/* Four elements at a time in double, as the scalar loop computes them:
 * v = weight * in, clamped (NaN to 0), then floor(v * scale + u 2^-32).
 * u 2^-32 is formed exactly as (int32)(u ^ 2^31) 2^-32 + 1/2. A group
 * whose result would leave int32 (only with a scale beyond
 * ragg__sa_scale's) goes to the scalar loop, which defines it. */
AVX2 size_t ragg__sa_encode_avx2(uint32_t *out, const float *in, const uint32_t *u, size_t n,
                                 double weight, double range, double scale)
{
	const __m256d W = _mm256_set1_pd(weight), R = _mm256_set1_pd(range),
		      NR = _mm256_set1_pd(-range), S = _mm256_set1_pd(scale),
		      T = _mm256_set1_pd(0x1p-32), H = _mm256_set1_pd(0.5),
		      LO = _mm256_set1_pd(-0x1p31), HI = _mm256_set1_pd(0x1p31);
	const __m128i FLIP = _mm_set1_epi32(INT32_MIN);
	size_t clipped = 0, i = 0;
	for (; i + 4 <= n; i += 4) {
		__m256d v = _mm256_mul_pd(W, _mm256_cvtps_pd(_mm_loadu_ps(in + i)));
		int in_range = _mm256_movemask_pd(_mm256_and_pd(_mm256_cmp_pd(v, NR, _CMP_GE_OQ),
		                                                _mm256_cmp_pd(v, R, _CMP_LE_OQ)));
		if (in_range != 0xf) {
			/* min_pd gives its second operand for a NaN: R, then
			 * zeroed by the ordered mask. */
			__m256d c = _mm256_max_pd(_mm256_min_pd(v, R), NR);
			v = _mm256_and_pd(c, _mm256_cmp_pd(v, v, _CMP_ORD_Q));
			clipped += 4 - (size_t)__builtin_popcount((unsigned)in_range);
		}
		__m128i ui = _mm_xor_si128(_mm_loadu_si128((const __m128i *)(u + i)), FLIP);
		__m256d uf = _mm256_add_pd(_mm256_mul_pd(_mm256_cvtepi32_pd(ui), T), H);
		__m256d q = _mm256_floor_pd(_mm256_add_pd(_mm256_mul_pd(v, S), uf));
		int fits = _mm256_movemask_pd(_mm256_and_pd(_mm256_cmp_pd(q, LO, _CMP_GE_OQ),
		                                            _mm256_cmp_pd(q, HI, _CMP_LT_OQ)));
		if (fits != 0xf) {
			ragg__sa_encode_scalar(out + i, in + i, u + i, 4, weight, range, scale);
			continue;
		}
		_mm_storeu_si128((__m128i *)(out + i), _mm256_cvtpd_epi32(q));
	}
	return clipped + ragg__sa_encode_scalar(out + i, in + i, u + i, n - i, weight, range, scale);
}

AVX2 void ragg__sa_add_avx2(uint32_t *x, const uint32_t *k, size_t n, int sign)
{
	size_t i = 0;
	if (sign > 0)
		for (; i + 8 <= n; i += 8)
			_mm256_storeu_si256((__m256i *)(x + i),
			                    _mm256_add_epi32(_mm256_loadu_si256((__m256i *)(x + i)),
			                                     _mm256_loadu_si256((const __m256i *)(k + i))));
	else
		for (; i + 8 <= n; i += 8)
			_mm256_storeu_si256((__m256i *)(x + i),
			                    _mm256_sub_epi32(_mm256_loadu_si256((__m256i *)(x + i)),
			                                     _mm256_loadu_si256((const __m256i *)(k + i))));
	for (; i < n; i++)
		x[i] = sign > 0 ? x[i] + k[i] : x[i] - k[i];
}

/* Four vectors of each input per step, added in registers; out may be
 * in[0] (each word is read before it is written). */
AVX2 void ragg__sa_sum_avx2(uint32_t *out, const uint32_t *const *in, int k, size_t n)
{
	size_t i = 0;
	for (; i + 32 <= n; i += 32) {
		const __m256i *p = (const __m256i *)(in[0] + i);
		__m256i a = _mm256_loadu_si256(p), b = _mm256_loadu_si256(p + 1),
			c = _mm256_loadu_si256(p + 2), d = _mm256_loadu_si256(p + 3);
		for (int j = 1; j < k; j++) {
			p = (const __m256i *)(in[j] + i);
			a = _mm256_add_epi32(a, _mm256_loadu_si256(p));
			b = _mm256_add_epi32(b, _mm256_loadu_si256(p + 1));
			c = _mm256_add_epi32(c, _mm256_loadu_si256(p + 2));
			d = _mm256_add_epi32(d, _mm256_loadu_si256(p + 3));
		}
		__m256i *o = (__m256i *)(out + i);
		_mm256_storeu_si256(o, a);
		_mm256_storeu_si256(o + 1, b);
		_mm256_storeu_si256(o + 2, c);
		_mm256_storeu_si256(o + 3, d);
	}
	for (; i < n; i++) {
		uint32_t s = in[0][i];
		for (int j = 1; j < k; j++)
			s += in[j][i];
		out[i] = s;
	}
}

#else

bool ragg__sa_have_avx2(void)
{
	return false;
}
size_t ragg__sa_encode_avx2(uint32_t *out, const float *in, const uint32_t *u, size_t n,
                            double weight, double range, double scale)
{
	return ragg__sa_encode_scalar(out, in, u, n, weight, range, scale);
}
void ragg__sa_add_avx2(uint32_t *x, const uint32_t *k, size_t n, int sign)
{
	for (size_t i = 0; i < n; i++)
		x[i] = sign > 0 ? x[i] + k[i] : x[i] - k[i];
}
void ragg__sa_sum_avx2(uint32_t *out, const uint32_t *const *in, int k, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		uint32_t s = in[0][i];
		for (int j = 1; j < k; j++)
			s += in[j][i];
		out[i] = s;
	}
}

#endif
