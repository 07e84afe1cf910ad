#include "config.h"

#include "stream.h"

/* The loop compiles to a memcpy call, as STREAM's own copy loop does. */
void ragg_micro_copy(float *restrict c, const float *restrict a, size_t n)
{
	for (size_t i = 0; i < n; i++)
		c[i] = a[i];
}

/* Vectorised with the baseline ISA (see Makefile.include): SSE2 already
 * issues far more bytes per cycle than memory delivers. */
void ragg_micro_triad(float *restrict a, const float *restrict b, const float *restrict c, float s,
                      size_t n)
{
	for (size_t i = 0; i < n; i++)
		a[i] = b[i] + s * c[i];
}
