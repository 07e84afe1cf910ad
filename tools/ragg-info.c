/* ragg-info: what this library can use here and the settings in force. */
#include "config.h"

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bootstrap/boot.h"
#include "engine/engine.h"
#include "log.h"
#include "privacy/dp_job.h"
#include "settings.h"
#include "../transports/registry.h"

#include <ragg/ragg.h>
#include <ragg/transport.h>

static void print_invalid(void *arg, const char *msg)
{
	(void)arg;
	printf("    ^ invalid: %s\n", msg);
}

static void quiet(void *arg, const char *msg)
{
	(void)arg;
	(void)msg;
}

/* One transport's table, as the core's; a value the transport would refuse
 * is shown with the reason under its row. */
static void print_transport_settings(const struct ragg__tp_entry *t)
{
	char var[RAGG__TP_VAR_MAX];
	printf("\nsettings of %s (RAGG_%s_*: value in force, default, meaning):\n", t->ops->name,
	       t->prefix);
	for (const struct ragg__tp_setting *s = t->settings; s->field; s++) {
		const char *v = ragg__tp_setting_value(t->prefix, s, var);
		printf("  %-29s = %-8s (default \"%s\") %s\n", var, v, s->def, s->doc);
		ragg__tp_setting_parse(var, s, v, NULL, print_invalid, NULL);
	}
}

/* ragg-info --dp [key=value,...]: the noise and the epsilon the privacy
 * settings give (ragg-privacy(7)), the environment's unless overridden. */
static const struct {
	const char *key, *setting;
} dp_keys[] = {
	{ "q", "RAGG_DP_SAMPLE_RATE" }, { "z", "RAGG_DP_NOISE" },
	{ "delta", "RAGG_DP_DELTA" },   { "clip", "RAGG_DP_CLIP" },
	{ "epsilon", "RAGG_DP_EPSILON" }, { "mechanism", "RAGG_DP_MECHANISM" },
	{ "max", "RAGG_DP_MAX_EPSILON" },
};

