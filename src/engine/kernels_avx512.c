/*
 * AVX-512 (F only) instantiation of the vector kernels. Each function
 * carries its own target attribute, so the library builds with default
 * flags and this code runs only where kernels.c found avx512f.
 */
#include "config.h"

#include <immintrin.h>

#define SIMD_FN    static inline __attribute__((target("avx512f"), always_inline))
#define SIMD_ENTRY static __attribute__((target("avx512f")))
#define SIMD_NAME  "avx512"
#define SIMD_TABLE ragg__kernels_avx512
#define VL         16

typedef __m512 vf;
typedef __mmask16 vmask;
typedef __m512d vd;

SIMD_FN vf v_set1(float a)
{
	return _mm512_set1_ps(a);
}
SIMD_FN vf v_loadu(const float *p)
{
	return _mm512_loadu_ps(p);
}
SIMD_FN vf v_load(const float *p)
{
	return _mm512_load_ps(p);
}
SIMD_FN void v_store(float *p, vf v)
{
	_mm512_store_ps(p, v);
}
SIMD_FN void v_storeu(float *p, vf v)
{
	_mm512_storeu_ps(p, v);
}
SIMD_FN void v_stream(float *p, vf v)
{
	_mm512_stream_ps(p, v);
}
SIMD_FN vf v_mul(vf a, vf b)
{
	return _mm512_mul_ps(a, b);
}
SIMD_FN vf v_fmadd(vf a, vf b, vf c)
{
	return _mm512_fmadd_ps(a, b, c);
}
SIMD_FN vf v_fnmadd(vf a, vf b, vf c)
{
	return _mm512_fnmadd_ps(a, b, c);
}
SIMD_FN vf v_div(vf a, vf b)
{
	return _mm512_div_ps(a, b);
}
SIMD_FN vf v_sqrt(vf a)
{
	return _mm512_sqrt_ps(a);
}
/* The first r lanes, 0 <= r <= 16. */
SIMD_FN vmask v_mask(size_t r)
{
	return (vmask)((1u << r) - 1u);
}
/* Masked-off lanes are neither read (no fault past the end) nor written. */
SIMD_FN vf v_mload(vmask m, const float *p)
{
	return _mm512_maskz_loadu_ps(m, p);
}
SIMD_FN void v_mstore(float *p, vmask m, vf v)
{
	_mm512_mask_storeu_ps(p, m, v);
}
SIMD_FN void v_sfence(void)
{
	_mm_sfence();
}

SIMD_FN vd vd_zero(void)
{
	return _mm512_setzero_pd();
}
SIMD_FN vd vd_add(vd a, vd b)
{
	return _mm512_add_pd(a, b);
}
SIMD_FN double vd_hsum(vd a)
{
	return _mm512_reduce_add_pd(a);
}
/* lo += v[0..7]^2, hi += v[8..15]^2, squared in double. */
SIMD_FN void vd_acc_sq(vd *lo, vd *hi, vf v)
{
	vd a = _mm512_cvtps_pd(_mm512_castps512_ps256(v));
	vd b = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
	*lo = _mm512_fmadd_pd(a, a, *lo);
	*hi = _mm512_fmadd_pd(b, b, *hi);
}

#include "engine/kernels_simd.h"
