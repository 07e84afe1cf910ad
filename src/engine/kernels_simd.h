/*
 * The vector kernels, written once over a handful of vector operations and
 * instantiated by kernels_avx2.c and kernels_avx512.c. The including file
 * defines, before including this one:
 *
 *   SIMD_FN     attributes of the inlined helpers (target, always_inline)
 *   SIMD_ENTRY  attributes of the functions that land in the table
 *   SIMD_NAME   the table's name; SIMD_TABLE the table's symbol
 *   VL          floats per vector
 *   vf, vmask   a float vector and a lane mask, with v_set1 v_loadu v_load
 *               v_store v_storeu v_stream v_mul v_fmadd v_fnmadd v_div v_sqrt
 *               v_mask
 *               v_mload v_mstore v_sfence
 *   vd          a double vector, with vd_zero vd_acc_sq vd_add vd_hsum
 *
 * Every loop has the same shape: a head of full and masked vectors brings
 * the array that is written (or, for norm2, read) to a 64-byte boundary, so
 * the main loop stores whole aligned lines (required by streaming stores,
 * and no store splits a line); other inputs are loaded unaligned, since k
 * independent buffers cannot all share one alignment. The tail is masked:
 * no scalar loop, and nothing is read or written past the end.
 *
 * Nothing is declared restrict: out may be one of the inputs (in-place
 * accumulation), and every vector is loaded before its lane range is stored.
 */
#ifndef SIMD_TABLE
#error "kernels_simd.h is included by an instantiating kernels_<isa>.c only"
#endif

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "engine/kernels.h"

#define SIMD_UNROLL 4

/* Floats before p reaches a 64-byte boundary, at most n. */
SIMD_FN size_t simd_head(const float *p, size_t n)
{
	size_t h = (size_t)(-(uintptr_t)p & 63) / sizeof(float);
	return h < n ? h : n;
}

SIMD_FN void simd_put(float *p, vf v, const int nt)
{
	if (nt)
		v_stream(p, v);
	else
		v_store(p, v);
}

/* add[i..] + sum_j wv[j] * p[j][i..], on full vectors and on the lanes of m.
 * kk and has_add are constants at every call site, so the j loop unrolls
 * and the unused branch disappears. */
SIMD_FN vf simd_dot(const float *const *p, const vf *wv, const int kk, const float *add,
                    const int has_add, size_t i)
{
	vf a = has_add ? v_loadu(add + i) : v_mul(wv[0], v_loadu(p[0] + i));
#pragma GCC unroll 8
	for (int j = has_add ? 0 : 1; j < kk; j++)
		a = v_fmadd(wv[j], v_loadu(p[j] + i), a);
	return a;
}

SIMD_FN vf simd_dot_m(const float *const *p, const vf *wv, const int kk, const float *add,
                      const int has_add, size_t i, vmask m)
{
	vf a = has_add ? v_mload(m, add + i) : v_mul(wv[0], v_mload(m, p[0] + i));
#pragma GCC unroll 8
	for (int j = has_add ? 0 : 1; j < kk; j++)
		a = v_fmadd(wv[j], v_mload(m, p[j] + i), a);
	return a;
}

/* Any lane of `bad` NaN or infinite (bad accumulates 0 * each output: 0
 * for a finite one, NaN for any other, and NaN stays). */
SIMD_FN int simd_bad(vf bad)
{
	float l[VL];
	v_storeu(l, bad);
	int r = 0;
	for (int i = 0; i < VL; i++) {
		uint32_t b;
		memcpy(&b, &l[i], sizeof(b));
		r |= (b & 0x7f800000u) == 0x7f800000u;
	}
	return r;
}

/* out[i] = add[i] + sum_{j<kk} w[j] * in[j][i] for i < n, in one pass.
 * Returns nonzero when some out[i] is not finite: one FMA per vector
 * stored, no branch. */
