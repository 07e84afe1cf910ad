/*
 * Finiteness at memory speed. A float is NaN or infinite exactly when its
 * exponent bits are all ones; (bits & 0x7f800000) + 0x00800000 then
 * carries into bit 31, which no finite value reaches. OR-ing that over a
 * block costs three integer vector operations per four floats and no
 * branch; only a block whose OR has bit 31 set is searched element by
 * element, which happens once, on the way to an error.
 */
#include <emmintrin.h>
#include <stdint.h>
#include <string.h>

#include "engine.h"

#define FINITE_BLOCK 4096u /* floats: 16 KiB, one L1's worth */

static int bad_bits(const float *x)
{
	uint32_t b;
	memcpy(&b, x, sizeof(b));
	return (b & 0x7f800000u) == 0x7f800000u;
}

/* Bit 31 of some lane set: some x[i], i < n (a multiple of 4), is not finite. */
static int block_bad(const float *x, size_t n)
{
	const __m128i e = _mm_set1_epi32(0x7f800000), one = _mm_set1_epi32(0x00800000);
	__m128i acc = _mm_setzero_si128();
	for (size_t i = 0; i < n; i += 4) {
		__m128i v = _mm_loadu_si128((const __m128i *)(const void *)(x + i));
		acc = _mm_or_si128(acc, _mm_add_epi32(_mm_and_si128(v, e), one));
	}
	return _mm_movemask_ps(_mm_castsi128_ps(acc)) != 0;
}

size_t ragg__first_nonfinite(const float *x, size_t n)
{
	size_t i = 0;
	while (n - i >= 4) {
		size_t len = (n - i) & ~(size_t)3;
		if (len > FINITE_BLOCK)
			len = FINITE_BLOCK;
		if (block_bad(x + i, len))
			break;
		i += len;
	}
	for (; i < n; i++)
		if (bad_bits(x + i))
			return i;
	return n;
}
