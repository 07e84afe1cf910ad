/* Settings: parsing, defaults, validation, and error names. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "bootstrap/boot.h"
#include "harness.h"
#include "settings.h"

static void clear_env(void)
{
	static const char *const launcher[] = { "OMPI_COMM_WORLD_RANK",
		                                "OMPI_COMM_WORLD_SIZE",
		                                "PMIX_RANK",
		                                "PMIX_NAMESPACE",
		                                "PMIX_SIZE",
		                                "PMI_RANK",
		                                "PMI_SIZE",
		                                "SLURM_PROCID",
		                                "SLURM_NTASKS" };
	for (const struct ragg__setting *s = ragg__settings; s->name; s++)
		unsetenv(s->name);
	for (size_t i = 0; i < sizeof(launcher) / sizeof(launcher[0]); i++)
		unsetenv(launcher[i]);
}

RAGG_TEST(sizes)
{
	size_t v;
	RAGG_CHECK_OK(ragg__parse_size("X", "4096", &v));
	RAGG_CHECK(v == 4096);
	RAGG_CHECK_OK(ragg__parse_size("X", "64K", &v));
	RAGG_CHECK(v == 65536);
	RAGG_CHECK_OK(ragg__parse_size("X", "4M", &v));
	RAGG_CHECK(v == 4u << 20);
	RAGG_CHECK_OK(ragg__parse_size("X", "1GiB", &v));
	RAGG_CHECK(v == 1u << 30);
	RAGG_CHECK_OK(ragg__parse_size("X", "2mb", &v));
	RAGG_CHECK(v == 2u << 20);
	const char *bad[] = {
		"", "-1", "4X", "M", "1.5M", "99999999999999999999", "18446744073709551615G"
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		v = 7;
		RAGG_CHECKF(ragg__parse_size("X", bad[i], &v) == RAGG_ERR_CONFIG, "\"%s\" accepted",
		            bad[i]);
		RAGG_CHECK(v == 7); /* outputs written only on success */
	}
}

RAGG_TEST(ints_and_floats)
{
	long l;
	float f;
	RAGG_CHECK_OK(ragg__parse_int("X", "12", 0, 100, &l));
	RAGG_CHECK(l == 12);
	RAGG_CHECK(ragg__parse_int("X", "101", 0, 100, &l) == RAGG_ERR_CONFIG);
	RAGG_CHECK(ragg__parse_int("X", "-1", 0, 100, &l) == RAGG_ERR_CONFIG);
	RAGG_CHECK(ragg__parse_int("X", "1x", 0, 100, &l) == RAGG_ERR_CONFIG);
	RAGG_CHECK_OK(ragg__parse_float("X", "0.25", &f));
	RAGG_CHECK(f == 0.25f);
	RAGG_CHECK(ragg__parse_float("X", "nan", &f) == RAGG_ERR_CONFIG);
	RAGG_CHECK(ragg__parse_float("X", "inf", &f) == RAGG_ERR_CONFIG);
	RAGG_CHECK(ragg__parse_float("X", "", &f) == RAGG_ERR_CONFIG);
}

RAGG_TEST(defaults_and_environment)
{
	struct ragg_opts o;
	clear_env();
	RAGG_CHECK_OK(ragg_opts_default(&o));
	RAGG_CHECK(o.size == sizeof(o));
	RAGG_CHECK(o.chunk_bytes == 4u << 20);
	RAGG_CHECK(o.timeout_ms == 60000);
	RAGG_CHECK(o.poll == RAGG_POLL_ADAPTIVE);
	RAGG_CHECK(strcmp(o.transport, "auto") == 0);
	setenv("RAGG_ROLE", "agent", 1);
	setenv("RAGG_RANK", "1", 1);
	setenv("RAGG_WORKERS", "8", 1);
	setenv("RAGG_AGENTS", "2", 1);
	setenv("RAGG_CHUNK_BYTES", "64K", 1);
	setenv("RAGG_POLL", "busy", 1);
	setenv("RAGG_OPTIMIZER", "momentum", 1);
	setenv("RAGG_LR", "0.125", 1);
	RAGG_CHECK_OK(ragg_opts_default(&o));
	RAGG_CHECK(o.role == RAGG_ROLE_AGENT && o.rank == 1 && o.workers == 8 && o.agents == 2);
	RAGG_CHECK(o.chunk_bytes == 65536 && o.poll == RAGG_POLL_BUSY &&
	           o.optimizer == RAGG_OPT_MOMENTUM);
	RAGG_CHECK(o.lr == 0.125f);
	RAGG_CHECK_OK(ragg__opts_validate(&o));
	setenv("RAGG_OPTIMIZER", "adam", 1);
	RAGG_CHECK_OK(ragg_opts_default(&o));
	RAGG_CHECK(o.optimizer == RAGG_OPT_ADAM);
	setenv("RAGG_OPTIMIZER", "AdamW", 1);
	RAGG_CHECK_OK(ragg_opts_default(&o));
	RAGG_CHECK(o.optimizer == RAGG_OPT_ADAMW);
}

