/*
 * Which transports this process opens, and waiting on all of them.
 *
 * Each hop (workers <-> agents, agents <-> servers) has a list of transports
 * in order of preference: RAGG_TRANSPORT_WORKERS / RAGG_TRANSPORT_SERVERS,
 * else RAGG_TRANSPORT. "auto" is every built-in transport usable here, in
 * the registry's order (ragg_transport_list(): shm, verbs, tcp), so a
 * same-host peer is reached through shared memory and the others by RDMA
 * or tcp. The connecting side takes, per peer, the first transport of the
 * list that the peer published and can reach.
 *
 * A transport's table is checked (ragg_transport_check) before it is
 * probed or opened: a table of another ABI is refused, named, with why.
 */
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core.h"
#include "handshake.h"
#include "log.h"
#include "settings.h"

static void tp_log(int level, const char *fmt, ...)
{
	if (ragg__log_get() < level)
		return;
	char buf[900];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	ragg__log(level, "%s", buf);
}

struct ragg__tp *ragg__tp_of_dev(struct ragg_ctx *ctx, const struct ragg_tp_dev *dev)
{
	for (int i = 0; i < ctx->ntp; i++)
		if (ctx->tps[i].dev == dev)
			return &ctx->tps[i];
	return NULL;
}

static int open_one(struct ragg_ctx *ctx, const struct ragg_tp_ops *ops, struct ragg__tp **out)
{
	for (int i = 0; i < ctx->ntp; i++)
		if (ctx->tps[i].ops == ops) {
			*out = &ctx->tps[i];
			return 0;
		}
	if (ctx->ntp == RAGG_MAX_TP)
		return -ENOSPC;
	struct ragg__tp *tp = &ctx->tps[ctx->ntp];
	struct ragg_tp_params params = {
		.size = sizeof(params),
		.poll_mode = (int)ctx->opts.poll,
		.spin_us = ctx->opts.spin_us,
		.timeout_ms = ragg__hs_deadline_ms(ctx),
		.max_peers = ctx->npeers,
		.log = tp_log,
		.log_level = ragg__log_get(),
		.wake_fd = ctx->wake_fd,
	};
	int rc = ops->open(&params, &tp->dev);
	if (rc) {
		ragg__error("transport %s: cannot open: %s", ops->name, ragg_strerror(rc));
		return rc;
	}
	tp->ops = ops;
	tp->index = ctx->ntp++;
	*out = tp;
	return 0;
}

/* Parse a hop's list ("auto", "tcp", "shm,tcp") and open its transports. */
static int open_hop(struct ragg_ctx *ctx, const char *setting, const char *spec,
                    struct ragg__hop *hop)
{
	char list[64], why[256], *save = NULL;
	bool is_auto = strcmp(spec, "auto") == 0;
	int rc;

