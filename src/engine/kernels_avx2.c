/*
 * AVX2 + FMA instantiation of the vector kernels. Each function carries its
 * own target attribute, so the library builds with default flags and this
 * code runs only where kernels.c found avx2 and fma.
 */
#include "config.h"

#include <immintrin.h>
#include <stdint.h>

#define SIMD_FN    static inline __attribute__((target("avx2,fma"), always_inline))
#define SIMD_ENTRY static __attribute__((target("avx2,fma")))
#define SIMD_NAME  "avx2"
#define SIMD_TABLE ragg__kernels_avx2
#define VL         8

typedef __m256 vf;
typedef __m256i vmask;
typedef __m256d vd;

/* Eight lanes on, eight off: a load at (8 - r) gives the first r lanes. */
static const int32_t avx2_mask_tbl[16] = { -1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0 };

SIMD_FN vf v_set1(float a)
{
	return _mm256_set1_ps(a);
}
SIMD_FN vf v_loadu(const float *p)
{
	return _mm256_loadu_ps(p);
}
SIMD_FN vf v_load(const float *p)
{
	return _mm256_load_ps(p);
}
SIMD_FN void v_store(float *p, vf v)
{
	_mm256_store_ps(p, v);
}
SIMD_FN void v_storeu(float *p, vf v)
{
	_mm256_storeu_ps(p, v);
}
SIMD_FN void v_stream(float *p, vf v)
{
	_mm256_stream_ps(p, v);
}
SIMD_FN vf v_mul(vf a, vf b)
{
	return _mm256_mul_ps(a, b);
}
SIMD_FN vf v_fmadd(vf a, vf b, vf c)
{
	return _mm256_fmadd_ps(a, b, c);
}
SIMD_FN vf v_fnmadd(vf a, vf b, vf c)
{
	return _mm256_fnmadd_ps(a, b, c);
}
SIMD_FN vf v_div(vf a, vf b)
{
	return _mm256_div_ps(a, b);
}
SIMD_FN vf v_sqrt(vf a)
{
	return _mm256_sqrt_ps(a);
}
/* The first r lanes, 0 <= r <= 8. */
SIMD_FN vmask v_mask(size_t r)
{
	return _mm256_loadu_si256((const __m256i *)(avx2_mask_tbl + 8 - r));
}
/* Masked-off lanes are neither read (no fault past the end) nor written. */
SIMD_FN vf v_mload(vmask m, const float *p)
{
	return _mm256_maskload_ps(p, m);
}
SIMD_FN void v_mstore(float *p, vmask m, vf v)
{
	_mm256_maskstore_ps(p, m, v);
}
SIMD_FN void v_sfence(void)
{
	_mm_sfence();
}

SIMD_FN vd vd_zero(void)
{
	return _mm256_setzero_pd();
}
SIMD_FN vd vd_add(vd a, vd b)
{
	return _mm256_add_pd(a, b);
}
SIMD_FN double vd_hsum(vd a)
{
	__m128d s = _mm_add_pd(_mm256_castpd256_pd128(a), _mm256_extractf128_pd(a, 1));
	return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
}
/* lo += v[0..3]^2, hi += v[4..7]^2, squared in double. */
SIMD_FN void vd_acc_sq(vd *lo, vd *hi, vf v)
{
	vd a = _mm256_cvtps_pd(_mm256_castps256_ps128(v));
	vd b = _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
	*lo = _mm256_fmadd_pd(a, a, *lo);
	*hi = _mm256_fmadd_pd(b, b, *hi);
}

#include "engine/kernels_simd.h"