SIMD_FN int simd_pass(float *out, const float *const *in, const float *w, const int kk,
                      const float *add, const int has_add, size_t n, const int nt)
{
	const vf zero = v_set1(0.0f);
	vf bad = zero;
	vf wv[RAGG_KERNELS_GROUP];
	const float *p[RAGG_KERNELS_GROUP];
#pragma GCC unroll 8
	for (int j = 0; j < kk; j++) {
		wv[j] = v_set1(w[j]);
		p[j] = in[j];
	}
	size_t i = 0, h = simd_head(out, n);
	for (; i + VL <= h; i += VL) {
		vf a = simd_dot(p, wv, kk, add, has_add, i);
		bad = v_fmadd(a, zero, bad);
		v_storeu(out + i, a);
	}
	if (i < h) {
		/* Masked-off lanes load as 0: finite. */
		vmask m = v_mask(h - i);
		vf a = simd_dot_m(p, wv, kk, add, has_add, i, m);
		bad = v_fmadd(a, zero, bad);
		v_mstore(out + i, m, a);
		i = h;
	}
	for (; i + SIMD_UNROLL * VL <= n; i += SIMD_UNROLL * VL) {
		/* All loads of the four vectors come before their stores, which
		 * keeps in-place use (out == in[j]) correct without restrict. */
		vf a0 = simd_dot(p, wv, kk, add, has_add, i);
		vf a1 = simd_dot(p, wv, kk, add, has_add, i + VL);
		vf a2 = simd_dot(p, wv, kk, add, has_add, i + 2 * VL);
		vf a3 = simd_dot(p, wv, kk, add, has_add, i + 3 * VL);
		bad = v_fmadd(a0, zero, bad);
		bad = v_fmadd(a1, zero, bad);
		bad = v_fmadd(a2, zero, bad);
		bad = v_fmadd(a3, zero, bad);
		simd_put(out + i, a0, nt);
		simd_put(out + i + VL, a1, nt);
		simd_put(out + i + 2 * VL, a2, nt);
		simd_put(out + i + 3 * VL, a3, nt);
	}
	for (; i + VL <= n; i += VL) {
		vf a = simd_dot(p, wv, kk, add, has_add, i);
		bad = v_fmadd(a, zero, bad);
		simd_put(out + i, a, nt);
	}
	while (i < n) {
		size_t r = n - i < VL ? n - i : VL;
		vmask m = v_mask(r);
		vf a = simd_dot_m(p, wv, kk, add, has_add, i, m);
		bad = v_fmadd(a, zero, bad);
		v_mstore(out + i, m, a);
		i += r;
	}
	return simd_bad(bad);
}

#define SIMD_CASE(K)                                                                               \
	case K:                                                                                    \
		if (add && nt)                                                                     \
			return simd_pass(out, in, w, K, add, 1, n, 1);                             \
		else if (add)                                                                      \
			return simd_pass(out, in, w, K, add, 1, n, 0);                             \
		else if (nt)                                                                       \
			return simd_pass(out, in, w, K, NULL, 0, n, 1);                            \
		else                                                                               \
			return simd_pass(out, in, w, K, NULL, 0, n, 0);

/* One specialised pass per group size: k known at compile time lets the
 * weights live in registers and the loop over inputs unroll. */
SIMD_ENTRY int simd_pass_k(float *out, const float *const *in, const float *w, int kk,
                           const float *add, size_t n, int nt)
{
	switch (kk) {
		SIMD_CASE(1)
		SIMD_CASE(2)
		SIMD_CASE(3)
		SIMD_CASE(4)
		SIMD_CASE(5)
		SIMD_CASE(6)
		SIMD_CASE(7)
		SIMD_CASE(8)
	default:
		return 0;
	}
}
#undef SIMD_CASE

SIMD_ENTRY int simd_sum_weighted(float *out, const float *const *in, const float *w, int k,
                                 size_t n)
{
	int bad = 0;
	if (k < 1) {
		memset(out, 0, n * sizeof(*out));
		return 0;
	}
	/* Streaming stores skip the read-for-ownership of out (a quarter of the
	 * traffic at k = 2) but leave the result in memory, not in cache: worth
	 * it only when the call touches so much that out would not have stayed
	 * cached for its next reader anyway. */
	int nt = ((size_t)k + 1) * n * sizeof(float) >=
	         __atomic_load_n(&ragg__kernels_stream_bytes, __ATOMIC_RELAXED);
	if (k <= RAGG_KERNELS_GROUP) {
		bad = simd_pass_k(out, in, w, k, NULL, n, nt);
	} else {
		_Alignas(64) float acc[RAGG_KERNELS_BLOCK];
		const float *p[RAGG_KERNELS_GROUP];
		for (size_t b = 0; b < n;) {
			/* Blocks end on out's 64-byte boundaries: only the first one
			 * has a head. */
			size_t len = RAGG_KERNELS_BLOCK -
			             (size_t)((uintptr_t)(out + b) & 63) / sizeof(float);
			if (len > n - b)
				len = n - b;
			int j = 0;
			for (; k - j > RAGG_KERNELS_GROUP; j += RAGG_KERNELS_GROUP) {
				for (int q = 0; q < RAGG_KERNELS_GROUP; q++)
					p[q] = in[j + q] + b;
				simd_pass_k(acc, p, w + j, RAGG_KERNELS_GROUP, j ? acc : NULL, len,
				            0);
			}
			for (int q = 0; q < k - j; q++)
				p[q] = in[j + q] + b;
			bad |= simd_pass_k(out + b, p, w + j, k - j, acc, len, nt);
			b += len;
		}
	}
	/* Streaming stores are weakly ordered: fence so that whoever is told
	 * the sum is ready (a flag, an RDMA post) sees all of it. */
	if (nt)
		v_sfence();
	return bad;
}

