/*
 * Settings of the shm transport: one table {name, default, doc}, each read
 * from RAGG_SHM_<NAME>. The man page ragg-shm(7) lists the same rows.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "shm.h"

enum ragg__shm_setting_kind { SETTING_SIZE, SETTING_BOOL };

struct ragg__shm_setting {
	const char *name;
	const char *dflt;
	enum ragg__shm_setting_kind kind;
	size_t offset;
	size_t min, max;
	const char *doc;
};

#define FIELD(f) offsetof(struct ragg__shm_config, f)

static const struct ragg__shm_setting settings[] = {
	{"QUEUE_DEPTH", "256", SETTING_SIZE, FIELD(queue_depth), 32, 65536,
	 "16-byte slots of each endpoint's completion ring: writes with an immediate in flight "
	 "before -EAGAIN (a message takes 1 + length/16); rounded up to a power of two"},
	{"CMA", "1", SETTING_BOOL, FIELD(cma), 0, 1,
	 "let peers write with process_vm_writev(2) into registered memory that did not come "
	 "from mem_alloc (needs ptrace permission; see ragg-shm(7))"},
	{"MAX_REGIONS", "65536", SETTING_SIZE, FIELD(max_regions), 16, (size_t)1 << 24,
	 "regions registered at once per device"},
	{"BACKLOG", "512", SETTING_SIZE, FIELD(backlog), 1, 65535, "listen(2) backlog"},
};

/* Decimal with an optional K, M or G suffix (powers of 1024). */
static int parse_size(const char *s, size_t *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 0);
	if (errno || end == s || *s == '-')
		return -EINVAL;
	unsigned shift = 0;
	switch (toupper((unsigned char)*end)) {
	case 'K':
		shift = 10;
		break;
	case 'M':
		shift = 20;
		break;
	case 'G':
		shift = 30;
		break;
	case '\0':
		break;
	default:
		return -EINVAL;
	}
	if (shift) {
		end++;
		if (toupper((unsigned char)*end) == 'I')
			end++;
		if (toupper((unsigned char)*end) == 'B')
			end++;
	}
	if (*end)
		return -EINVAL;
	if (v > (SIZE_MAX >> shift))
		return -ERANGE;
	*out = (size_t)v << shift;
	return 0;
}

static int parse_bool(const char *s, size_t *out)
{
	static const char *const yes[] = {"1", "y", "yes", "on", "true"};
	static const char *const no[] = {"0", "n", "no", "off", "false"};
	for (size_t i = 0; i < RAGG_ARRAY_SIZE(yes); i++) {
		if (strcasecmp(s, yes[i]) == 0) {
			*out = 1;
			return 0;
		}
		if (strcasecmp(s, no[i]) == 0) {
			*out = 0;
			return 0;
		}
	}
	return -EINVAL;
}

int ragg__shm_config_read(struct ragg__shm_dev *dev, struct ragg__shm_config *cfg)
{
	struct ragg__shm_config c;
	memset(&c, 0, sizeof(c));

	for (size_t i = 0; i < RAGG_ARRAY_SIZE(settings); i++) {
		const struct ragg__shm_setting *st = &settings[i];
		char var[64];
		snprintf(var, sizeof(var), "RAGG_SHM_%s", st->name);
		const char *value = getenv(var);
		if (!value || !*value)
			value = st->dflt;
		size_t v = 0;
		int rc = st->kind == SETTING_BOOL ? parse_bool(value, &v) : parse_size(value, &v);
		if (rc || v < st->min || v > st->max) {
			ragg__shm_error(dev, "%s=\"%s\" is invalid (%s)", var, value, st->doc);
			return RAGG_ERR_CONFIG;
		}
		memcpy((char *)&c + st->offset, &v, sizeof(v));
	}
	size_t depth = 32;
	while (depth < c.queue_depth)
		depth <<= 1;
	c.queue_depth = depth;
	*cfg = c;
	return 0;
}
