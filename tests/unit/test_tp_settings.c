/* The transports' settings loader (transports/util): grammar, defaults,
 * bounds, outputs only on success, and every built-in table loading. */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "../transports/registry.h"
#include "../transports/util/settings.h"

struct conf {
	size_t bytes;
	long level;
	bool on;
	char name[8];
};

#define F(m) RAGG__TP_FIELD(struct conf, m)

static const struct ragg__tp_setting rows[] = {
	{ "BYTES", "4K", RAGG__TP_SIZE, F(bytes), 16, 1 << 20, "a size" },
	{ "LEVEL", "-1", RAGG__TP_INT, F(level), -1, 9, "an int" },
	{ "ON", "yes", RAGG__TP_BOOL, F(on), 0, 0, "a boolean" },
	{ "NAME", "abc", RAGG__TP_STRING, F(name), 0, 0, "a string" },
	{ NULL, NULL, 0, 0, 0, 0, 0, NULL },
};

static char last[512];

static void keep(void *arg, const char *msg)
{
	int *n = arg;
	(*n)++;
	strncpy(last, msg, sizeof(last) - 1);
}

static void clear_env(void)
{
	static const char *const vars[] = { "RAGG_UT_BYTES", "RAGG_UT_LEVEL", "RAGG_UT_ON",
		                            "RAGG_UT_NAME" };
	for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
		unsetenv(vars[i]);
}

RAGG_TEST(size_grammar)
{
	size_t v;
	RAGG_CHECK(ragg__tp_parse_size("512B", &v) == 0 && v == 512);
	RAGG_CHECK(ragg__tp_parse_size("3kib", &v) == 0 && v == 3072);
	RAGG_CHECK(ragg__tp_parse_size("1g", &v) == 0 && v == 1u << 30);
	const char *bad[] = { "", " 4", "+4", "-1", "0x10", "4i", "4KB7", "K" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		v = 7;
		RAGG_CHECKF(ragg__tp_parse_size(bad[i], &v) == -EINVAL && v == 7, "\"%s\" accepted",
		            bad[i]);
	}
	RAGG_CHECK(ragg__tp_parse_size("99999999999999999999", &v) == -ERANGE);
	RAGG_CHECK(ragg__tp_parse_size("18446744073709551615G", &v) == -ERANGE);
}

RAGG_TEST(defaults_environment_and_errors)
{
	struct conf c;
	int n = 0;
	clear_env();
	RAGG_CHECK_OK(ragg__tp_settings_load("UT", rows, &c, sizeof(c), keep, &n));
	RAGG_CHECK(c.bytes == 4096 && c.level == -1 && c.on && strcmp(c.name, "abc") == 0);
	setenv("RAGG_UT_BYTES", "1M", 1);
	setenv("RAGG_UT_LEVEL", "9", 1);
	setenv("RAGG_UT_ON", "off", 1);
	setenv("RAGG_UT_NAME", "", 1); /* empty: the default */
	RAGG_CHECK_OK(ragg__tp_settings_load("UT", rows, &c, sizeof(c), keep, &n));
	RAGG_CHECK(c.bytes == 1u << 20 && c.level == 9 && !c.on && strcmp(c.name, "abc") == 0);
	RAGG_CHECK(n == 0);

	const char *cases[][3] = {
		{ "RAGG_UT_BYTES", "8", "expected a size in [16, 1048576]" },
		{ "RAGG_UT_BYTES", "2M", "expected a size in [16, 1048576]" },
		{ "RAGG_UT_LEVEL", "10", "expected an integer in [-1, 9]" },
		{ "RAGG_UT_ON", "maybe", "expected a boolean" },
		{ "RAGG_UT_NAME", "12345678", "expected at most 7 characters" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		clear_env();
		setenv(cases[i][0], cases[i][1], 1);
		memset(&c, 0x5a, sizeof(c));
		n = 0;
		RAGG_CHECK(ragg__tp_settings_load("UT", rows, &c, sizeof(c), keep, &n) ==
		           RAGG_ERR_CONFIG);
		RAGG_CHECK(c.bytes == (size_t)0x5a5a5a5a5a5a5a5aull); /* untouched */
		RAGG_CHECKF(n == 1 && strstr(last, cases[i][0]) && strstr(last, cases[i][1]) &&
		                strstr(last, cases[i][2]),
		            "message \"%s\"", last);
	}
	clear_env();
}

RAGG_TEST(row_not_matching_its_field)
{
	struct conf c;
	int n = 0;
	const struct ragg__tp_setting bad[] = {
		{ "LEVEL", "1", RAGG__TP_SIZE, F(on), 0, 9, "size into a bool" },
		{ NULL, NULL, 0, 0, 0, 0, 0, NULL },
	};
	RAGG_CHECK(ragg__tp_settings_load("UT", bad, &c, sizeof(c), keep, &n) == -EINVAL && n == 1);
}

RAGG_TEST(builtin_tables_load_their_defaults)
{
	for (const struct ragg__tp_entry *t = ragg__tp_registry; t->ops; t++) {
		char var[RAGG__TP_VAR_MAX];
		for (const struct ragg__tp_setting *s = t->settings; s->field; s++) {
			int n = 0;
			RAGG_CHECKF(ragg__tp_setting_parse(var, s, s->def, NULL, keep, &n) == 0,
			            "%s %s: default \"%s\": %s", t->ops->name, s->field, s->def,
			            last);
			ragg__tp_setting_value(t->prefix, s, var);
			RAGG_CHECK(strncmp(var, "RAGG_", 5) == 0);
		}
	}
}

int main(int argc, char **argv)
{
	return ragg_test_main(argc, argv);
}