SIMD_ENTRY double simd_norm2(const float *x, size_t n)
{
	vd s0 = vd_zero(), s1 = vd_zero(), s2 = vd_zero(), s3 = vd_zero();
	size_t i = 0, h = simd_head(x, n);
	for (; i + VL <= h; i += VL)
		vd_acc_sq(&s0, &s1, v_loadu(x + i));
	if (i < h) {
		vd_acc_sq(&s0, &s1, v_mload(v_mask(h - i), x + i));
		i = h;
	}
	for (; i + 2 * VL <= n; i += 2 * VL) {
		vd_acc_sq(&s0, &s1, v_load(x + i));
		vd_acc_sq(&s2, &s3, v_load(x + i + VL));
	}
	while (i < n) {
		size_t r = n - i < VL ? n - i : VL;
		vd_acc_sq(&s2, &s3, v_mload(v_mask(r), x + i));
		i += r;
	}
	return sqrt(vd_hsum(vd_add(vd_add(s0, s1), vd_add(s2, s3))));
}

SIMD_ENTRY void simd_scale(float *x, float a, size_t n)
{
	vf av = v_set1(a);
	size_t i = 0, h = simd_head(x, n);
	for (; i + VL <= h; i += VL)
		v_storeu(x + i, v_mul(av, v_loadu(x + i)));
	if (i < h) {
		vmask m = v_mask(h - i);
		v_mstore(x + i, m, v_mul(av, v_mload(m, x + i)));
		i = h;
	}
	for (; i + VL <= n; i += VL)
		v_store(x + i, v_mul(av, v_load(x + i)));
	while (i < n) {
		size_t r = n - i < VL ? n - i : VL;
		vmask m = v_mask(r);
		v_mstore(x + i, m, v_mul(av, v_mload(m, x + i)));
		i += r;
	}
}

SIMD_ENTRY void simd_sgd(float *w, const float *g, float scale, float lr, size_t n)
{
	vf c = v_set1((float)((double)lr * scale));
	size_t i = 0, h = simd_head(w, n);
	for (; i + VL <= h; i += VL)
		v_storeu(w + i, v_fnmadd(c, v_loadu(g + i), v_loadu(w + i)));
	if (i < h) {
		vmask m = v_mask(h - i);
		v_mstore(w + i, m, v_fnmadd(c, v_mload(m, g + i), v_mload(m, w + i)));
		i = h;
	}
	for (; i + VL <= n; i += VL)
		v_store(w + i, v_fnmadd(c, v_loadu(g + i), v_load(w + i)));
	while (i < n) {
		size_t r = n - i < VL ? n - i : VL;
		vmask m = v_mask(r);
		v_mstore(w + i, m, v_fnmadd(c, v_mload(m, g + i), v_mload(m, w + i)));
		i += r;
	}
}

/* v = mu * v + scale * g; w -= lr * v, on one vector. */
SIMD_FN void simd_mom1(vf *wv, vf *vv, vf g, vf sc, vf lr, vf mu)
{
	*vv = v_fmadd(mu, *vv, v_mul(sc, g));
	*wv = v_fnmadd(lr, *vv, *wv);
}

