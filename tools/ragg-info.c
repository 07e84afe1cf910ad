/* ragg-info: what this library can use here and the settings in force. */
#include "config.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "bootstrap/boot.h"
#include "engine/engine.h"
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

int main(int argc, char **argv)
{
	char why[256], buf[8192];
	(void)argv;
	if (argc > 1) {
		fprintf(stderr, "usage: ragg-info\nPrints transports, devices, placement and "
		                "settings; see ragg-info(1).\n");
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
