/*
 * Every kernel set this CPU runs (scalar, avx2, avx512) and openblas,
 * against a double-precision reference, over every alignment of the
 * written array within a cache line (0..15 floats), every length 0..67
 * (all head/body/tail splits of both vector widths) and a long array that
 * crosses many accumulator blocks.
 *
 * Tolerances come from fp32 rounding, u = 2^-24. The weighted sum of k
 * terms is a chain of at most 2k roundings (a product and an add per term,
 * or one FMA), so |out - exact| <= gamma_2k * sum_j |w_j x_j| with
 * gamma_2k ~ 2k u; we allow 2(k+1) u. Element-wise updates make at most
 * three roundings per element; norm2 accumulates in double (relative error
 * ~ n 2^-53) except openblas, whose snrm2 returns a float.
 *
 * Every entry of the optimizer table (src/optim) steps through the same
 * grid with every kernel set, its state vectors and g at other offsets than
 * w, against the update computed in double from the same float inputs, with
 * a bound propagated through each operation.
 */
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <ragg/ragg.h>

#include "engine/engine.h"
#include "engine/kernels.h"
#include "harness.h"
#include "optim/optim.h"

#define U         (1.0 / 16777216.0) /* 2^-24: fp32 unit roundoff */
#define MAXK      17 /* past two register groups: exercises the blocked path */
#define SMALL_MAX 67
#define LARGE_N   100003 /* odd, ~49 accumulator blocks */
#define GUARD     16 /* floats checked on each side of every written array */
#define CANARY    12345.678f

