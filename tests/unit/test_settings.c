/* Settings: parsing, defaults, validation, and error names. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "settings.h"

static void clear_env(void)
{
	static const char *const launcher[] = { "OMPI_COMM_WORLD_RANK",
		                                "OMPI_COMM_WORLD_SIZE",
		                                "PMIX_RANK",
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
		{ "RAGG_WORKERS", "0" },        { "RAGG_OPTIMIZER", "lion" },
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
	strcpy(o.root, "nohostport");
	RAGG_CHECK(ragg__opts_validate(&o) == RAGG_ERR_CONFIG);
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
