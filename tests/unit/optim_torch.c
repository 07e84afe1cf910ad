/*
 * Adam and AdamW from the optimizer table against PyTorch's own
 * torch.optim.Adam / AdamW (Debian's python3-torch under /usr/bin/python3,
 * the single-tensor path): the same float32 parameters and the same 20
 * gradients, the parameters compared after every step, with every kernel
 * set this CPU runs. Skipped when that python has no torch.
 *
 * The two sides round differently (PyTorch lerps m and divides by
 * sqrt(v)/sqrt(bc2); ragg multiplies by 1/sqrt(bc2) and uses FMAs), each a
 * few u = 2^-24 per operation. A step moves w by at most about lr*|m|/d;
 * over s steps the difference stays below s * 4u * (|w| + lr) by a wide
 * margin; a wrong bias correction, beta or decay is off by 1e-4 or more.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ragg/ragg.h>

#include "engine/engine.h"
#include "harness.h"
#include "optim/optim.h"

#define PYTHON "/usr/bin/python3"
#define N      1037 /* odd: vector tails */
#define STEPS  20
#define U      (1.0 / 16777216.0)

static uint64_t rng_state = 0x2545f4914f6cdd1dull;

static float frand(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (float)((double)(rng_state >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

static void need_torch(void)
{
	if (access(PYTHON, X_OK) != 0 || system(PYTHON " -c 'import torch' >/dev/null 2>&1") != 0)
		RAGG_SKIP(PYTHON " has no torch (apt-get install python3-torch)");
}

/* Runs PyTorch on w0 and g, writing its STEPS x N parameters to ref. */
static void run_torch(const char *name, const struct ragg__optim_conf *c, const float *w0,
                      float g[STEPS][N], float *ref)
{
	char in[] = "/tmp/ragg-optim-in.XXXXXX", out[] = "/tmp/ragg-optim-out.XXXXXX";
	int fi = mkstemp(in), fo = mkstemp(out);
	RAGG_CHECK(fi >= 0 && fo >= 0);
	FILE *f = fdopen(fi, "wb");
	RAGG_CHECK(f != NULL);
	RAGG_CHECK(fwrite(w0, sizeof(float), N, f) == N);
	RAGG_CHECK(fwrite(g, sizeof(float), (size_t)STEPS * N, f) == (size_t)STEPS * N);
	RAGG_CHECK(fclose(f) == 0);
	char cmd[1024];
	snprintf(cmd, sizeof(cmd),
	         PYTHON " %s/optim_torch.py %s %.9g %.9g %.9g %.9g %.9g %d %d %s %s",
	         RAGG_TEST_SRCDIR, name, (double)c->lr, (double)c->beta1, (double)c->beta2,
	         (double)c->eps, (double)c->weight_decay, N, STEPS, in, out);
	RAGG_CHECKF(system(cmd) == 0, "%s", cmd);
	f = fdopen(fo, "rb");
	RAGG_CHECK(f != NULL);
	RAGG_CHECK(fread(ref, sizeof(float), (size_t)STEPS * N, f) == (size_t)STEPS * N);
	fclose(f);
	unlink(in);
	unlink(out);
}

static void compare(const struct ragg__optim *op, const struct ragg__optim_conf *base)
{
	static float w0[N], g[STEPS][N], ref[STEPS * N];
	static float w[N], m[N], v[N];
	struct ragg__optim_conf c = *base;
	c.optim = op;
	for (size_t i = 0; i < N; i++)
		w0[i] = frand();
	/* Gradients of mixed scale, signs and a few exact zeros. */
	for (int s = 0; s < STEPS; s++)
		for (size_t i = 0; i < N; i++)
			g[s][i] = i % 97 == 0 ? 0.0f : frand() * (float)(1 + i % 7) * 0.5f;
	run_torch(op->name, &c, w0, g, ref);

	static const char *const sets[] = { "scalar", "avx2", "avx512", "openblas" };
	for (size_t k = 0; k < sizeof(sets) / sizeof(sets[0]); k++) {
		const struct ragg__kernels *ks = ragg__kernels_get(sets[k]);
		if (!ks)
			continue;
		double max_err = 0;
		memcpy(w, w0, sizeof(w));
		memset(m, 0, sizeof(m));
		memset(v, 0, sizeof(v));
		for (int s = 0; s < STEPS; s++) {
			struct ragg__optim_block b = {
				.w = w, .state = { m, v }, .g = g[s], .n = N
			};
			op->step(&c, ks, &b, (uint64_t)s + 1);
			for (size_t i = 0; i < N; i++) {
				double t = ref[(size_t)s * N + i], err = fabs((double)w[i] - t);
				double tol = (s + 1) * 4 * U * (fabs(t) + c.lr);
				RAGG_CHECKF(err <= tol, "%s/%s step %d [%zu]: %.9g, torch %.9g",
				            op->name, ks->name, s + 1, i, w[i], t);
				max_err = fmax(max_err, err);
			}
		}
		printf("optim_torch: %s/%s lr=%g b1=%g b2=%g eps=%g wd=%g, %d steps of %d: "
		       "max |w - torch| = %.3g\n",
		       op->name, ks->name, (double)c.lr, (double)c.beta1, (double)c.beta2,
		       (double)c.eps, (double)c.weight_decay, STEPS, N, max_err);
	}
}

RAGG_TEST_T(adam_vs_torch, 120)
{
	need_torch();
	struct ragg__optim_conf c = {
		.lr = 0.01f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = 0.0f
	};
	compare(&ragg__optim_adam, &c);
	c.beta1 = 0.8f, c.beta2 = 0.95f, c.eps = 1e-6f, c.weight_decay = 0.05f;
	compare(&ragg__optim_adam, &c);
}

RAGG_TEST_T(adamw_vs_torch, 120)
{
	need_torch();
	struct ragg__optim_conf c = {
		.lr = 0.01f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = 0.01f
	};
	compare(&ragg__optim_adamw, &c);
	c.lr = 0.1f, c.beta1 = 0.8f, c.beta2 = 0.95f, c.eps = 1e-6f, c.weight_decay = 0.1f;
	compare(&ragg__optim_adamw, &c);
}

int main(int argc, char **argv)
{
	return ragg_test_main(argc, argv);
}