static const char *const names[] = { "scalar", "avx2", "avx512", "openblas" };

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static float frand(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (float)((double)(rng_state >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

/* A 64-byte aligned arena; arrays start at a chosen float offset in it. */
static float *arena(size_t floats)
{
	float *p = aligned_alloc(64, ((floats * sizeof(float) + 63) / 64) * 64);
	RAGG_CHECK(p != NULL);
	return p;
}

/* Writes canaries around [p, p + n) and NaN inside (kernels must not read
 * what they are about to overwrite). */
static void poison(float *base, size_t off, size_t n)
{
	for (size_t i = 0; i < GUARD; i++)
		base[off - GUARD + i] = base[off + n + i] = CANARY;
	for (size_t i = 0; i < n; i++)
		base[off + i] = NAN;
}

static void check_guards(const float *base, size_t off, size_t n, const char *what)
{
	for (size_t i = 0; i < GUARD; i++) {
		RAGG_CHECKF(base[off - GUARD + i] == CANARY, "%s wrote before the array (n=%zu)",
		            what, n);
		RAGG_CHECKF(base[off + n + i] == CANARY, "%s wrote past the array (n=%zu)", what,
		            n);
	}
}

static int nkernels(const struct ragg__kernels **out)
{
	int n = 0;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		const struct ragg__kernels *k = ragg__kernels_get(names[i]);
		if (k)
			out[n++] = k;
		else
			fprintf(stderr, "note: kernels %s not supported by this CPU, not tested\n",
			        names[i]);
	}
	RAGG_CHECK(n >= 2);
	return n;
}

/* ---- weighted sum ---- */

struct sum_bufs {
	float *in_base[MAXK], *out_base;
	float w[MAXK];
	size_t cap;
};

static void sum_bufs_init(struct sum_bufs *b, size_t n)
{
	b->cap = n + 2 * GUARD + 64;
	for (int j = 0; j < MAXK; j++) {
		b->in_base[j] = arena(b->cap);
		for (size_t i = 0; i < b->cap; i++)
			b->in_base[j][i] = frand();
		/* Sample counts are positive; other callers may weight freely. */
		b->w[j] = j % 3 == 2 ? -frand() * 4 : 1.0f + (float)(j * 7 % 13);
	}
	b->out_base = arena(b->cap);
}

static void sum_bufs_fini(struct sum_bufs *b)
{
	for (int j = 0; j < MAXK; j++)
		free(b->in_base[j]);
	free(b->out_base);
}

/* One call: out at float offset `oa`, input j at offset ia[j]. */
static void check_sum(const struct ragg__kernels *ks, struct sum_bufs *b, int k, size_t n,
                      size_t oa, const size_t *ia)
{
	const float *in[MAXK];
	size_t off = GUARD + oa;
	for (int j = 0; j < k; j++)
		in[j] = b->in_base[j] + GUARD + ia[j];
	poison(b->out_base, off, n);
	float *out = b->out_base + off;
	int bad = ks->sum_weighted(out, in, b->w, k, n);
	check_guards(b->out_base, off, n, ks->name);
	RAGG_CHECKF(!bad, "%s k=%d n=%zu: finite sum reported non-finite", ks->name, k, n);
	for (size_t i = 0; i < n; i++) {
		double ref = 0, mag = 0;
		for (int j = 0; j < k; j++) {
			ref += (double)b->w[j] * in[j][i];
			mag += fabs((double)b->w[j] * in[j][i]);
		}
		double tol = 2.0 * (k + 1) * U * mag + FLT_MIN;
		RAGG_CHECKF(fabs(out[i] - ref) <= tol,
		            "%s k=%d n=%zu out+%zu in+%zu: [%zu] = %.9g, want %.9g +- %.3g",
		            ks->name, k, n, oa, ia[0], i, out[i], ref, tol);
	}
}

static const int ks_to_test[] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 16, 17 };

static void sum_small_all(void)
{
	const struct ragg__kernels *kt[4];
	int nk = nkernels(kt);
	struct sum_bufs b;
	sum_bufs_init(&b, SMALL_MAX);
	for (int t = 0; t < nk; t++)
		for (size_t q = 0; q < sizeof(ks_to_test) / sizeof(ks_to_test[0]); q++) {
			int k = ks_to_test[q];
			for (size_t oa = 0; oa < 16; oa++)
				for (size_t n = 0; n <= SMALL_MAX; n++) {
					size_t same[MAXK], mixed[MAXK];
					for (int j = 0; j < k; j++) {
						same[j] = oa;
						mixed[j] = (oa * 7 + (size_t)j * 5 + 3) % 16;
					}
					check_sum(kt[t], &b, k, n, oa, same);
					check_sum(kt[t], &b, k, n, oa, mixed);
				}
		}
	sum_bufs_fini(&b);
}

RAGG_TEST(sum_weighted_alignments_and_tails)
{
	sum_small_all();
}

/* The same with streaming stores forced on for every size. */
RAGG_TEST(sum_weighted_streaming_stores)
{
	ragg__kernels_stream_bytes = 0;
	sum_small_all();
}

RAGG_TEST(sum_weighted_large)
{
	const struct ragg__kernels *kt[4];
	int nk = nkernels(kt);
	struct sum_bufs b;
	sum_bufs_init(&b, LARGE_N);
	for (int stream = 0; stream < 2; stream++) {
		ragg__kernels_stream_bytes = stream ? 0 : SIZE_MAX;
		for (int t = 0; t < nk; t++)
			for (size_t q = 0; q < sizeof(ks_to_test) / sizeof(ks_to_test[0]); q++) {
				int k = ks_to_test[q];
				size_t ia[MAXK];
				for (int j = 0; j < k; j++)
					ia[j] = (size_t)(j * 3 + 1) % 16;
				check_sum(kt[t], &b, k, LARGE_N, (size_t)k % 16, ia);
			}
	}
	sum_bufs_fini(&b);
}

/* out == in[j]: accumulate into one of the inputs, wherever it sits. */
RAGG_TEST(sum_weighted_in_place)
{
	const struct ragg__kernels *kt[4];
	int nk = nkernels(kt);
	size_t n = 5000 + 13;
	float *x[MAXK], *keep[MAXK], w[MAXK];
	for (int j = 0; j < MAXK; j++) {
		x[j] = arena(n + 16);
		keep[j] = arena(n);
		for (size_t i = 0; i < n; i++)
			keep[j][i] = frand();
		w[j] = 0.5f + (float)j;
	}
	for (int t = 0; t < nk; t++)
		for (int k = 1; k <= MAXK; k += 4)
			for (int which = 0; which<k; which += k> 1 ? k - 1 : 1) {
				const float *in[MAXK];
				for (int j = 0; j < k; j++) {
					in[j] = x[j] + 3;
					memcpy(x[j] + 3, keep[j], n * sizeof(float));
				}
				kt[t]->sum_weighted(x[which] + 3, in, w, k, n);
				for (size_t i = 0; i < n; i++) {
					double ref = 0, mag = 0;
					for (int j = 0; j < k; j++) {
						ref += (double)w[j] * keep[j][i];
						mag += fabs((double)w[j] * keep[j][i]);
					}
					double got = x[which][3 + i];
					RAGG_CHECKF(fabs(got - ref) <=
					                2.0 * (k + 1) * U * mag + FLT_MIN,
					            "%s k=%d out=in[%d] [%zu] = %.9g, want %.9g",
					            kt[t]->name, k, which, i, got, ref);
				}
			}
	for (int j = 0; j < MAXK; j++) {
		free(x[j]);
		free(keep[j]);
	}
}

/* A NaN or an infinity anywhere (any input, any position: head, body,
 * tail, any block; or a weight) is reported by the sum itself; so is an
 * overflow of finite inputs. Nothing else is. */
RAGG_TEST(sum_weighted_reports_nonfinite)
{
	const struct ragg__kernels *kt[4];
	int nk = nkernels(kt);
	static const float bad[] = { NAN, -NAN, INFINITY, -INFINITY };
	static const size_t lens[] = { 1, 7, 8, 17, 67, 5000 + 13 };
	static const int kks[] = { 1, 2, 8, 9, 17 };
	struct sum_bufs b;
	sum_bufs_init(&b, 5000 + 13);
	for (int t = 0; t < nk; t++)
		for (size_t q = 0; q < sizeof(kks) / sizeof(kks[0]); q++)
			for (size_t l = 0; l < sizeof(lens) / sizeof(lens[0]); l++) {
				int k = kks[q];
				size_t n = lens[l], oa = (size_t)k % 16;
				const float *in[MAXK];
				float *out = b.out_base + GUARD + oa;
				for (int j = 0; j < k; j++)
					in[j] = b.in_base[j] + GUARD + (size_t)j % 5;
				RAGG_CHECKF(!kt[t]->sum_weighted(out, in, b.w, k, n), "%s k=%d n=%zu",
				            kt[t]->name, k, n);
				size_t at[] = { 0, n / 2, n - 1 };
				for (size_t a = 0; a < 3; a++)
					for (size_t v = 0; v < 4; v++) {
						int j = (int)(a + v) % k;
						float *x = b.in_base[j] + GUARD + (size_t)j % 5 + at[a];
						float keep = *x;
						*x = bad[v];
						RAGG_CHECKF(kt[t]->sum_weighted(out, in, b.w, k, n),
						            "%s k=%d n=%zu: %g in input %d at %zu not reported",
						            kt[t]->name, k, n, bad[v], j, at[a]);
						*x = keep;
						/* Weight 0 times an infinity is NaN: still reported. */
						float wk = b.w[j];
						b.w[j] = bad[v];
						RAGG_CHECKF(kt[t]->sum_weighted(out, in, b.w, k, n),
						            "%s k=%d n=%zu: weight %g not reported",
						            kt[t]->name, k, n, bad[v]);
						b.w[j] = wk;
					}
				/* Finite inputs whose sum overflows. */
				float *x = b.in_base[0] + GUARD + n - 1;
				float keep = *x, wk = b.w[0];
				*x = FLT_MAX;
				b.w[0] = 4.0f;
				RAGG_CHECKF(kt[t]->sum_weighted(out, in, b.w, k, n),
				            "%s k=%d n=%zu: overflow not reported", kt[t]->name, k, n);
				*x = keep;
				b.w[0] = wk;
			}
	sum_bufs_fini(&b);
}

/* ragg__first_nonfinite: the first bad element's index, at any alignment,
 * length and position; n when there is none. */
RAGG_TEST(first_nonfinite)
{
	size_t cap = 20000 + 64;
	float *x = arena(cap);
	for (size_t i = 0; i < cap; i++)
		x[i] = i % 7 ? FLT_MAX : -FLT_MIN / 2; /* extremes, still finite */
	static const float bad[] = { NAN, -NAN, INFINITY, -INFINITY };
	for (size_t oa = 0; oa < 5; oa++)
		for (size_t n = 0; n < 70; n++) {
			RAGG_CHECK(ragg__first_nonfinite(x + oa, n) == n);
			for (size_t at = 0; at < n; at++) {
				float keep = x[oa + at];
				x[oa + at] = bad[(at + n) % 4];
				RAGG_CHECKF(ragg__first_nonfinite(x + oa, n) == at, "n=%zu at=%zu", n,
				            at);
				x[oa + at] = keep;
			}
		}
	size_t n = 20000;
	RAGG_CHECK(ragg__first_nonfinite(x + 3, n) == n);
	x[3 + 12345] = NAN;
	x[3 + 17000] = INFINITY;
	RAGG_CHECK(ragg__first_nonfinite(x + 3, n) == 12345);
	free(x);
}

RAGG_TEST(sum_weighted_k0_is_zero)
{
	const struct ragg__kernels *kt[4];
	int nk = nkernels(kt);
	float out[37];
	for (int t = 0; t < nk; t++) {
		for (int i = 0; i < 37; i++)
			out[i] = NAN;
		kt[t]->sum_weighted(out, NULL, NULL, 0, 37);
		for (int i = 0; i < 37; i++)
			RAGG_CHECKF(out[i] == 0.0f, "%s", kt[t]->name);
	}
}

/* ---- norm2 ---- */

static void check_norm(const struct ragg__kernels *ks, const float *x, size_t n)
{
	double s = 0;
	for (size_t i = 0; i < n; i++)
		s += (double)x[i] * x[i];
	double ref = sqrt(s), got = ks->norm2(x, n);
	/* Double accumulation: relative error ~ n 2^-53. openblas returns a
	 * float (one rounding, u) from its own accumulation; allow 4u. */
	double rel = strcmp(ks->name, "openblas") == 0 ? 4 * U : (double)(n + 4) * 0x1p-53;
	RAGG_CHECKF(fabs(got - ref) <= rel * ref + DBL_MIN, "%s n=%zu x%%16=%zu: %.17g, want %.17g",
	            ks->name, n, (size_t)((uintptr_t)x / 4 % 16), got, ref);
}

RAGG_TEST(norm2)
{
	const struct ragg__kernels *kt[4];
	int nk = nkernels(kt);
	float *x = arena(LARGE_N + 32);
	for (size_t i = 0; i < LARGE_N + 32; i++)
		x[i] = frand() * 100.0f;
	for (int t = 0; t < nk; t++) {
		for (size_t a = 0; a < 16; a++)
			for (size_t n = 0; n <= SMALL_MAX; n++)
				check_norm(kt[t], x + a, n);
		check_norm(kt[t], x + 5, LARGE_N);
	}
	/* Squares that overflow fp32 stay finite in double (not for the
	 * float-returning BLAS routine, which scales instead). */
	for (size_t i = 0; i < 100; i++)
		x[i] = 3e37f;
	for (int t = 0; t < nk; t++) {
		double got = kt[t]->norm2(x, 100);
		RAGG_CHECKF(fabs(got - 3e38) <= 3e38 * 8 * U, "%s: %.9g", kt[t]->name, got);
	}
	free(x);
}

/* ---- scale, sgd, momentum ---- */

RAGG_TEST(scale)
{
	const struct ragg__kernels *kt[4];
	int nk = nkernels(kt);
	size_t cap = LARGE_N + 2 * GUARD + 16;
	float *x = arena(cap), *keep = arena(cap);
	for (size_t i = 0; i < cap; i++)
		keep[i] = frand();
	const float a = -0.3713f;
	for (int t = 0; t < nk; t++)
		for (size_t oa = 0; oa < 16; oa++)
			for (size_t n = 0; n <= SMALL_MAX + 1; n++) {
				if (n == SMALL_MAX + 1) {
					if (oa != 5)
						break;
					n = LARGE_N;
				}
				size_t off = GUARD + oa;
				memcpy(x, keep, cap * sizeof(float));
				for (size_t i = 0; i < GUARD; i++)
					x[off - GUARD + i] = x[off + n + i] = CANARY;
				kt[t]->scale(x + off, a, n);
				check_guards(x, off, n, kt[t]->name);
				for (size_t i = 0; i < n; i++) {
					double ref = (double)a * keep[off + i];
					/* One rounding of the product. */
					RAGG_CHECKF(fabs(x[off + i] - ref) <=
					                U * fabs(ref) + FLT_MIN,
					            "%s n=%zu +%zu [%zu]", kt[t]->name, n, oa, i);
				}
			}
	free(x);
	free(keep);
}

RAGG_TEST(sgd)
{
	const struct ragg__kernels *kt[4];
	int nk = nkernels(kt);
	size_t cap = LARGE_N + 2 * GUARD + 32;
	float *w = arena(cap), *w0 = arena(cap), *g = arena(cap);
	for (size_t i = 0; i < cap; i++) {
		w0[i] = frand();
		g[i] = frand() * 10.0f;
	}
	const float scale = 1.0f / 24.0f, lr = 0.05f;
	for (int t = 0; t < nk; t++)
		for (size_t oa = 0; oa < 16; oa++)
			for (size_t n = 0; n <= SMALL_MAX + 1; n++) {
				if (n == SMALL_MAX + 1) {
					if (oa != 5)
						break;
					n = LARGE_N;
				}
				size_t off = GUARD + oa, goff = GUARD + (oa * 5 + 3) % 16;
				memcpy(w, w0, cap * sizeof(float));
				for (size_t i = 0; i < GUARD; i++)
					w[off - GUARD + i] = w[off + n + i] = CANARY;
				kt[t]->sgd(w + off, g + goff, scale, lr, n);
				check_guards(w, off, n, kt[t]->name);
				for (size_t i = 0; i < n; i++) {
					double step = (double)lr * scale * g[goff + i];
					double ref = w0[off + i] - step;
					/* lr * scale rounded once, then a product and a
					 * difference (or one FMA): three roundings. */
					double tol =
					    3 * U * (fabs((double)w0[off + i]) + fabs(step)) +
					    FLT_MIN;
					RAGG_CHECKF(fabs(w[off + i] - ref) <= tol,
					            "%s n=%zu +%zu [%zu]: %.9g want %.9g",
					            kt[t]->name, n, oa, i, w[off + i], ref);
				}
			}
	free(w);
	free(w0);
	free(g);
}

RAGG_TEST(momentum)
{
	const struct ragg__kernels *kt[4];
	int nk = nkernels(kt);
	size_t cap = LARGE_N + 2 * GUARD + 32;
	float *w = arena(cap), *w0 = arena(cap), *v = arena(cap), *v0 = arena(cap), *g = arena(cap);
	for (size_t i = 0; i < cap; i++) {
		w0[i] = frand();
		v0[i] = frand();
		g[i] = frand() * 10.0f;
	}
	const float scale = 1.0f / 24.0f, lr = 0.05f, mu = 0.9f;
	for (int t = 0; t < nk; t++)
		for (size_t oa = 0; oa < 16; oa++)
			for (size_t n = 0; n <= SMALL_MAX + 1; n++) {
				if (n == SMALL_MAX + 1) {
					if (oa != 5)
						break;
					n = LARGE_N;
				}
				size_t off = GUARD + oa, voff = GUARD + (oa + 9) % 16,
				       goff = GUARD + (oa * 3) % 16;
				memcpy(w, w0, cap * sizeof(float));
				memcpy(v, v0, cap * sizeof(float));
				for (size_t i = 0; i < GUARD; i++) {
					w[off - GUARD + i] = w[off + n + i] = CANARY;
					v[voff - GUARD + i] = v[voff + n + i] = CANARY;
				}
				kt[t]->momentum(w + off, v + voff, g + goff, scale, lr, mu, n);
				check_guards(w, off, n, kt[t]->name);
				check_guards(v, voff, n, kt[t]->name);
				for (size_t i = 0; i < n; i++) {
					double mv = (double)mu * v0[voff + i],
					       sg = (double)scale * g[goff + i];
					double vref = mv + sg;
					/* Two products and a sum: three roundings. */
					double vtol = 3 * U * (fabs(mv) + fabs(sg)) + FLT_MIN;
					RAGG_CHECKF(fabs(v[voff + i] - vref) <= vtol,
					            "%s v n=%zu +%zu [%zu]", kt[t]->name, n, oa, i);
					/* w inherits v's error times lr, plus its own product
					 * and difference. */
					double wref = w0[off + i] - (double)lr * vref;
					double wtol =
					    lr * vtol +
					    3 * U * (fabs((double)w0[off + i]) + fabs(lr * vref)) +
					    FLT_MIN;
					RAGG_CHECKF(fabs(w[off + i] - wref) <= wtol,
					            "%s w n=%zu +%zu [%zu]", kt[t]->name, n, oa, i);
				}
			}
	free(w);
	free(w0);
	free(v);
	free(v0);
	free(g);
}

/* ---- the optimizer table ---- */

/* One element of one step in double, and bounds on the float kernels'
 * error in w and in each state vector, propagated operation by operation
 * (each rounding counted as u relative, an FMA as one or two). */
struct optim_ref {
	double w, ew;
	double s[RAGG_OPTIM_MAX_STATE], es[RAGG_OPTIM_MAX_STATE];
};

static void optim_reference(const struct ragg__optim *op, const struct ragg__optim_conf *c,
                            uint64_t t, double w0, const double *s0, double g, struct optim_ref *r)
{
	double lr = c->lr;
	memset(r, 0, sizeof(*r));
	if (op->id == RAGG_OPT_SGD) {
		r->w = w0 - lr * g;
		r->ew = 3 * U * (fabs(w0) + fabs(lr * g));
	} else if (op->id == RAGG_OPT_MOMENTUM) {
		double mu = c->momentum, mv = mu * s0[0];
		r->s[0] = mv + g;
		r->es[0] = 3 * U * (fabs(mv) + fabs(g));
		r->w = w0 - lr * r->s[0];
		r->ew = lr * r->es[0] + 3 * U * (fabs(w0) + fabs(lr * r->s[0]));
	} else {
		int decoupled = op->id == RAGG_OPT_ADAMW;
		double b1 = c->beta1, b2 = c->beta2, wd = c->weight_decay;
		double l2 = decoupled ? 0 : wd, keep = decoupled ? 1 - lr * wd : 1;
		double bc1 = 1 - pow(b1, (double)t), bc2 = 1 - pow(b2, (double)t);
		double gi = g + l2 * w0, eg = 3 * U * (fabs(g) + fabs(l2 * w0));
		double m = b1 * s0[0] + (1 - b1) * gi;
		double em = 4 * U * (fabs(b1 * s0[0]) + fabs((1 - b1) * gi)) + (1 - b1) * eg;
		double v = b2 * s0[1] + (1 - b2) * gi * gi;
		double ev = 5 * U * (fabs(b2 * s0[1]) + (1 - b2) * gi * gi) +
		            (1 - b2) * (2 * fabs(gi) + eg) * eg;
		double sv = sqrt(v);
		/* |sqrt(v + e) - sqrt(v)| <= min(sqrt(e), e / (2 sqrt(v))). */
		double esv = sv > 0 ? fmin(sqrt(ev), ev / (2 * sv)) : sqrt(ev);
		double d = sv / sqrt(bc2) + c->eps;
		double ed = (esv + 3 * U * sv) / sqrt(bc2) + 2 * U * d;
		double q = m / d, eq = em / d + fabs(m) * ed / (d * (d - ed)) + U * fabs(q);
		double st = lr / bc1 * q, est = lr / bc1 * eq + 2 * U * fabs(st);
		r->s[0] = m;
		r->es[0] = em;
		r->s[1] = v;
		r->es[1] = ev;
		r->w = keep * w0 - st;
		r->ew = est + 3 * U * (fabs(keep * w0) + fabs(st)) + 2 * U * fabs(w0);
	}
}

RAGG_TEST(optim_table)
{
	const struct ragg__kernels *kt[4];
	int nk = nkernels(kt);
	size_t nopt;
	const struct ragg__optim *const *ops = ragg__optim_table(&nopt);
	RAGG_CHECK(nopt == 4);
	size_t cap = LARGE_N + 2 * GUARD + 32;
	float *w = arena(cap), *w0 = arena(cap), *g = arena(cap);
	float *s[RAGG_OPTIM_MAX_STATE], *s0[RAGG_OPTIM_MAX_STATE];
	for (int q = 0; q < RAGG_OPTIM_MAX_STATE; q++) {
		s[q] = arena(cap);
		s0[q] = arena(cap);
	}
	for (size_t i = 0; i < cap; i++) {
		w0[i] = frand();
		g[i] = frand() * 10.0f;
		s0[0][i] = frand(); /* v of momentum, m of Adam */
		s0[1][i] = fabsf(frand() * frand()) * 4.0f; /* Adam's v: >= 0 */
	}
	/* Step 3: the bias corrections are neither 1 nor the first step's. */
	const uint64_t step = 3;
	const struct ragg__optim_conf base = { .lr = 0.05f,
		                               .momentum = 0.9f,
		                               .beta1 = 0.9f,
		                               .beta2 = 0.999f,
		                               .eps = 1e-8f,
		                               .weight_decay = 0.01f };
	double max_ratio = 0;
	for (size_t o = 0; o < nopt; o++) {
		const struct ragg__optim *op = ops[o];
		struct ragg__optim_conf conf = base;
		conf.optim = op;
		RAGG_CHECK(op->nstate >= 0 && op->nstate <= RAGG_OPTIM_MAX_STATE);
		RAGG_CHECK(ragg__optim_find(op->name) == op && ragg__optim_by_id(op->id) == op);
		for (int t = 0; t < nk; t++)
			for (size_t oa = 0; oa < 16; oa++)
				for (size_t n = 0; n <= SMALL_MAX + 1; n++) {
					if (n == SMALL_MAX + 1) {
						if (oa != 5)
							break;
						n = LARGE_N;
					}
					size_t off = GUARD + oa, goff = GUARD + (oa * 3) % 16;
					size_t soff[RAGG_OPTIM_MAX_STATE] = {
						GUARD + (oa + 9) % 16, GUARD + (oa * 7 + 2) % 16
					};
					memcpy(w, w0, cap * sizeof(float));
					for (size_t i = 0; i < GUARD; i++)
						w[off - GUARD + i] = w[off + n + i] = CANARY;
					struct ragg__optim_block b = { .w = w + off,
						                       .g = g + goff,
						                       .n = n };
					for (int q = 0; q < RAGG_OPTIM_MAX_STATE; q++) {
						memcpy(s[q], s0[q], cap * sizeof(float));
						for (size_t i = 0; i < GUARD; i++)
							s[q][soff[q] - GUARD + i] =
							    s[q][soff[q] + n + i] = CANARY;
						b.state[q] = q < op->nstate ? s[q] + soff[q] : NULL;
					}
					op->step(&conf, kt[t], &b, step);
					check_guards(w, off, n, op->name);
					for (int q = 0; q < op->nstate; q++)
						check_guards(s[q], soff[q], n, op->name);
					for (size_t i = 0; i < n; i++) {
						struct optim_ref r;
						double st0[RAGG_OPTIM_MAX_STATE] = {
							s0[0][soff[0] + i], s0[1][soff[1] + i]
						};
						optim_reference(op, &conf, step, w0[off + i], st0,
						                g[goff + i], &r);
						double err = fabs(w[off + i] - r.w);
						RAGG_CHECKF(
						    err <= r.ew + FLT_MIN,
						    "%s/%s w n=%zu +%zu [%zu]: %.9g want %.9g "
						    "(tolerance %.3g)",
						    op->name, kt[t]->name, n, oa, i, w[off + i],
						    r.w, r.ew);
						if (r.ew > 0)
							max_ratio = fmax(max_ratio, err / r.ew);
						for (int q = 0; q < op->nstate; q++) {
							float got = s[q][soff[q] + i];
							RAGG_CHECKF(
							    fabs(got - r.s[q]) <= r.es[q] + FLT_MIN,
							    "%s/%s state %d n=%zu +%zu [%zu]: "
							    "%.9g want %.9g",
							    op->name, kt[t]->name, q, n, oa, i, got,
							    r.s[q]);
						}
					}
				}
	}
	fprintf(stderr, "optim_table: largest error in w used %.2f of its bound\n", max_ratio);
	free(w);
	free(w0);
	free(g);
	for (int q = 0; q < RAGG_OPTIM_MAX_STATE; q++) {
		free(s[q]);
		free(s0[q]);
	}
}

/* The hyperparameters come from the options (RAGG_* or ragg_opts_set),
 * with their documented defaults; out-of-range values are refused by name
 * when they are set. */
RAGG_TEST(optim_conf)
{
	struct ragg_opts o;
	struct ragg__optim_conf c;
	unsetenv("RAGG_BETA1");
	unsetenv("RAGG_BETA2");
	unsetenv("RAGG_EPS");
	unsetenv("RAGG_WEIGHT_DECAY");
	RAGG_CHECK_OK(ragg_opts_default(&o));
	o.lr = 0.5f;
	o.optimizer = RAGG_OPT_ADAMW;
	RAGG_CHECK_OK(ragg__optim_conf_read(&o, &c));
	RAGG_CHECK(c.optim == &ragg__optim_adamw && c.lr == 0.5f);
	RAGG_CHECK(c.beta1 == 0.9f && c.beta2 == 0.999f && c.eps == 1e-8f && c.weight_decay == 0);
	RAGG_CHECK(ragg__optim_find("AdamW") == &ragg__optim_adamw);
	RAGG_CHECK(ragg__optim_find("lion") == NULL);
	setenv("RAGG_BETA2", "0.95", 1);
	RAGG_CHECK_OK(ragg_opts_default(&o));
	o.optimizer = RAGG_OPT_ADAMW;
	RAGG_CHECK_OK(ragg_opts_set(&o, "RAGG_WEIGHT_DECAY", "0.01"));
	RAGG_CHECK_OK(ragg__optim_conf_read(&o, &c));
	RAGG_CHECK(c.beta2 == 0.95f && c.weight_decay == 0.01f);
	RAGG_CHECK(ragg_opts_set(&o, "RAGG_BETA1", "1") == RAGG_ERR_CONFIG);
	RAGG_CHECK(ragg_opts_set(&o, "RAGG_EPS", "-1e-8") == RAGG_ERR_CONFIG);
	setenv("RAGG_BETA1", "1", 1);
	RAGG_CHECK(ragg_opts_default(&o) == RAGG_ERR_CONFIG);
	unsetenv("RAGG_BETA1");
	unsetenv("RAGG_BETA2");
	RAGG_CHECK_OK(ragg_opts_default(&o));
	o.optimizer = (enum ragg_optimizer)42;
	RAGG_CHECK(ragg__optim_conf_read(&o, &c) == RAGG_ERR_CONFIG);
}

/* ---- selection ---- */

RAGG_TEST(selection)
{
	__builtin_cpu_init();
	int avx512 = __builtin_cpu_supports("avx512f");
	int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
	/* 512-bit code is avoided on the Skylake-SP family (clock drop). */
	int skx = __builtin_cpu_is("skylake-avx512") || __builtin_cpu_is("cascadelake") ||
	          __builtin_cpu_is("cooperlake");
	const char *best = avx512 && !(skx && avx2) ? "avx512" : avx2 ? "avx2" : "scalar";
	RAGG_CHECK(strcmp(ragg__kernels_get("auto")->name, best) == 0);
	RAGG_CHECK(ragg__kernels_get(NULL) == ragg__kernels_get("auto"));
	RAGG_CHECK(ragg__kernels_get("") == ragg__kernels_get("auto"));
	RAGG_CHECK((ragg__kernels_get("avx512") != NULL) == !!avx512);
	RAGG_CHECK((ragg__kernels_get("avx2") != NULL) == !!avx2);
	RAGG_CHECK(strcmp(ragg__kernels_get("scalar")->name, "scalar") == 0);
	RAGG_CHECK(strcmp(ragg__kernels_get("openblas")->name, "openblas") == 0);
	RAGG_CHECK(ragg__kernels_get("sse9") == NULL);
	RAGG_CHECK(ragg__kernels_get("AUTO") == NULL);
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		const struct ragg__kernels *k = ragg__kernels_get(names[i]);
		if (!k)
			continue;
		RAGG_CHECK(k->sum_weighted && k->norm2 && k->scale && k->sgd && k->momentum &&
		           k->adam);
	}
}

/* The engine resolves RAGG_KERNELS itself and reports what it chose. */
RAGG_TEST(engine_kernels_choice)
{
	struct ragg__engine *e;
	char d[512];
	struct ragg__engine_conf conf = { .threads = 0, .kernels = "openblas" };
	RAGG_CHECK_OK(ragg__engine_start(&conf, &e));
	RAGG_CHECK(strcmp(ragg__engine_kernels(e)->name, "openblas") == 0);
	RAGG_CHECK_OK(ragg__engine_describe(e, d, sizeof(d)));
	RAGG_CHECKF(strstr(d, "kernels=openblas") != NULL, "%s", d);
	ragg__engine_stop(e);
	conf.kernels = "nonesuch";
	RAGG_CHECK(ragg__engine_start(&conf, &e) == RAGG_ERR_CONFIG);
}

int main(int argc, char **argv)
{
	return ragg_test_main(argc, argv);
}