RAGG_TEST(bad_settings_refused)
{
	struct ragg_opts o;
	const char *cases[][2] = {
		{ "RAGG_ROLE", "boss" },        { "RAGG_POLL", "sometimes" },
		{ "RAGG_CHUNK_BYTES", "lots" }, { "RAGG_TIMEOUT_MS", "0" },
		{ "RAGG_WORKERS", "0" },        { "RAGG_OPTIMIZER", "adagrad" },
		{ "RAGG_LR", "fast" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		clear_env();
		setenv(cases[i][0], cases[i][1], 1);
		memset(&o, 0x5a, sizeof(o));
		RAGG_CHECKF(ragg_opts_default(&o) == RAGG_ERR_CONFIG, "%s=%s accepted", cases[i][0],
		            cases[i][1]);
		RAGG_CHECK(o.size == 0x5a5a5a5a5a5a5a5aull); /* untouched */
	}
}

RAGG_TEST(validation)
{
	struct ragg_opts o;
	clear_env();
	RAGG_CHECK_OK(ragg_opts_default(&o));
	RAGG_CHECK(ragg__opts_validate(&o) == RAGG_ERR_CONFIG); /* no role */
	o.role = RAGG_ROLE_WORKER;
	o.workers = 4;
	o.rank = 4;
	RAGG_CHECK(ragg__opts_validate(&o) == RAGG_ERR_CONFIG); /* rank out of range */
	o.rank = 3;
	RAGG_CHECK_OK(ragg__opts_validate(&o));
	o.agents = 5;
	RAGG_CHECK(ragg__opts_validate(&o) == RAGG_ERR_CONFIG); /* more agents than workers */
	o.agents = 2;
	o.chunk_bytes = 1000;
	RAGG_CHECK(ragg__opts_validate(&o) == RAGG_ERR_CONFIG);
	o.chunk_bytes = 4096;
	/* Every optimizer of the table is valid; a value outside it is not. */
	RAGG_CHECK_OK(ragg_opts_set(&o, "RAGG_OPTIMIZER", "adamw"));
	RAGG_CHECK(o.optimizer == RAGG_OPT_ADAMW);
	RAGG_CHECK_OK(ragg__opts_validate(&o));
	o.optimizer = (enum ragg_optimizer)42;
	RAGG_CHECK(ragg__opts_validate(&o) == RAGG_ERR_CONFIG);
	RAGG_CHECK_OK(ragg_opts_set(&o, "RAGG_OPTIMIZER", NULL));
	RAGG_CHECK_OK(ragg__opts_validate(&o));
	strcpy(o.root, "nohostport");
	RAGG_CHECK(ragg__opts_validate(&o) == RAGG_ERR_CONFIG);
}

/* Asynchronous rounds name an agent's workers in a 256-bit map: 256
 * workers an agent pass, 257 are refused, and without RAGG_STALENESS any
 * number passes. */
RAGG_TEST(staleness_workers_per_agent)
{
	struct ragg_opts o;
	clear_env();
	RAGG_CHECK_OK(ragg_opts_default(&o));
	o.role = RAGG_ROLE_WORKER;
	o.workers = 512;
	o.agents = 2;
	RAGG_CHECK_OK(ragg_opts_set(&o, "RAGG_STALENESS", "2"));
	RAGG_CHECK_OK(ragg__opts_validate(&o));
	o.workers = 513;
	RAGG_CHECK(ragg__opts_validate(&o) == RAGG_ERR_CONFIG);
	RAGG_CHECK_OK(ragg_opts_set(&o, "RAGG_STALENESS", "inf"));
	RAGG_CHECK(ragg__opts_validate(&o) == RAGG_ERR_CONFIG);
	RAGG_CHECK_OK(ragg_opts_set(&o, "RAGG_STALENESS", "0"));
	RAGG_CHECK_OK(ragg__opts_validate(&o));
}

RAGG_TEST(role_from_launcher_rank)
{
	struct ragg_opts o;
	clear_env();
	setenv("RAGG_AGENTS", "2", 1);
	setenv("RAGG_SERVERS", "3", 1);
	setenv("OMPI_COMM_WORLD_SIZE", "13", 1);
	const int expect[][2] = { { RAGG_ROLE_SERVER, 0 }, { RAGG_ROLE_SERVER, 2 },
		                  { RAGG_ROLE_AGENT, 0 },  { RAGG_ROLE_AGENT, 1 },
		                  { RAGG_ROLE_WORKER, 0 }, { RAGG_ROLE_WORKER, 7 } };
	const char *ranks[] = { "0", "2", "3", "4", "5", "12" };
	for (int i = 0; i < 6; i++) {
		setenv("OMPI_COMM_WORLD_RANK", ranks[i], 1);
		RAGG_CHECK_OK(ragg_opts_default(&o));
		RAGG_CHECKF(o.role == (enum ragg_role)expect[i][0] && o.rank == expect[i][1],
		            "global rank %s: role %d rank %d", ranks[i], o.role, o.rank);
		RAGG_CHECK(o.workers == 8);
		RAGG_CHECK_OK(ragg__opts_validate(&o));
	}
	/* An explicit role wins over the launcher's rank. */
	setenv("RAGG_ROLE", "worker", 1);
	setenv("RAGG_RANK", "1", 1);
	RAGG_CHECK_OK(ragg_opts_default(&o));
	RAGG_CHECK(o.role == RAGG_ROLE_WORKER && o.rank == 1);
	unsetenv("OMPI_COMM_WORLD_RANK");
	unsetenv("OMPI_COMM_WORLD_SIZE");
}

/* RAGG_BOOTSTRAP=auto takes PMIx under a PMIx launcher (with PMIx built
 * in) unless a rendezvous address is given, in the environment or the
 * struct; pmix where PMIx is not at hand is refused. */
static bool kind_is(const struct ragg_opts *o, const char *want)
{
	const char *k = ragg__boot_kind(o);
	return want ? k && strcmp(k, want) == 0 : !k;
}

RAGG_TEST(bootstrap_choice)
{
	struct ragg_opts o;
	const char *pmix = ragg__pmix_built() ? "pmix" : "rendezvous";
	clear_env();
	setenv("RAGG_ROLE", "server", 1);
	RAGG_CHECK_OK(ragg_opts_default(&o));
	RAGG_CHECK(kind_is(&o, "rendezvous"));
	setenv("PMIX_NAMESPACE", "job7", 1);
	setenv("PMIX_RANK", "0", 1);
	RAGG_CHECK_OK(ragg_opts_default(&o));
	RAGG_CHECK(kind_is(&o, pmix));
	RAGG_CHECK_OK(ragg_opts_set(&o, "RAGG_ROOT", "10.0.0.1:29500"));
	RAGG_CHECK(kind_is(&o, "rendezvous"));
	/* Given, though equal to the default (ragg-run gives it). */
	setenv("RAGG_ROOT", "127.0.0.1:29500", 1);
	RAGG_CHECK_OK(ragg_opts_default(&o));
	RAGG_CHECK(kind_is(&o, "rendezvous"));
	unsetenv("RAGG_ROOT");
	setenv("RAGG_BOOTSTRAP", "rendezvous", 1);
	RAGG_CHECK_OK(ragg_opts_default(&o));
	RAGG_CHECK(kind_is(&o, "rendezvous"));
	setenv("RAGG_BOOTSTRAP", "pmix", 1);
	RAGG_CHECK_OK(ragg_opts_default(&o));
	RAGG_CHECK(kind_is(&o, ragg__pmix_built() ? "pmix" : NULL));
	unsetenv("PMIX_NAMESPACE");
	RAGG_CHECK_OK(ragg_opts_default(&o));
	RAGG_CHECK(kind_is(&o, NULL));
	setenv("RAGG_BOOTSTRAP", "mpi", 1);
	RAGG_CHECK(ragg_opts_default(&o) == RAGG_ERR_CONFIG);
	clear_env();
}

/* Every row of the table loads its default and prints it back. */
RAGG_TEST(table_rows_and_types)
{
	struct ragg_opts o;
	clear_env();
	RAGG_CHECK_OK(ragg_opts_default(&o));
	for (const struct ragg__setting *s = ragg__settings; s->name; s++) {
		RAGG_CHECKF(ragg__tp_value_parse(s->name, &s->spec, s->def, NULL, NULL, NULL) == 0,
		            "%s: default \"%s\" refused", s->name, s->def);
		RAGG_CHECK(ragg__opt_get(&o, s->name) != NULL);
		RAGG_CHECKF(s->doc && *s->doc, "%s has no doc", s->name);
	}
	/* A zeroed opaque area is every setting at its default. */
	for (size_t i = 0; i < sizeof(o.ext); i++)
		RAGG_CHECK(o.ext[i] == 0);
	RAGG_CHECK(ragg__opt_long(&o, "RAGG_AGG_THREADS") == -1); /* auto */
	RAGG_CHECK(ragg__opt_double(&o, "RAGG_BETA1") == 0.9);
	RAGG_CHECK(ragg__opt_double(&o, "RAGG_BETA2") == 0.999);
	RAGG_CHECK(ragg__opt_double(&o, "RAGG_EPS") == 1e-8);
	RAGG_CHECK(ragg__opt_double(&o, "RAGG_WEIGHT_DECAY") == 0);
	RAGG_CHECK(ragg__opt_size(&o, "RAGG_CHUNK_BYTES") == 4u << 20);
	RAGG_CHECK(strcmp(ragg__opt_get(&o, "RAGG_OPTIMIZER"), "sgd") == 0);
	RAGG_CHECK(strcmp(ragg__opt_get(&o, "RAGG_KERNELS"), "auto") == 0);
	RAGG_CHECK(strcmp(ragg__opt_get(&o, "RAGG_LISTEN_HOST"), "") == 0);
	RAGG_CHECK(ragg__opt_get(&o, "RAGG_NO_SUCH") == NULL);
	/* Job-wide rows: the chunk size, the optimizer and its parameters. */
	const char *job[] = { "RAGG_CHUNK_BYTES", "RAGG_LR",          "RAGG_OPTIMIZER",
		              "RAGG_MOMENTUM",    "RAGG_BETA1",       "RAGG_BETA2",
		              "RAGG_EPS",         "RAGG_WEIGHT_DECAY" };
	for (size_t i = 0; i < sizeof(job) / sizeof(job[0]); i++)
		RAGG_CHECK(ragg__setting_find(job[i])->flags & RAGG__SETTING_JOB_WIDE);
	RAGG_CHECK(!(ragg__setting_find("RAGG_RANK")->flags & RAGG__SETTING_JOB_WIDE));
}

RAGG_TEST(set_by_name)
{
	struct ragg_opts o, before;
	clear_env();
	RAGG_CHECK_OK(ragg_opts_default(&o));
	RAGG_CHECK_OK(ragg_opts_set(&o, "RAGG_LR", "0.5"));
	RAGG_CHECK(o.lr == 0.5f);
	RAGG_CHECK_OK(ragg_opts_set(&o, "RAGG_OPTIMIZER", "MOMENTUM"));
	RAGG_CHECK(o.optimizer == RAGG_OPT_MOMENTUM);
	RAGG_CHECK_OK(ragg_opts_set(&o, "RAGG_CHUNK_BYTES", "64K"));
	RAGG_CHECK(o.chunk_bytes == 65536);
	RAGG_CHECK_OK(ragg_opts_set(&o, "RAGG_ROLE", "server"));
	RAGG_CHECK(o.role == RAGG_ROLE_SERVER);
	RAGG_CHECK_OK(ragg_opts_set(&o, "RAGG_AGG_THREADS", "3"));
	RAGG_CHECK(ragg__opt_long(&o, "RAGG_AGG_THREADS") == 3);
	RAGG_CHECK_OK(ragg_opts_set(&o, "RAGG_AGG_THREADS", "auto"));
	RAGG_CHECK(ragg__opt_long(&o, "RAGG_AGG_THREADS") == -1);
	RAGG_CHECK_OK(ragg_opts_set(&o, "RAGG_LISTEN_HOST", "10.0.0.7"));
	RAGG_CHECK_OK(ragg_opts_set(&o, "RAGG_BETA2", "0.99"));
	RAGG_CHECK(strcmp(ragg__opt_get(&o, "RAGG_LISTEN_HOST"), "10.0.0.7") == 0);
	RAGG_CHECK(ragg__opt_double(&o, "RAGG_BETA2") == 0.99);
	/* Replacing a value keeps one entry; a copy of the struct keeps them. */
	RAGG_CHECK_OK(ragg_opts_set(&o, "RAGG_LISTEN_HOST", "10.0.0.8"));
	struct ragg_opts copy = o;
	RAGG_CHECK(strcmp(ragg__opt_get(&copy, "RAGG_LISTEN_HOST"), "10.0.0.8") == 0);
	RAGG_CHECK(ragg__opt_double(&copy, "RAGG_BETA2") == 0.99);
	/* Empty and NULL put the default back. */
	RAGG_CHECK_OK(ragg_opts_set(&o, "RAGG_LISTEN_HOST", ""));
	RAGG_CHECK(strcmp(ragg__opt_get(&o, "RAGG_LISTEN_HOST"), "") == 0);
	RAGG_CHECK_OK(ragg_opts_set(&o, "RAGG_BETA2", NULL));
	RAGG_CHECK(ragg__opt_double(&o, "RAGG_BETA2") == 0.999);
	RAGG_CHECK_OK(ragg_opts_set(&o, "RAGG_LR", ""));
	RAGG_CHECK(o.lr == 0.01f);

	/* Refusals leave opts as it was. */
	const char *bad[][2] = {
		{ "RAGG_LR", "fast" },
		{ "RAGG_LR", "-1" },
		{ "RAGG_LR", "inf" },
		{ "RAGG_BETA1", "1" },
		{ "RAGG_EPS", "0" },
		{ "RAGG_OPTIMIZER", "adagrad" },
		{ "RAGG_CHUNK_BYTES", "100" },
		{ "RAGG_AGG_THREADS", "many" },
		{ "RAGG_AGG_THREADS", "2000" },
		{ "RAGG_RANK", "-1" },
		{ "RAGG_LOG", "loud" },
		{ "RAGG_POLL", "sometimes" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		before = o;
		RAGG_CHECKF(ragg_opts_set(&o, bad[i][0], bad[i][1]) == RAGG_ERR_CONFIG,
		            "%s=%s accepted", bad[i][0], bad[i][1]);
		RAGG_CHECK(memcmp(&before, &o, sizeof(o)) == 0);
	}
	RAGG_CHECK(ragg_opts_set(&o, "RAGG_NO_SUCH", "1") == -ENOENT);
	RAGG_CHECK(ragg_opts_set(&o, "RAGG_TCP_SNDBUF", "1") == -ENOENT);
	RAGG_CHECK(ragg_opts_set(NULL, "RAGG_LR", "1") == -EINVAL);
	RAGG_CHECK(ragg_opts_set(&o, NULL, "1") == -EINVAL);
	o.size = 8;
	RAGG_CHECK(ragg_opts_set(&o, "RAGG_LR", "1") == -EINVAL);
	o.size = sizeof(o);

	/* The longest values of every text row fit in the opaque area together. */
	char big[200];
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = 0;
	const char *text_rows[] = { "RAGG_LISTEN_HOST", "RAGG_CPUS" };
	int rc = 0;
	for (int i = 0; i < 2 && !rc; i++)
		rc = ragg_opts_set(&o, text_rows[i], big);
	RAGG_CHECK_OK(rc);
	RAGG_CHECK(strcmp(ragg__opt_get(&o, "RAGG_CPUS"), big) == 0);
}

/* The environment overrides the defaults, ragg_opts_set overrides both;
 * the settings once read with getenv where used now come from opts. */
RAGG_TEST(env_then_set)
{
	struct ragg_opts o;
	clear_env();
	setenv("RAGG_LR", "0.02", 1);
	setenv("RAGG_KERNELS", "scalar", 1);
	setenv("RAGG_AGG_THREADS", "2", 1);
	setenv("RAGG_TRANSPORT_WORKERS", "shm", 1);
	setenv("RAGG_BETA1", "0.8", 1);
	setenv("RAGG_CPUS", "", 1); /* empty: the default */
	RAGG_CHECK_OK(ragg_opts_default(&o));
	RAGG_CHECK(o.lr == 0.02f);
	RAGG_CHECK(strcmp(ragg__opt_get(&o, "RAGG_KERNELS"), "scalar") == 0);
	RAGG_CHECK(ragg__opt_long(&o, "RAGG_AGG_THREADS") == 2);
	RAGG_CHECK(strcmp(ragg__opt_get(&o, "RAGG_TRANSPORT_WORKERS"), "shm") == 0);
	RAGG_CHECK(ragg__opt_double(&o, "RAGG_BETA1") == 0.8);
	RAGG_CHECK(strcmp(ragg__opt_get(&o, "RAGG_CPUS"), "") == 0);
	RAGG_CHECK_OK(ragg_opts_set(&o, "RAGG_LR", "0.03"));
	RAGG_CHECK_OK(ragg_opts_set(&o, "RAGG_KERNELS", "avx2"));
	RAGG_CHECK_OK(ragg_opts_set(&o, "RAGG_BETA1", "0.7"));
	RAGG_CHECK(o.lr == 0.03f);
	RAGG_CHECK(strcmp(ragg__opt_get(&o, "RAGG_KERNELS"), "avx2") == 0);
	RAGG_CHECK(ragg__opt_double(&o, "RAGG_BETA1") == 0.7);
	/* A bad logging level is reported and selects errors, as documented. */
	setenv("RAGG_LOG", "loud", 1);
	RAGG_CHECK_OK(ragg_opts_default(&o));
	RAGG_CHECK(strcmp(ragg__opt_get(&o, "RAGG_LOG"), "error") == 0);
	unsetenv("RAGG_LOG");
	RAGG_CHECK_OK(ragg_opts_set(&o, "RAGG_LR", "0.03"));
	RAGG_CHECK_OK(ragg_opts_set(&o, "RAGG_KERNELS", "avx2"));
	/* The environment is read once, by ragg_opts_default. */
	setenv("RAGG_KERNELS", "openblas", 1);
	RAGG_CHECK(strcmp(ragg__opt_get(&o, "RAGG_KERNELS"), "avx2") == 0);
	clear_env();
}

/* The canonical form that processes compare. */
RAGG_TEST(canonical_values)
{
	struct ragg_opts a, b;
	char text[64];
	clear_env();
	RAGG_CHECK_OK(ragg_opts_default(&a));
	b = a;
	const struct ragg__setting *lr = ragg__setting_find("RAGG_LR");
	const struct ragg__setting *opt = ragg__setting_find("RAGG_OPTIMIZER");
	const struct ragg__setting *cb = ragg__setting_find("RAGG_CHUNK_BYTES");
	for (const struct ragg__setting *s = ragg__settings; s->name; s++)
		RAGG_CHECK(ragg__setting_canon(&a, s) == ragg__setting_canon(&b, s));
	RAGG_CHECK_OK(ragg_opts_set(&b, "RAGG_LR", "0.02"));
	RAGG_CHECK(ragg__setting_canon(&a, lr) != ragg__setting_canon(&b, lr));
	ragg__setting_canon_text(lr, ragg__setting_canon(&b, lr), text, sizeof(text));
	RAGG_CHECK(strcmp(text, "0.02") == 0);
	RAGG_CHECK_OK(ragg_opts_set(&b, "RAGG_OPTIMIZER", "adamw"));
	ragg__setting_canon_text(opt, ragg__setting_canon(&b, opt), text, sizeof(text));
	RAGG_CHECK(strcmp(text, "adamw") == 0);
	ragg__setting_canon_text(cb, ragg__setting_canon(&a, cb), text, sizeof(text));
	RAGG_CHECK(strcmp(text, "4194304") == 0);
}

RAGG_TEST(error_names)
{
	RAGG_CHECK(strcmp(ragg_strerror_name(RAGG_ERR_TIMEOUT), "RAGG_ERR_TIMEOUT") == 0);
	RAGG_CHECK(strcmp(ragg_strerror_name(RAGG_ERR_PEER_LOST), "RAGG_ERR_PEER_LOST") == 0);
	RAGG_CHECK(strcmp(ragg_strerror_name(-ECONNREFUSED), "ECONNREFUSED") == 0);
	RAGG_CHECK(strcmp(ragg_strerror_name(0), "OK") == 0);
	RAGG_CHECK(strcmp(ragg_strerror_name(-100000), "UNKNOWN") == 0);
	RAGG_CHECK(strstr(ragg_strerror(RAGG_ERR_MEMLOCK), "ulimit -l") != NULL);
	RAGG_CHECK(strcmp(ragg_strerror(-ENOMEM), "Cannot allocate memory") == 0);
	/* Every code of ragg's own has a distinct name and a text. */
	int codes[] = {
#define X(name, value, text) value,
		RAGG_ERRNO_MAP(X)
#undef X
	};
	for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
		RAGG_CHECK(strcmp(ragg_strerror(codes[i]), "unknown error") != 0);
		RAGG_CHECK(codes[i] <= -256);
		for (size_t j = 0; j < i; j++)
			RAGG_CHECK(strcmp(ragg_strerror_name(codes[i]),
			                  ragg_strerror_name(codes[j])) != 0);
	}
}

int main(int argc, char **argv)
{
	return ragg_test_main(argc, argv);
}
