/*
 * Establishing the job's connections. Agents and servers listen and publish
 * their address through the bootstrap (bootstrap/boot.h: the rendezvous or
 * the launcher's PMIx); workers connect to their agent, agents to
 * every server. The hello in the connection's private data names the peer
 * and lets an acceptor take only the peers its role expects, once each;
 * then the handshake of handshake.h proves the job key on that connection
 * before the peer counts as connected.
 * Then both sides of every connection agree on the job-wide settings
 * (below).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "bootstrap/boot.h"
#include "bootstrap/kv.h"
#include "clock.h"
#include "core.h"
#include "elastic.h"
#include "handshake.h"
#include "log.h"
#include "settings.h"

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
		ragg__error(
		    "connection from %s refused: its job has workers=%u agents=%u servers=%u, "
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
	struct ragg__tp *tp = ragg__tp_of_dev(ctx, ev->ep->dev);
	uint8_t reply[RAGG_HELLO_WIRE_BYTES];

	if (!tp)
		return;
	if (check_hello(ctx, ev, &h))
		goto refuse;
	if (h.role == RAGG_ROLE_WORKER && ctx->opts.role == RAGG_ROLE_AGENT)
		p = ragg__peer_of(ctx, RAGG_ROLE_WORKER, (int)h.rank);
	else if (h.role == RAGG_ROLE_AGENT && ctx->opts.role == RAGG_ROLE_SERVER)
		p = ragg__peer_of(ctx, RAGG_ROLE_AGENT, (int)h.rank);
	if (!p) {
		ragg__error("connection from %s refused: %s %u does not connect to %s %d",
		            ev->ep->peer, ragg__role_name(h.role), h.rank,
		            ragg__role_name(ctx->opts.role), ctx->opts.rank);
		goto refuse;
	}
	if (p->ep && !ragg__elastic_rejoin(ctx, p)) {
		ragg__error("connection from %s refused: %s %u %s", ev->ep->peer,
		            ragg__role_name(h.role), h.rank,
		            p->gone ? "left the job and may not come back" : "is connected already");
		goto refuse;
	}
	p->ep = ev->ep;
	p->tp = tp;
	ev->ep->user = p;
	if (tp->ops->accept(ev->ep, reply, my_hello(ctx, reply))) {
		p->ep = NULL;
		p->tp = NULL;
		tp->ops->ep_close(ev->ep);
	}
	return;
refuse:
	ctx->stats.peers_dropped++;
	tp->ops->reject(ev->ep);
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
			ragg__error("%s answered as %s %u, expected %s %d", ev->ep->peer,
			            ragg__role_name(h.role), h.rank, ragg__role_name(p->role),
			            p->rank);
			goto bad;
		}
	}
	ragg__debug("connected to %s %d at %s; handshake", ragg__role_name(p->role), p->rank,
	            ev->ep->peer);
	int rc = ragg__hs_on_connected(ctx, p, we_connected);
	if (rc)
		ragg__hs_fail(ctx, p, rc, "sending its first message");
	return;
bad:
	ragg__fail(ctx, RAGG_ERR_AUTH);
}

/* Listen with every transport open here and publish them all as
 * "name=address;name=address" under "<role>/<rank>". */
static int publish(struct ragg_ctx *ctx, struct ragg__boot *b)
{
	char host[RAGG_TP_ADDR_MAX], key[64], value[RAGG_KV_VALUE_MAX];
	const char *env = ragg__opt_get(&ctx->opts, "RAGG_LISTEN_HOST");
	size_t n = 0;
	int rc;

	if (env && *env)
		snprintf(host, sizeof(host), "%s", env);
	else if ((rc = ragg__boot_listen_host(b, host, sizeof(host))))
		return rc;
	snprintf(key, sizeof(key), "%s/%d", ragg__role_name(ctx->opts.role), ctx->opts.rank);
	value[0] = 0;
	for (int i = 0; i < ctx->ntp; i++) {
		struct ragg__tp *tp = &ctx->tps[i];
		if ((rc = tp->ops->listen(tp->dev, host, tp->addr, sizeof(tp->addr)))) {
			ragg__error("cannot listen on %s with transport %s: %s", host,
			            tp->ops->name, ragg_strerror(rc));
			return rc;
		}
		ragg__info("%s listening at %s (%s)", key, tp->addr, tp->ops->name);
		int w = snprintf(value + n, sizeof(value) - n, "%s%s=%s", n ? ";" : "",
		                 tp->ops->name, tp->addr);
		if (w < 0 || (size_t)w >= sizeof(value) - n) {
			ragg__error("listen addresses too long to publish");
			return -ENAMETOOLONG;
		}
		n += (size_t)w;
	}
	return ragg__boot_put(b, key, value);
}