static int dp_report(const char *args)
{
	struct ragg_opts o;
	unsigned long long steps = 1;
	char list[512];
	if (ragg_opts_default(&o)) {
		fprintf(stderr, "ragg-info: the environment's RAGG_* settings are invalid (see "
		                "ragg-info)\n");
		return 1;
	}
	if (args && strlen(args) >= sizeof(list)) {
		fprintf(stderr, "ragg-info: --dp: arguments too long\n");
		return 2;
	}
	/* What is refused is said on stderr, whatever RAGG_LOG. */
	ragg__logging_setup(&o);
	if (ragg__log_level < RAGG_LOG_ERROR)
		ragg__log_set(RAGG_LOG_ERROR);
	snprintf(list, sizeof(list), "%s", args ? args : "");
	for (char *save, *kv = strtok_r(list, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(kv, '=');
		if (!eq || eq == kv || !eq[1]) {
			fprintf(stderr, "ragg-info: --dp: \"%s\" is not key=value\n", kv);
			return 2;
		}
		*eq = 0;
		if (!strcmp(kv, "steps")) {
			char *end;
			steps = strtoull(eq + 1, &end, 10);
			if (*end || eq[1] == '-') {
				fprintf(stderr, "ragg-info: --dp: steps=%s is not a count\n", eq + 1);
				return 2;
			}
			continue;
		}
		size_t k = 0, nk = sizeof(dp_keys) / sizeof(dp_keys[0]);
		while (k < nk && strcmp(kv, dp_keys[k].key))
			k++;
		if (k == nk) {
			fprintf(stderr, "ragg-info: --dp: unknown key \"%s\" (q, z, steps, delta, "
			                "clip, epsilon, mechanism, max)\n",
			        kv);
			return 2;
		}
		if (ragg_opts_set(&o, dp_keys[k].setting, eq + 1))
			return 2; /* the library logged why */
		/* z given: the noise multiplier, not one from an epsilon. */
		if (!strcmp(kv, "z") && ragg_opts_set(&o, "RAGG_DP_EPSILON", "0"))
			return 2;
	}
	double z, q = ragg__opt_double(&o, "RAGG_DP_SAMPLE_RATE");
	double delta = ragg__opt_double(&o, "RAGG_DP_DELTA"), clip = ragg__opt_double(&o, "RAGG_DP_CLIP");
	double eps_set = ragg__opt_double(&o, "RAGG_DP_EPSILON");
	double max = ragg__opt_double(&o, "RAGG_DP_MAX_EPSILON");
	double eps, order;
	if (ragg__dp_multiplier(&o, &z))
		return 1; /* logged */
	const char *from = !(eps_set > 0) ? "RAGG_DP_NOISE" : ragg__opt_get(&o, "RAGG_DP_MECHANISM");
	printf("dp: sigma=%.9g z=%.9g clip=%g q=%g delta=%g steps=%llu noise=%s\n", z * clip, z,
	       clip, q, delta, steps, from);
	if (ragg_dp_epsilon(q, z, steps, delta, &eps, &order))
		return 1;
	printf("dp: epsilon=%.6g order=%g\n", eps, order);
	if (max > 0) {
		/* The most rounds within the budget: epsilon grows with them. */
		double e;
		uint64_t lo = 0, hi = 1;
		while (hi < (1ull << 40) && !ragg_dp_epsilon(q, z, hi, delta, &e, NULL) && e <= max) {
			lo = hi;
			hi *= 2;
		}
		while (hi - lo > 1) {
			uint64_t mid = lo + (hi - lo) / 2;
			if (!ragg_dp_epsilon(q, z, mid, delta, &e, NULL) && e <= max)
				lo = mid;
			else
				hi = mid;
		}
		printf("dp: max_epsilon=%g rounds_within=%llu%s\n", max, (unsigned long long)lo,
		       hi >= (1ull << 40) ? "+" : "");
	}
	return 0;
}

int main(int argc, char **argv)
{
	char why[256], buf[8192];
	if (argc > 1 && !strcmp(argv[1], "--dp") && argc <= 3)
		return dp_report(argc == 3 ? argv[2] : NULL);
	if (argc > 1) {
		fprintf(stderr, "usage: ragg-info [--dp [q=Q,z=Z,steps=T,delta=D,...]]\nPrints "
		                "transports, devices, placement and settings, or (--dp) the "
		                "privacy settings' noise and epsilon; see ragg-info(1).\n");
		return 2;
	}
	printf("ragg %s\n\n", PACKAGE_VERSION);
	printf("transports:\n");
	for (const struct ragg_tp_ops *const *t = ragg_transport_list(); *t; t++) {
		why[0] = 0;
		int rc = ragg_transport_check(*t, why, sizeof(why));
		if (rc == 0)
			rc = (*t)->probe(why, sizeof(why));
		printf("  %-8s %s%s%s\n", (*t)->name, rc ? "not usable" : "usable",
		       why[0] ? ": " : "", why);
	}
	/* What each transport can say about its devices (verbs: the RDMA
	 * devices and ports); the others answer -EOPNOTSUPP. */
	for (const struct ragg_tp_ops *const *t = ragg_transport_list(); *t; t++) {
		if (ragg_transport_check(*t, NULL, 0) || !RAGG_TP_HAS_OP(*t, describe) ||
		    (*t)->describe(buf, sizeof(buf)) != 0)
			continue;
		printf("\ndevices of %s:\n", (*t)->name);
		fputs(buf, stdout);
	}
	/* The library's view of the environment; when a value is bad (shown
	 * below with the reason) the defaults stand in for the engine. */
	struct ragg_opts o;
	if (ragg_opts_default(&o)) {
		memset(&o, 0, sizeof(o));
		o.size = sizeof(o);
	}
	/* Which exchange ragg_init would use here (RAGG_BOOTSTRAP). */
	const char *boot = ragg__boot_kind(&o);
	printf("\nbootstrap: rendezvous, pmix %s; here: %s\n",
	       ragg__pmix_built() ? "(built in)" : "(not built: libpmix-dev)",
	       boot ? boot : "(RAGG_BOOTSTRAP names one not at hand)");
	printf("\naggregation engine:\n");
	const char *kname = ragg__opt_get(&o, "RAGG_KERNELS");
	const struct ragg__kernels *k = ragg__kernels_get(kname);
	printf("  kernels: %s\n", k ? k->name : "(RAGG_KERNELS names none usable here)");
	struct ragg__engine *e;
	struct ragg__engine_conf conf = { .threads = 0 };
	conf.threads = (int)ragg__opt_long(&o, "RAGG_AGG_THREADS");
	const char *cpus = ragg__opt_get(&o, "RAGG_CPUS");
	conf.cpus = *cpus ? cpus : NULL;
	if (ragg__engine_start(&conf, &e) == 0) {
		if (ragg__engine_describe(e, buf, sizeof(buf)) == 0)
			printf("  %s\n", buf);
		ragg__engine_stop(e);
	} else {
		printf("  placement: cannot start with these settings\n");
	}
	printf("\nsettings (RAGG_*: value in force, default, meaning; job-wide: every process "
	       "of the job must agree):\n");
	for (const struct ragg__setting *s = ragg__settings; s->name; s++) {
		const char *v = ragg__setting_env(s);
		bool secret = (s->flags & RAGG__SETTING_SECRET) && *v;
		int bad = ragg__tp_value_parse(s->name, &s->spec, v, NULL, quiet, NULL);
		if (secret)
			v = "(set, not shown)";
		printf("  %-22s = %-16s (default \"%s\") %s%s\n", s->name, v, s->def,
		       s->flags & RAGG__SETTING_JOB_WIDE ? "[job-wide] " : "", s->doc);
		if (bad && !secret)
			ragg__tp_value_parse(s->name, &s->spec, v, NULL, print_invalid, NULL);
	}
	for (const struct ragg__tp_entry *t = ragg__tp_registry; t->ops; t++)
		print_transport_settings(t);
	return 0;
}