SIMD_ENTRY void simd_momentum(float *w, float *v, const float *g, float scale, float lr, float mu,
                              size_t n)
{
	vf sc = v_set1(scale), lrv = v_set1(lr), muv = v_set1(mu);
	size_t i = 0, h = simd_head(w, n);
	for (; i + VL <= h; i += VL) {
		vf a = v_loadu(w + i), b = v_loadu(v + i);
		simd_mom1(&a, &b, v_loadu(g + i), sc, lrv, muv);
		v_storeu(v + i, b);
		v_storeu(w + i, a);
	}
	if (i < h) {
		vmask m = v_mask(h - i);
		vf a = v_mload(m, w + i), b = v_mload(m, v + i);
		simd_mom1(&a, &b, v_mload(m, g + i), sc, lrv, muv);
		v_mstore(v + i, m, b);
		v_mstore(w + i, m, a);
		i = h;
	}
	for (; i + VL <= n; i += VL) {
		vf a = v_load(w + i), b = v_loadu(v + i);
		simd_mom1(&a, &b, v_loadu(g + i), sc, lrv, muv);
		v_storeu(v + i, b);
		v_store(w + i, a);
	}
	while (i < n) {
		size_t r = n - i < VL ? n - i : VL;
		vmask m = v_mask(r);
		vf a = v_mload(m, w + i), b = v_mload(m, v + i);
		simd_mom1(&a, &b, v_mload(m, g + i), sc, lrv, muv);
		v_mstore(v + i, m, b);
		v_mstore(w + i, m, a);
		i += r;
	}
}

/* The scalars of one Adam step, broadcast once per call. */
struct simd_adam_coef {
	vf b1, a1, b2, a2, eps, step, rsbc2, l2, keep;
};

/* One vector of Adam: the same operations, in the same order, as
 * ragg__adam_scalar, with FMAs where the scalar code rounds twice. */
SIMD_FN void simd_adam1(vf *w, vf *m, vf *v, vf g, const struct simd_adam_coef *c)
{
	vf gi = v_fmadd(c->l2, *w, g);
	*m = v_fmadd(c->b1, *m, v_mul(c->a1, gi));
	*v = v_fmadd(c->b2, *v, v_mul(v_mul(c->a2, gi), gi));
	vf d = v_fmadd(v_sqrt(*v), c->rsbc2, c->eps);
	*w = v_fnmadd(c->step, v_div(*m, d), v_mul(c->keep, *w));
}

/* Up to one vector at i (left elements remain), with masked loads and
 * stores: the head and the tail of simd_adam. Returns how many it did. */
SIMD_FN size_t simd_adam_part(float *w, float *m, float *v, const float *g,
                              const struct simd_adam_coef *c, size_t i, size_t left)
{
	size_t r = left < VL ? left : VL;
	vmask mk = v_mask(r);
	vf a = v_mload(mk, w + i), b = v_mload(mk, m + i), d = v_mload(mk, v + i);
	simd_adam1(&a, &b, &d, v_mload(mk, g + i), c);
	v_mstore(m + i, mk, b);
	v_mstore(v + i, mk, d);
	v_mstore(w + i, mk, a);
	return r;
}

/* Four inputs, three outputs, one pass: w is aligned by the head, m, v and
 * g are loaded and stored unaligned (they share w's offset within their
 * chunk on the server, so in practice they are aligned too). */
SIMD_ENTRY void simd_adam(float *w, float *m, float *v, const float *g,
                          const struct ragg__adam_coef *k, size_t n)
{
	const struct simd_adam_coef c = {
		v_set1(k->b1),   v_set1(k->a1),    v_set1(k->b2), v_set1(k->a2),   v_set1(k->eps),
		v_set1(k->step), v_set1(k->rsbc2), v_set1(k->l2), v_set1(k->keep),
	};
	size_t i = 0, h = simd_head(w, n);
	while (i < h) {
		i += simd_adam_part(w, m, v, g, &c, i, h - i);
	}
	for (; i + 2 * VL <= n; i += 2 * VL) {
		vf a0 = v_load(w + i), b0 = v_loadu(m + i), d0 = v_loadu(v + i);
		vf a1 = v_load(w + i + VL), b1 = v_loadu(m + i + VL), d1 = v_loadu(v + i + VL);
		simd_adam1(&a0, &b0, &d0, v_loadu(g + i), &c);
		simd_adam1(&a1, &b1, &d1, v_loadu(g + i + VL), &c);
		v_storeu(m + i, b0);
		v_storeu(m + i + VL, b1);
		v_storeu(v + i, d0);
		v_storeu(v + i + VL, d1);
		v_store(w + i, a0);
		v_store(w + i + VL, a1);
	}
	while (i < n) {
		i += simd_adam_part(w, m, v, g, &c, i, n - i);
	}
}

const struct ragg__kernels SIMD_TABLE = {
	.name = SIMD_NAME,
	.sum_weighted = simd_sum_weighted,
	.norm2 = simd_norm2,
	.scale = simd_scale,
	.sgd = simd_sgd,
	.momentum = simd_momentum,
	.adam = simd_adam,
};
