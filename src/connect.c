/*
 * Establishing the job's connections. Agents and servers listen and publish
 * their address at the rendezvous; workers connect to their agent, agents to
 * every server. Each side proves knowledge of the job key in the hello of
 * the connection's private data before anything else is exchanged, and an
 * acceptor takes only the peers its role expects, once each.
 */
#include <stdio.h>
#include <string.h>

#include "bootstrap/kv.h"
#include "clock.h"
#include "core.h"
#include "log.h"
#include "settings.h"

static const char *role_name(int role)
{
	switch (role) {
	case RAGG_ROLE_WORKER:
		return "worker";
	case RAGG_ROLE_AGENT:
		return "agent";
	case RAGG_ROLE_SERVER:
		return "server";
	default:
		return "?";
	}
}

static size_t my_hello(const struct ragg_ctx *ctx, uint8_t *buf)
{
	struct ragg__hello h;
	ragg__hello_init(&h, &ctx->opts);
	return ragg__hello_encode(&h, buf);
}

/* Decode and check a peer's hello against this job. */
static int check_hello(struct ragg_ctx *ctx, const struct ragg_tp_event *ev, struct ragg__hello *h)
{
	const struct ragg_opts *o = &ctx->opts;
	int rc = ragg__hello_decode(ev->data, ev->len, o->job_key, h);
	if (rc) {
		ragg__error("connection from %s refused: %s", ev->ep->peer, ragg_strerror(rc));
		return rc;
	}
	if (h->workers != o->workers || h->agents != o->agents || h->servers != o->servers) {
		ragg__error("connection from %s refused: its job has workers=%u agents=%u servers=%u, "
		            "ours workers=%d agents=%d servers=%d",
		            ev->ep->peer, h->workers, h->agents, h->servers, o->workers, o->agents,
		            o->servers);
		return RAGG_ERR_CONFIG;
	}
	return 0;
}

void ragg__on_connect_request(struct ragg_ctx *ctx, const struct ragg_tp_event *ev)
{
	struct ragg__hello h;
	struct ragg__peer *p = NULL;
	uint8_t reply[RAGG_HELLO_WIRE_BYTES];

	if (check_hello(ctx, ev, &h))
		goto refuse;
	if (h.role == RAGG_ROLE_WORKER && ctx->opts.role == RAGG_ROLE_AGENT)
		p = ragg__peer_of(ctx, RAGG_ROLE_WORKER, (int)h.rank);
	else if (h.role == RAGG_ROLE_AGENT && ctx->opts.role == RAGG_ROLE_SERVER)
		p = ragg__peer_of(ctx, RAGG_ROLE_AGENT, (int)h.rank);
	if (!p) {
		ragg__error("connection from %s refused: %s %u does not connect to %s %d", ev->ep->peer,
		            role_name(h.role), h.rank, role_name(ctx->opts.role), ctx->opts.rank);
		goto refuse;
	}
	if (p->ep) {
		ragg__error("connection from %s refused: %s %u is connected already", ev->ep->peer,
		            role_name(h.role), h.rank);
		goto refuse;
	}
	p->ep = ev->ep;
	ev->ep->user = p;
	if (ctx->tp->accept(ev->ep, reply, my_hello(ctx, reply))) {
		p->ep = NULL;
		ctx->tp->ep_close(ev->ep);
	}
	return;
refuse:
	ctx->stats.peers_dropped++;
	ctx->tp->reject(ev->ep);
}

void ragg__on_connected(struct ragg_ctx *ctx, const struct ragg_tp_event *ev)
{
	struct ragg__peer *p = ev->ep->user;
	struct ragg__hello h;

	if (!p)
		return;
	/* The connecting side checks the acceptor's hello too: both prove the
	 * key, and a wrong process at a published address is caught. */
	bool we_connected = ctx->opts.role == RAGG_ROLE_WORKER ||
	                    (ctx->opts.role == RAGG_ROLE_AGENT && p->role == RAGG_ROLE_SERVER);
	if (we_connected) {
		if (check_hello(ctx, ev, &h))
			goto bad;
		if ((int)h.role != (int)p->role || (int)h.rank != p->rank) {
			ragg__error("%s answered as %s %u, expected %s %d", ev->ep->peer, role_name(h.role),
			            h.rank, role_name(p->role), p->rank);
			goto bad;
		}
	}
	p->connected = true;
	ragg__debug("connected to %s %d at %s", role_name(p->role), p->rank, ev->ep->peer);
	return;
bad:
	ragg__fail(ctx, RAGG_ERR_AUTH);
}

