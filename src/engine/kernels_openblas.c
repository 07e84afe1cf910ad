/*
 * The same operations as BLAS level-1 calls: the reference the fused
 * kernels are measured against, selectable with RAGG_KERNELS=openblas.
 *
 * The weighted sum is a chain, one pass over out per input: the first term
 * by saxpby with beta = 0 (out is written, never read) or, when out is one
 * of the inputs, by sscal in place; every other term by saxpy.
 */
#include "config.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

#include "engine/kernels.h"

/* BLAS lengths are int: longer arrays go in pieces of this many floats. */
#define BLAS_PIECE ((size_t)1 << 30)

static blasint piece(size_t n, size_t b)
{
	return (blasint)(n - b < BLAS_PIECE ? n - b : BLAS_PIECE);
}

static int blas_sum_weighted(float *out, const float *const *in, const float *w, int k, size_t n)
{
	if (k < 1) {
		memset(out, 0, n * sizeof(*out));
		return 0;
	}
	int first = 0, in_place = 0;
	for (int j = 0; j < k && !in_place; j++)
		if (in[j] == out)
			first = j, in_place = 1;
	for (size_t b = 0; b < n; b += BLAS_PIECE) {
		blasint m = piece(n, b);
		if (in_place)
			cblas_sscal(m, w[first], out + b, 1);
		else
			cblas_saxpby(m, w[first], in[first] + b, 1, 0.0f, out + b, 1);
		for (int j = 0; j < k; j++)
			if (j != first)
				cblas_saxpy(m, w[j], in[j] + b, 1, out + b, 1);
	}
	/* BLAS has no fused check: a second pass over out. */
	return ragg__first_nonfinite(out, n) < n;
}

static double blas_norm2(const float *x, size_t n)
{
	double s = 0;
	for (size_t b = 0; b < n; b += BLAS_PIECE) {
		double p = cblas_snrm2(piece(n, b), x + b, 1);
		s += p * p;
	}
	return sqrt(s);
}

static void blas_scale(float *x, float a, size_t n)
{
	for (size_t b = 0; b < n; b += BLAS_PIECE)
		cblas_sscal(piece(n, b), a, x + b, 1);
}

static void blas_sgd(float *w, const float *g, float scale, float lr, size_t n)
{
	float c = (float)(-(double)lr * scale);
	for (size_t b = 0; b < n; b += BLAS_PIECE)
		cblas_saxpy(piece(n, b), c, g + b, 1, w + b, 1);
}

static void blas_momentum(float *w, float *v, const float *g, float scale, float lr, float mu,
                          size_t n)
{
	for (size_t b = 0; b < n; b += BLAS_PIECE) {
		blasint m = piece(n, b);
		cblas_sscal(m, mu, v + b, 1);
		cblas_saxpy(m, scale, g + b, 1, v + b, 1);
		cblas_saxpy(m, -lr, v + b, 1, w + b, 1);
	}
}

const struct ragg__kernels ragg__kernels_openblas = {
	.name = "openblas",
	.sum_weighted = blas_sum_weighted,
	.norm2 = blas_norm2,
	.scale = blas_scale,
	.sgd = blas_sgd,
	.momentum = blas_momentum,
	/* No BLAS routine divides element-wise: the portable loop. */
	.adam = ragg__adam_scalar,
};