	if (is_auto) {
		size_t off = 0;
		list[0] = 0;
		for (const struct ragg_tp_ops *const *t = ragg_transport_list(); *t; t++) {
			int n = snprintf(list + off, sizeof(list) - off, "%s%s", off ? "," : "",
			                 (*t)->name);
			if (n < 0 || (size_t)n >= sizeof(list) - off) {
				ragg__error("%s=auto: too many transports", setting);
				return RAGG_ERR_CONFIG;
			}
			off += (size_t)n;
		}
	} else if (snprintf(list, sizeof(list), "%s", spec) >= (int)sizeof(list)) {
		ragg__error("%s=\"%s\": too long", setting, spec);
		return RAGG_ERR_CONFIG;
	}
	hop->n = 0;
	for (char *name = strtok_r(list, ",", &save); name; name = strtok_r(NULL, ",", &save)) {
		const struct ragg_tp_ops *ops = ragg_transport_find(name);
		if (!ops) {
			if (is_auto)
				continue; /* not built into this library */
			ragg__error("%s=\"%s\": no transport \"%s\" in this library", setting, spec,
			            name);
			return RAGG_ERR_NO_TRANSPORT;
		}
		if ((rc = ragg_transport_check(ops, why, sizeof(why)))) {
			ragg__error("transport %s: table refused: %s", name, why);
			return rc;
		}
		why[0] = 0;
		if (ops->probe(why, sizeof(why)) != 0) {
			if (is_auto) {
				ragg__info("transport %s not usable: %s", name,
				           why[0] ? why : "probe failed");
				continue;
			}
			ragg__error("transport %s not usable here: %s", name,
			            why[0] ? why : "probe failed");
			return RAGG_ERR_NO_TRANSPORT;
		}
		if (ragg__opt_long(&ctx->opts, "RAGG_SEAL") &&
		    (!(ops->caps & RAGG_TP_CAP_SEAL) || !RAGG_TP_HAS_OP(ops, seal))) {
			if (is_auto) {
				ragg__info("transport %s skipped: it cannot seal (RAGG_SEAL=on)",
				           name);
				continue;
			}
			ragg__error("RAGG_SEAL=on: transport %s cannot seal its connections "
			            "(only tcp can); use RAGG_TRANSPORT=tcp or RAGG_SEAL=off",
			            name);
			return RAGG_ERR_CONFIG;
		}
		if (hop->n == RAGG_MAX_TP) {
			ragg__error("%s=\"%s\": too many transports", setting, spec);
			return RAGG_ERR_CONFIG;
		}
		if ((rc = open_one(ctx, ops, &hop->tps[hop->n])))
			return rc;
		hop->n++;
	}
	if (hop->n == 0) {
		ragg__error("%s=\"%s\": no usable transport", setting, spec);
		return RAGG_ERR_NO_TRANSPORT;
	}
	return 0;
}

int ragg__transports_open(struct ragg_ctx *ctx)
{
	const char *w = ragg__opt_get(&ctx->opts, "RAGG_TRANSPORT_WORKERS");
	const char *s = ragg__opt_get(&ctx->opts, "RAGG_TRANSPORT_SERVERS");
	enum ragg_role role = ctx->opts.role;
	int rc;

	if (role != RAGG_ROLE_SERVER &&
	    (rc = open_hop(ctx, *w ? "RAGG_TRANSPORT_WORKERS" : "RAGG_TRANSPORT",
	                   *w ? w : ctx->opts.transport, &ctx->hop_workers)))
		return rc;
	if (role != RAGG_ROLE_WORKER &&
	    (rc = open_hop(ctx, *s ? "RAGG_TRANSPORT_SERVERS" : "RAGG_TRANSPORT",
	                   *s ? s : ctx->opts.transport, &ctx->hop_servers)))
		return rc;
	return 0;
}

void ragg__transports_close(struct ragg_ctx *ctx)
{
	for (int i = ctx->ntp - 1; i >= 0; i--)
		ctx->tps[i].ops->close(ctx->tps[i].dev);
	ctx->ntp = 0;
}

/*
 * One device: its own wait(). Several: each is armed, then one poll(2) over
 * their wait fds; a device that cannot be armed (an older transport) is
 * waited on in short turns instead.
 */
void ragg__transports_wait(struct ragg_ctx *ctx, int timeout_ms)
{
	struct pollfd pfd[RAGG_MAX_TP];
	int n = 0;

	if (ctx->ntp == 1) {
		ctx->tps[0].ops->wait(ctx->tps[0].dev, timeout_ms);
		return;
	}
	for (int i = 0; i < ctx->ntp; i++) {
		const struct ragg_tp_ops *ops = ctx->tps[i].ops;
		if (!RAGG_TP_HAS_OP(ops, arm) || !RAGG_TP_HAS_OP(ops, wait_fd)) {
			for (int j = 0; j < ctx->ntp; j++)
				ctx->tps[j].ops->wait(ctx->tps[j].dev,
				                      timeout_ms < 1 ? timeout_ms : 1);
			return;
		}
		if (ops->arm(ctx->tps[i].dev) == -EAGAIN)
			return;
		pfd[n++] = (struct pollfd){ .fd = ops->wait_fd(ctx->tps[i].dev), .events = POLLIN };
	}
	poll(pfd, (nfds_t)n, timeout_ms);
}
