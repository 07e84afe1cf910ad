/*
 * Portable kernels: the fallback on CPUs without AVX2 and the baseline the
 * vector ones are checked against. Written so the compiler can vectorise
 * them with the baseline ISA (SSE2 on x86-64).
 */
#include "config.h"

#include <math.h>
#include <string.h>

#include "engine/kernels.h"

/* Eight terms per step, written out: the compiler turns them into vectors
 * of the baseline ISA (its loop vectoriser stays off at -O2). */
static inline void block_first(float *acc, const float *p, float w, size_t len)
{
	size_t i = 0;
	for (; i + 8 <= len; i += 8) {
		acc[i] = w * p[i];
		acc[i + 1] = w * p[i + 1];
		acc[i + 2] = w * p[i + 2];
		acc[i + 3] = w * p[i + 3];
		acc[i + 4] = w * p[i + 4];
		acc[i + 5] = w * p[i + 5];
		acc[i + 6] = w * p[i + 6];
		acc[i + 7] = w * p[i + 7];
	}
	for (; i < len; i++)
		acc[i] = w * p[i];
}

static inline void block_add(float *acc, const float *p, float w, size_t len)
{
	size_t i = 0;
	for (; i + 8 <= len; i += 8) {
		acc[i] += w * p[i];
		acc[i + 1] += w * p[i + 1];
		acc[i + 2] += w * p[i + 2];
		acc[i + 3] += w * p[i + 3];
		acc[i + 4] += w * p[i + 4];
		acc[i + 5] += w * p[i + 5];
		acc[i + 6] += w * p[i + 6];
		acc[i + 7] += w * p[i + 7];
	}
	for (; i < len; i++)
		acc[i] += w * p[i];
}

/* Summed a block at a time through an accumulator on the stack: each input
 * is read from memory once, the output written once, and out may be one
 * of the inputs since it is only written after the whole block is summed. */
static int scalar_sum_weighted(float *out, const float *const *in, const float *w, int k, size_t n)
{
	float acc[RAGG_KERNELS_BLOCK];
	int bad = 0;
	if (k < 1) {
		memset(out, 0, n * sizeof(*out));
		return 0;
	}
	for (size_t b = 0; b < n;) {
		size_t len = n - b < RAGG_KERNELS_BLOCK ? n - b : RAGG_KERNELS_BLOCK;
		block_first(acc, in[0] + b, w[0], len);
		for (int j = 1; j < k; j++)
			block_add(acc, in[j] + b, w[j], len);
		memcpy(out + b, acc, len * sizeof(*out));
		/* The block is in L1: its check costs next to nothing. */
		bad |= ragg__first_nonfinite(acc, len) < len;
		b += len;
	}
	return bad;
}

static double scalar_norm2(const float *x, size_t n)
{
	/* Four partial sums: independent chains the CPU can overlap. */
	double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
	size_t i = 0;
	for (; i + 4 <= n; i += 4) {
		s0 += (double)x[i] * x[i];
		s1 += (double)x[i + 1] * x[i + 1];
		s2 += (double)x[i + 2] * x[i + 2];
		s3 += (double)x[i + 3] * x[i + 3];
	}
	for (; i < n; i++)
		s0 += (double)x[i] * x[i];
	return sqrt((s0 + s1) + (s2 + s3));
}

static void scalar_scale(float *x, float a, size_t n)
{
	for (size_t i = 0; i < n; i++)
		x[i] *= a;
}

static void scalar_sgd(float *w, const float *g, float scale, float lr, size_t n)
{
	float c = (float)((double)lr * scale);
	for (size_t i = 0; i < n; i++)
		w[i] -= c * g[i];
}

static void scalar_momentum(float *w, float *v, const float *g, float scale, float lr, float mu,
                            size_t n)
{
	for (size_t i = 0; i < n; i++) {
		float vi = mu * v[i] + scale * g[i];
		v[i] = vi;
		w[i] -= lr * vi;
	}
}

void ragg__adam_scalar(float *w, float *m, float *v, const float *g,
                       const struct ragg__adam_coef *c, size_t n)
{
	const float b1 = c->b1, a1 = c->a1, b2 = c->b2, a2 = c->a2, eps = c->eps;
	const float step = c->step, rsbc2 = c->rsbc2, l2 = c->l2, keep = c->keep;
	for (size_t i = 0; i < n; i++) {
		float gi = g[i] + l2 * w[i];
		float mi = b1 * m[i] + a1 * gi;
		float vi = b2 * v[i] + a2 * gi * gi;
		m[i] = mi;
		v[i] = vi;
		w[i] = keep * w[i] - step * (mi / (sqrtf(vi) * rsbc2 + eps));
	}
}

const struct ragg__kernels ragg__kernels_scalar = {
	.name = "scalar",
	.sum_weighted = scalar_sum_weighted,
	.norm2 = scalar_norm2,
	.scale = scalar_scale,
	.sgd = scalar_sgd,
	.momentum = scalar_momentum,
	.adam = ragg__adam_scalar,
};