static int publish(struct ragg_ctx *ctx, struct ragg__kv *kv)
{
	char host[RAGG_TP_ADDR_MAX], key[64];
	const char *env = ragg__setting_value("RAGG_LISTEN_HOST");
	int rc;

	if (env && *env)
		snprintf(host, sizeof(host), "%s", env);
	else if ((rc = ragg__kv_local_host(kv, host, sizeof(host))))
		return rc;
	if ((rc = ctx->tp->listen(ctx->dev, host, ctx->listen_addr, sizeof(ctx->listen_addr)))) {
		ragg__error("cannot listen on %s with transport %s: %s", host, ctx->tp->name,
		            ragg_strerror(rc));
		return rc;
	}
	snprintf(key, sizeof(key), "%s/%d", role_name(ctx->opts.role), ctx->opts.rank);
	ragg__info("%s listening at %s", key, ctx->listen_addr);
	return ragg__kv_put(kv, key, ctx->listen_addr);
}

static int connect_to(struct ragg_ctx *ctx, struct ragg__kv *kv, struct ragg__peer *p)
{
	char key[64], addr[RAGG_KV_VALUE_MAX];
	uint8_t hello[RAGG_HELLO_WIRE_BYTES];
	int rc;

	snprintf(key, sizeof(key), "%s/%d", role_name(p->role), p->rank);
	if ((rc = ragg__kv_get(kv, key, addr, sizeof(addr), ctx->opts.timeout_ms)))
		return rc;
	rc = ctx->tp->connect(ctx->dev, addr, hello, my_hello(ctx, hello), p, &p->ep);
	if (rc)
		ragg__error("connecting to %s at %s: %s", key, addr, ragg_strerror(rc));
	return rc;
}

static bool all_connected(void *arg)
{
	struct ragg_ctx *ctx = arg;
	for (int i = 0; i < ctx->npeers; i++)
		if (!ctx->peers[i].connected)
			return false;
	return true;
}

static void report_missing(struct ragg_ctx *ctx)
{
	char buf[512];
	size_t n = 0;
	buf[0] = 0;
	for (int i = 0; i < ctx->npeers && n < sizeof(buf) - 32; i++)
		if (!ctx->peers[i].connected)
			n += (size_t)snprintf(buf + n, sizeof(buf) - n, " %s %d", role_name(ctx->peers[i].role),
			                      ctx->peers[i].rank);
	ragg__error("%s %d: no connection with%s within %d ms", role_name(ctx->opts.role),
	            ctx->opts.rank, buf, ctx->opts.timeout_ms);
}

int ragg__connect_job(struct ragg_ctx *ctx, struct ragg__kv *kv)
{
	int rc;
	if (ctx->opts.role != RAGG_ROLE_WORKER && (rc = publish(ctx, kv)))
		return rc;
	for (int i = 0; i < ctx->npeers; i++) {
		struct ragg__peer *p = &ctx->peers[i];
		/* Connections go down the tree: workers to agents, agents to
		 * servers. */
		bool we_connect = (ctx->opts.role == RAGG_ROLE_WORKER) ||
		                  (ctx->opts.role == RAGG_ROLE_AGENT && p->role == RAGG_ROLE_SERVER);
		if (we_connect && (rc = connect_to(ctx, kv, p)))
			return rc;
	}
	rc = ragg__wait(ctx, all_connected, ctx, "connecting");
	if (rc == RAGG_ERR_TIMEOUT)
		report_missing(ctx);
	return rc;
}
