/*
 * Settings of the tcp transport: one table {name, default, doc}, each read
 * from RAGG_TCP_<NAME>. The man page ragg-tcp(7) lists the same rows.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "tcp.h"

enum ragg__tcp_setting_kind { SETTING_SIZE, SETTING_BOOL, SETTING_STRING };

struct ragg__tcp_setting {
	const char *name;
	const char *dflt;
	enum ragg__tcp_setting_kind kind;
	size_t offset;
	size_t min, max;
	const char *doc;
};

#define FIELD(f) offsetof(struct ragg__tcp_config, f)

static const struct ragg__tcp_setting settings[] = {
	{"SNDBUF", "0", SETTING_SIZE, FIELD(sndbuf), 0, SIZE_MAX / 2,
	 "socket send buffer (SO_SNDBUF); 0 leaves it to the kernel's autotuning"},
	{"RCVBUF", "0", SETTING_SIZE, FIELD(rcvbuf), 0, SIZE_MAX / 2,
	 "socket receive buffer (SO_RCVBUF); 0 leaves it to the kernel's autotuning"},
	{"LOCAL_SNDBUF", "256K", SETTING_SIZE, FIELD(local_sndbuf), 0, SIZE_MAX / 2,
	 "send buffer towards a peer on this host, where a small one keeps the copies in cache; "
	 "0: as SNDBUF"},
	{"QUEUE_DEPTH", "256", SETTING_SIZE, FIELD(queue_depth), 2, 65536,
	 "writes and messages pending per endpoint before -EAGAIN (rounded up to a power of two)"},
	{"NODELAY", "1", SETTING_BOOL, FIELD(nodelay), 0, 1, "set TCP_NODELAY on every connection"},
	{"BACKLOG", "512", SETTING_SIZE, FIELD(backlog), 1, 65535, "listen(2) backlog"},
	{"IFACE", "", SETTING_STRING, FIELD(iface), 0, 0,
	 "interface whose address a wildcard listen advertises (default: first non-loopback)"},
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

static int apply(struct ragg__tcp_dev *dev, const struct ragg__tcp_setting *st, const char *value,
                 struct ragg__tcp_config *cfg)
{
	char *field = (char *)cfg + st->offset;
	size_t v = 0;
	int rc;

	switch (st->kind) {
	case SETTING_STRING:
		if (strlen(value) >= sizeof(cfg->iface))
			goto err_value;
		strcpy(field, value);
		return 0;
	case SETTING_BOOL:
		rc = parse_bool(value, &v);
		break;
	case SETTING_SIZE:
	default:
		rc = parse_size(value, &v);
		break;
	}
	if (rc || v < st->min || v > st->max)
		goto err_value;
	memcpy(field, &v, sizeof(v));
	return 0;

err_value:
	ragg__tcp_error(dev, "RAGG_TCP_%s=\"%s\" is invalid (%s)", st->name, value, st->doc);
	return RAGG_ERR_CONFIG;
}

int ragg__tcp_config_read(struct ragg__tcp_dev *dev, struct ragg__tcp_config *cfg)
{
	struct ragg__tcp_config c;
	memset(&c, 0, sizeof(c));

	for (size_t i = 0; i < RAGG_ARRAY_SIZE(settings); i++) {
		const struct ragg__tcp_setting *st = &settings[i];
		char var[64];
		snprintf(var, sizeof(var), "RAGG_TCP_%s", st->name);
		const char *value = getenv(var);
		int rc = apply(dev, st, value ? value : st->dflt, &c);
		if (rc)
			return rc;
	}
	size_t depth = 2;
	while (depth < c.queue_depth)
		depth <<= 1;
	c.queue_depth = depth;
	*cfg = c;
	return 0;
}
