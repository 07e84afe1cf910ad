/*
 * Differential privacy: the noise multiplier a job's settings give
 * (RAGG_DP_NOISE, or RAGG_DP_EPSILON by RAGG_DP_MECHANISM) and the
 * worker's check of RAGG_DP_MAX_EPSILON before a round (privacy/dp_job.h).
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>

#include <ragg/ragg.h>

#include "core.h"
#include "log.h"
#include "privacy/dp.h"
#include "privacy/dp_job.h"
#include "settings.h"

int ragg__dp_multiplier(const struct ragg_opts *o, double *z)
{
	double eps = ragg__opt_double(o, "RAGG_DP_EPSILON");
	if (!(eps > 0)) {
		*z = ragg__opt_double(o, "RAGG_DP_NOISE");
		return 0;
	}
	double delta = ragg__opt_double(o, "RAGG_DP_DELTA");
	bool classic = ragg__opt_long(o, "RAGG_DP_MECHANISM") == 1;
	/* sigma scales with the sensitivity C: z is sigma at C = 1. */
	int rc = classic ? ragg__dp_sigma_classic(eps, delta, 1, z)
	                 : ragg__dp_sigma_analytic(eps, delta, 1, z);
	if (rc == -EDOM && classic) {
		ragg__error("RAGG_DP_EPSILON=%g with RAGG_DP_MECHANISM=classic: the classic "
		            "Gaussian mechanism's bound holds for epsilon < 1 only (use "
		            "RAGG_DP_MECHANISM=analytic)",
		            eps);
		return RAGG_ERR_CONFIG;
	}
	if (rc) {
		ragg__error("RAGG_DP_EPSILON=%g, RAGG_DP_DELTA=%g: no noise gives them", eps, delta);
		return RAGG_ERR_CONFIG;
	}
	return 0;
}

int ragg__dp_opts_check(const struct ragg_opts *o)
{
	double z;
	if (!ragg__dp_on(o))
		return 0;
	return ragg__dp_multiplier(o, &z);
}

int ragg__dp_budget_check(ragg_tensor_t *t)
{
	struct ragg_ctx *ctx = t->ctx;
	const struct ragg_opts *o = &ctx->opts;
	struct ragg__dp_tensor *dp = t->dp;
	double max = ragg__opt_double(o, "RAGG_DP_MAX_EPSILON");
	if (!(max > 0) || t->round == 0)
		return 0;
	double q = ragg__opt_double(o, "RAGG_DP_SAMPLE_RATE");
	double delta = ragg__opt_double(o, "RAGG_DP_DELTA");
	/* One step's RDP at every order, once: then each check is a sum. */
	if (!dp->step_rdp) {
		if (!(dp->step_rdp = malloc(RAGG_DP_NORDERS * sizeof(double))))
			return -ENOMEM;
		for (int k = 0; k < RAGG_DP_NORDERS; k++)
			dp->step_rdp[k] = ragg__dp_rdp(q, dp->z, ragg__dp_orders[k]);
	}
	/* This push makes the round the job's steps + 1-th step. */
	uint64_t steps = ragg__dp_steps(ctx) + 1;
	double rdp[RAGG_DP_NORDERS];
	for (int k = 0; k < RAGG_DP_NORDERS; k++)
		rdp[k] = (double)steps * dp->step_rdp[k];
	double eps = ragg__dp_rdp_to_eps(ragg__dp_orders, rdp, RAGG_DP_NORDERS, delta, NULL);
	if (eps <= max)
		return 0;
	ragg__error("tensor \"%s\" round %llu: the privacy budget is spent: this round would "
	            "be step %llu, epsilon %g at delta %g, above RAGG_DP_MAX_EPSILON=%g; nothing "
	            "was pushed",
	            t->name, (unsigned long long)t->round, (unsigned long long)steps, eps, delta,
	            max);
	return RAGG_ERR_BUDGET;
}