/* The address peer published for transport name, or NULL. */
static const char *published(char *value, const char *name)
{
	char *save = NULL;
	for (char *e = strtok_r(value, ";", &save); e; e = strtok_r(NULL, ";", &save)) {
		char *eq = strchr(e, '=');
		if (eq && (size_t)(eq - e) == strlen(name) && strncmp(e, name, strlen(name)) == 0)
			return eq + 1;
	}
	return NULL;
}

/* The launcher rank of a role's process under the rank mapping of
 * ragg(7): servers first, then agents, then workers. */
static long launcher_rank(const struct ragg_opts *o, enum ragg_role role, int rank)
{
	return role == RAGG_ROLE_SERVER  ? rank
	       : role == RAGG_ROLE_AGENT ? (long)o->servers + rank
	                                 : (long)o->servers + o->agents + rank;
}

static int connect_to(struct ragg_ctx *ctx, struct ragg__boot *b, struct ragg__peer *p)
{
	char key[64], value[RAGG_KV_VALUE_MAX], copy[RAGG_KV_VALUE_MAX];
	uint8_t hello[RAGG_HELLO_WIRE_BYTES];
	const struct ragg__hop *hop =
	    p->role == RAGG_ROLE_AGENT ? &ctx->hop_workers : &ctx->hop_servers;
	int rc;

	snprintf(key, sizeof(key), "%s/%d", ragg__role_name(p->role), p->rank);
	if ((rc = ragg__boot_get(b, launcher_rank(&ctx->opts, p->role, p->rank), key, value,
	                         sizeof(value))))
		return rc;
	for (int i = 0; i < hop->n; i++) {
		struct ragg__tp *tp = hop->tps[i];
		memcpy(copy, value, sizeof(copy));
		const char *addr = published(copy, tp->ops->name);
		if (!addr ||
		    (RAGG_TP_HAS_OP(tp->ops, reachable) && !tp->ops->reachable(tp->dev, addr)))
			continue;
		p->tp = tp;
		rc = tp->ops->connect(tp->dev, addr, hello, my_hello(ctx, hello), p, &p->ep);
		if (rc)
			ragg__error("connecting to %s at %s with %s: %s", key, addr, tp->ops->name,
			            ragg_strerror(rc));
		else
			ragg__info("connecting to %s at %s with %s", key, addr, tp->ops->name);
		return rc;
	}
	ragg__error("no transport in common with %s: it offers \"%s\"", key, value);
	return RAGG_ERR_NO_TRANSPORT;
}

/*
 * Settings agreement. The job-wide settings (the rows of the table flagged
 * so: chunk size, optimizer and its hyperparameters) must be the same in
 * every process. Each side of a connection sends every job-wide setting of
 * its own as one message (name hash, canonical value) before anything else
 * it sends there, and compares each one it receives with its own value:
 * the transports deliver in order, so no declaration from a peer is handled
 * before its settings are. One message per setting keeps each far below the
 * transports' message limit and lets a difference be reported with both
 * values. The exchange is symmetric, so both processes of a connection that
 * differ log the difference and fail with RAGG_ERR_MISMATCH (each lingers
 * up to half a second, taking on no work, until the other has closed, so
 * that its own settings are not lost in a transport's queue); their other
 * peers lose them and fail with RAGG_ERR_PEER_LOST, at once rather than at
 * a timeout. ragg_init returns only once every peer's settings agreed.
 */
static uint32_t job_wide_count(void)
{
	uint32_t n = 0;
	for (const struct ragg__setting *s = ragg__settings; s->name; s++)
		n += !!(s->flags & RAGG__SETTING_JOB_WIDE);
	return n;
}

uint32_t ragg__agreement_msgs(void)
{
	return job_wide_count();
}

int ragg__agreement_send(struct ragg_ctx *ctx, struct ragg__peer *p)
{
	uint32_t n = job_wide_count();
	for (const struct ragg__setting *s = ragg__settings; s->name; s++) {
		if (!(s->flags & RAGG__SETTING_JOB_WIDE))
			continue;
		struct ragg__msg m = {
			.type = RAGG_MSG_SETTING,
			.count = ragg__setting_canon(&ctx->opts, s),
			.chunk_bytes = n,
			.name_hash = ragg__name_hash(s->name),
		};
		int rc = ragg__post_msg(p, &m);
		if (rc)
			return rc;
	}
	return 0;
}

void ragg__agreement_on_msg(struct ragg_ctx *ctx, struct ragg__peer *p, const struct ragg__msg *m)
{
	const struct ragg_opts *o = &ctx->opts;
	const char *me = ragg__role_name(o->role), *peer = ragg__role_name(p->role);
	uint32_t n = job_wide_count();
	const struct ragg__setting *s;

	if (m->chunk_bytes != n) {
		ragg__error("job-wide settings differ: %s %d has %llu, %s %d has %u (another "
		            "version of ragg?)",
		            peer, p->rank, (unsigned long long)m->chunk_bytes, me, o->rank, n);
		goto mismatch;
	}
	for (s = ragg__settings; s->name; s++)
		if ((s->flags & RAGG__SETTING_JOB_WIDE) && ragg__name_hash(s->name) == m->name_hash)
			break;
	if (!s->name) {
		ragg__error("%s %d has a job-wide setting unknown to %s %d (another version of "
		            "ragg?)",
		            peer, p->rank, me, o->rank);
		goto mismatch;
	}
	uint64_t mine = ragg__setting_canon(o, s);
	if (m->count != mine) {
		char here[64], there[64];
		ragg__setting_canon_text(s, mine, here, sizeof(here));
		ragg__setting_canon_text(s, m->count, there, sizeof(there));
		ragg__error("%s differs: %s here (%s %d), %s at %s %d", s->name, here, me, o->rank,
		            there, peer, p->rank);
		goto mismatch;
	}
	p->settings_seen++;
	return;
mismatch:
	/* Failed at once, so no more work is taken on; connect_job lingers
	 * until this peer has our settings too and names the difference
	 * itself, rather than just losing us. */
	p->settings_differ = true;
	ragg__fail(ctx, RAGG_ERR_MISMATCH);
}

/* How long a process that found a difference keeps making progress before
 * it closes: our settings, handed to a transport, may still sit in its
 * queue, and the peer, which differs too, closes first once it has them. */
#define DIFFER_LINGER_US 500000u

static void linger_for_differing_peers(struct ragg_ctx *ctx)
{
	uint64_t until = ragg__now_us() + DIFFER_LINGER_US;
	while (ragg__now_us() < until) {
		bool waiting = false;
		for (int i = 0; i < ctx->npeers; i++)
			waiting |= ctx->peers[i].settings_differ && !ctx->peers[i].gone;
		if (!waiting)
			return;
		ragg__progress(ctx);
		ragg__transports_wait(ctx, 10);
	}
}

static bool all_connected(void *arg)
{
	struct ragg_ctx *ctx = arg;
	uint32_t n = job_wide_count();
	for (int i = 0; i < ctx->npeers; i++)
		if (!ctx->peers[i].connected || ctx->peers[i].settings_seen < n)
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
			n += (size_t)snprintf(buf + n, sizeof(buf) - n, " %s %d",
			                      ragg__role_name(ctx->peers[i].role),
			                      ctx->peers[i].rank);
	ragg__error("%s %d: no connection with%s within %d ms", ragg__role_name(ctx->opts.role),
	            ctx->opts.rank, buf, ctx->opts.timeout_ms);
}

int ragg__listen_job(struct ragg_ctx *ctx, struct ragg__boot *b)
{
	int rc = ctx->opts.role == RAGG_ROLE_WORKER ? 0 : publish(ctx, b);
	/* Every process takes part, workers too: PMIx's fence is collective. */
	return rc ? rc : ragg__boot_exchange(b);
}

int ragg__connect_job(struct ragg_ctx *ctx, struct ragg__boot *b)
{
	int rc;
	ragg__hs_warn_no_key(ctx);
	/* Queued until each connection is up, ahead of everything else. */
	for (int i = 0; i < ctx->npeers; i++)
		if ((rc = ragg__agreement_send(ctx, &ctx->peers[i])))
			return rc;
	for (int i = 0; i < ctx->npeers; i++) {
		struct ragg__peer *p = &ctx->peers[i];
		/* Connections go down the tree: workers to agents, agents to
		 * servers. */
		bool we_connect =
		    (ctx->opts.role == RAGG_ROLE_WORKER) ||
		    (ctx->opts.role == RAGG_ROLE_AGENT && p->role == RAGG_ROLE_SERVER);
		if (we_connect && (rc = connect_to(ctx, b, p)))
			return rc;
	}
	rc = ragg__wait(ctx, all_connected, ctx, "connecting");
	if (rc == RAGG_ERR_TIMEOUT)
		report_missing(ctx);
	if (rc == RAGG_ERR_MISMATCH)
		linger_for_differing_peers(ctx);
	if (rc)
		return rc;
	/* Name the transports in use, e.g. "shm+tcp" for an agent whose
	 * workers are on its host and servers are not. */
	for (int i = 0; i < ctx->ntp; i++) {
		bool used = false;
		for (int j = 0; j < ctx->npeers; j++)
			used |= ctx->peers[j].tp == &ctx->tps[i];
		size_t n = strlen(ctx->tp_names);
		if (used)
			snprintf(ctx->tp_names + n, sizeof(ctx->tp_names) - n, "%s%s", n ? "+" : "",
			         ctx->tps[i].ops->name);
	}
	return 0;
}
