/*
 * Endpoints over rdma_cm: one RC QP per connection, attached to the device's
 * CQ and SRQ. Every cm_id lives on the device's event channel, which is
 * non-blocking and drained by poll(); an id's context is its endpoint (the
 * listener's is NULL).
 *
 * Private data. rdma_cm reports the whole private data field of the CM
 * message (56 bytes in a REQ over IB/RoCE, 196 in a REP), not the length
 * that was sent, so the first byte carries it: 0x40 | length (version 1 in
 * the top two bits). Hence max_priv is RAGG_TP_PRIV_MAX - 1.
 *
 * Connector: RESOLVING (address, then route; the QP is created once the
 * address names a device) -> CONNECTING (REQ sent) -> CONNECTED. Acceptor:
 * REQUESTED (the core holds the request) -> ACCEPTING (REP sent, QP in RTR)
 * -> CONNECTED at ESTABLISHED. Any failure -> FAILED, which owes the core
 * one DISCONNECTED event.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "verbs.h"

#define PRIV_VERSION 0x40u
#define PRIV_LEN_MASK 0x3fu

static void ep_count_resolving(struct ragg__verbs_ep *ep, bool on)
{
	/* Endpoints waiting on rdma_cm make poll() read the cm channel on
	 * every call instead of now and then. */
	bool was = ep->state == RAGG__VERBS_EP_RESOLVING ||
	           ep->state == RAGG__VERBS_EP_CONNECTING || ep->state == RAGG__VERBS_EP_ACCEPTING;
	if (was && !on)
		ep->dev->resolving--;
	else if (!was && on)
		ep->dev->resolving++;
}

static void ep_set_state(struct ragg__verbs_ep *ep, enum ragg__verbs_ep_state s)
{
	bool on = s == RAGG__VERBS_EP_RESOLVING || s == RAGG__VERBS_EP_CONNECTING ||
	          s == RAGG__VERBS_EP_ACCEPTING;
	ep_count_resolving(ep, on);
	ep->state = s;
}

static struct ragg__verbs_ep *ep_new(struct ragg__verbs_dev *dev, struct rdma_cm_id *id, void *user)
{
	struct ragg__verbs_ep *ep = calloc(1, sizeof(*ep));
	if (!ep)
		return NULL;
	ep->dev = dev;
	ep->id = id;
	ep->base.dev = &dev->base;
	ep->base.user = user;
	ep->state = RAGG__VERBS_EP_REQUESTED; /* not counted as resolving */
	ragg__verbs_list_init(&ep->pend);
	ragg__verbs_list_add_tail(&dev->eps, &ep->link);
	id->context = ep;
	return ep;
}

struct ragg__verbs_ep *ragg__verbs_ep_by_qp(struct ragg__verbs_dev *dev, uint32_t qp_num)
{
	struct ragg__verbs_ep *ep = dev->qp_hash[qp_num & dev->qp_hash_mask];
	while (ep && ep->qp_num != qp_num)
		ep = ep->hnext;
	return ep;
}

static void hash_del(struct ragg__verbs_ep *ep)
{
	struct ragg__verbs_ep **pp = &ep->dev->qp_hash[ep->qp_num & ep->dev->qp_hash_mask];
	while (*pp && *pp != ep)
		pp = &(*pp)->hnext;
	if (*pp)
		*pp = ep->hnext;
	ep->hnext = NULL;
}

static const char *dev_of(const struct rdma_cm_id *id)
{
	return id->verbs ? ibv_get_device_name(id->verbs->device) : "(none)";
}

/* Create the QP and its send-side bookkeeping on ep->id, which must be
 * bound to our device. */
static int ep_setup_qp(struct ragg__verbs_ep *ep)
{
	struct ragg__verbs_dev *dev = ep->dev;
	int rc;
	if (ep->id->verbs != dev->ctx) {
		ragg__verbs_error(dev,
		                  "%s is reached through RDMA device %s, but this process uses %s; "
		                  "set RAGG_VERBS_DEVICE=%s (or route the address via %s)",
		                  ep->base.peer, dev_of(ep->id), dev->name, dev_of(ep->id),
		                  dev->name);
		return -EXDEV;
	}
	ep->depth = dev->depth;
	ep->wri = calloc(ep->depth, sizeof(*ep->wri));
	if (!ep->wri)
		return -ENOMEM;
	if (dev->max_inline < RAGG_TP_MSG_MAX) {
		ep->msgs = aligned_alloc(64, (size_t)ep->depth * RAGG_TP_MSG_MAX);
		if (!ep->msgs)
			return -ENOMEM;
		ep->msgs_mr = ragg__verbs_reg(dev, ep->msgs, (size_t)ep->depth * RAGG_TP_MSG_MAX,
		                              IBV_ACCESS_LOCAL_WRITE, "message buffers", &rc);
		if (!ep->msgs_mr)
			return rc;
	}
	if ((rc = ragg__verbs_cq_reserve(dev, (int)ep->depth)))
		return rc;
	struct ibv_qp_init_attr ia = {
	    .send_cq = dev->cq,
	    .recv_cq = dev->cq,
	    .srq = dev->srq,
	    .cap = {.max_send_wr = ep->depth,
	            .max_send_sge = 1,
	            .max_inline_data = dev->max_inline},
	    .qp_type = IBV_QPT_RC,
	    .sq_sig_all = 0,
	};
	if (rdma_create_qp(ep->id, dev->pd, &ia)) {
		rc = -errno;
		ragg__verbs_error(dev, "%s: creating the queue pair for %s failed: %s", dev->name,
		                  ep->base.peer, strerror(errno));
		ragg__verbs_cq_release(dev, (int)ep->depth);
		return rc;
	}
	ep->qp = ep->id->qp;
	ep->qp_num = ep->qp->qp_num;
	ep->hnext = dev->qp_hash[ep->qp_num & dev->qp_hash_mask];
	dev->qp_hash[ep->qp_num & dev->qp_hash_mask] = ep;
	return 0;
}

static void ep_teardown_qp(struct ragg__verbs_ep *ep)
{
	struct ragg__verbs_dev *dev = ep->dev;
	if (ep->qp) {
		hash_del(ep);
		rdma_destroy_qp(ep->id);
		ep->id->qp = NULL;
		ep->qp = NULL;
		ragg__verbs_wc_forget(dev, ep->qp_num);
		ragg__verbs_cq_release(dev, (int)ep->depth);
	}
	if (ep->bounce_mr)
		ibv_dereg_mr(ep->bounce_mr);
	ep->bounce_mr = NULL;
	free(ep->bounce);
	ep->bounce = NULL;
	if (ep->msgs_mr)
		ibv_dereg_mr(ep->msgs_mr);
	ep->msgs_mr = NULL;
	free(ep->msgs);
	ep->msgs = NULL;
	free(ep->wri);
	ep->wri = NULL;
}

void ragg__verbs_ep_fail(struct ragg__verbs_ep *ep, int status)
{
	if (ep->state == RAGG__VERBS_EP_FAILED || ep->state == RAGG__VERBS_EP_REJECTED)
		return;
	ep_set_state(ep, RAGG__VERBS_EP_FAILED);
	ep->status = status;
	ep->owed_down = true;
	ragg__verbs_list_add_tail(&ep->dev->failed, &ep->pend);
}

static void priv_pack(uint8_t *out, const void *priv, size_t len)
{
	out[0] = (uint8_t)(PRIV_VERSION | len);
	if (len)
		memcpy(out + 1, priv, len);
}

/* The peer's private data from a CM event into ep->priv; false when it
 * does not carry our header. */
static bool priv_unpack(struct ragg__verbs_ep *ep, const struct rdma_conn_param *cp)
{
	const uint8_t *p = cp->private_data;
	if (!p || cp->private_data_len < 1 || (p[0] & ~PRIV_LEN_MASK) != PRIV_VERSION)
		return false;
	size_t len = p[0] & PRIV_LEN_MASK;
	if (len > RAGG_TP_PRIV_MAX - 1 || len + 1 > cp->private_data_len)
		return false;
	memcpy(ep->priv, p + 1, len);
	ep->priv_len = len;
	return true;
}

static void conn_param_init(const struct ragg__verbs_dev *dev, struct rdma_conn_param *cp,
                            const uint8_t *priv, size_t priv_len)
{
	memset(cp, 0, sizeof(*cp));
	cp->private_data = priv;
	cp->private_data_len = (uint8_t)priv_len;
	/* No RDMA reads or atomics in either direction. */
	cp->responder_resources = 0;
	cp->initiator_depth = 0;
	cp->flow_control = 1;
	cp->retry_count = (uint8_t)dev->cfg.retry_count;
	cp->rnr_retry_count = (uint8_t)dev->cfg.rnr_retry;
}

/* ---- listen, connect, accept, reject, close ---- */

int ragg__verbs_listen(struct ragg_tp_dev *d, const char *host, char *addr, size_t addr_len)
{
	struct ragg__verbs_dev *dev = ragg__verbs_dev(d);
	char h[RAGG_TP_ADDR_MAX], p[16];
	struct sockaddr_storage ss;
	struct rdma_cm_id *lid = NULL;
	int rc;

	if (dev->listen_id)
		return -EBUSY;
	if ((rc = ragg__verbs_addr_split(host ? host : "", h, sizeof(h), p, sizeof(p)))) {
		ragg__verbs_error(dev, "listen: bad address \"%s\"", host);
		return rc;
	}
	bool wildcard = !h[0] || strcmp(h, "*") == 0;
	if (wildcard) {
		if ((rc = ragg__verbs_addr_local(dev, &ss)))
			return rc;
		unsigned port = p[0] ? (unsigned)strtoul(p, NULL, 10) : 0;
		if (ss.ss_family == AF_INET)
			((struct sockaddr_in *)&ss)->sin_port = htons((uint16_t)port);
		else
			((struct sockaddr_in6 *)&ss)->sin6_port = htons((uint16_t)port);
	} else if ((rc = ragg__verbs_addr_resolve(h, p, &ss))) {
		ragg__verbs_error(dev, "listen: cannot resolve \"%s\": %s", host, strerror(-rc));
		return rc;
	}
	char want[RAGG_TP_ADDR_MAX];
	ragg__verbs_addr_format((struct sockaddr *)&ss, want, sizeof(want));
	if ((rc = ragg__verbs_addr_unloop(dev, &ss)) < 0)
		return rc;
	if (rc) {
		char sub[RAGG_TP_ADDR_MAX];
		ragg__verbs_addr_format((struct sockaddr *)&ss, sub, sizeof(sub));
		ragg__verbs_info(dev, "%s is not on an RDMA device; listening on %s (%s) instead",
		                 want, sub, dev->name);
		snprintf(want, sizeof(want), "%s", sub);
	}

	if (rdma_create_id(dev->cm_ch, &lid, NULL, RDMA_PS_TCP)) {
		rc = -errno;
		ragg__verbs_error(dev, "rdma_create_id: %s", strerror(errno));
		return rc;
	}
	if (rdma_bind_addr(lid, (struct sockaddr *)&ss)) {
		rc = -errno;
		ragg__verbs_error(dev,
		                  "cannot listen on %s with rdma_cm: %s (the address must belong "
		                  "to an RDMA-capable interface, e.g. the net device of %s)",
		                  want, strerror(errno), dev->name);
		goto err;
	}
	if (lid->verbs && lid->verbs != dev->ctx) {
		ragg__verbs_error(dev,
		                  "%s belongs to RDMA device %s, but this process uses %s; set "
		                  "RAGG_VERBS_DEVICE=%s or listen on an address of %s",
		                  want, dev_of(lid), dev->name, dev_of(lid), dev->name);
		rc = -EXDEV;
		goto err;
	}
	if (rdma_listen(lid, 128)) {
		rc = -errno;
		ragg__verbs_error(dev, "rdma_listen on %s: %s", want, strerror(errno));
		goto err;
	}
	struct sockaddr_storage bound;
	memset(&bound, 0, sizeof(bound));
	struct sockaddr *la = rdma_get_local_addr(lid);
	memcpy(&bound, la,
	       la->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
	                                 : sizeof(struct sockaddr_in));
	uint16_t port = rdma_get_src_port(lid); /* network order */
	bool any = (bound.ss_family == AF_INET &&
	            ((struct sockaddr_in *)&bound)->sin_addr.s_addr == htonl(INADDR_ANY)) ||
	           (bound.ss_family == AF_INET6 &&
	            IN6_IS_ADDR_UNSPECIFIED(&((struct sockaddr_in6 *)&bound)->sin6_addr));
	if (any && (rc = ragg__verbs_addr_local(dev, &bound)))
		goto err;
	if (bound.ss_family == AF_INET)
		((struct sockaddr_in *)&bound)->sin_port = port;
	else
		((struct sockaddr_in6 *)&bound)->sin6_port = port;
	char got[RAGG_TP_ADDR_MAX];
	ragg__verbs_addr_format((struct sockaddr *)&bound, got, sizeof(got));
	if (strlen(got) >= addr_len) {
		rc = -ENAMETOOLONG;
		goto err;
	}
	strcpy(addr, got);
	snprintf(dev->listen_addr, sizeof(dev->listen_addr), "%s", got);
	dev->listen_id = lid;
	ragg__verbs_info(dev, "listening on %s (%s port %u)", got, dev->name, dev->port);
	return 0;
err:
	rdma_destroy_id(lid);
	return rc;
}

int ragg__verbs_connect(struct ragg_tp_dev *d, const char *addr, const void *priv, size_t priv_len,
                        void *user, struct ragg_tp_ep **out)
{
	struct ragg__verbs_dev *dev = ragg__verbs_dev(d);
	char h[RAGG_TP_ADDR_MAX], p[16];
	struct sockaddr_storage dst, src;
	struct rdma_cm_id *id = NULL;
	int rc;

	if (priv_len > RAGG_TP_PRIV_MAX - 1 || (priv_len && !priv))
		return -EMSGSIZE;
	if ((rc = ragg__verbs_addr_split(addr, h, sizeof(h), p, sizeof(p))) || !h[0] || !p[0]) {
		ragg__verbs_error(dev, "connect: bad address \"%s\" (want host:port)", addr);
		return rc ? rc : -EINVAL;
	}
	if ((rc = ragg__verbs_addr_resolve(h, p, &dst))) {
		ragg__verbs_error(dev, "connect: cannot resolve \"%s\": %s", addr, strerror(-rc));
		return rc;
	}
	/* A listener asked for loopback bound the device's address instead. */
	if ((rc = ragg__verbs_addr_unloop(dev, &dst)) < 0)
		return rc;
	bool bind_src = dev->cfg.gid_index >= 0;
	if (bind_src && (rc = ragg__verbs_addr_local(dev, &src)))
		return rc;
	if (rdma_create_id(dev->cm_ch, &id, NULL, RDMA_PS_TCP)) {
		rc = -errno;
		ragg__verbs_error(dev, "rdma_create_id: %s", strerror(errno));
		return rc;
	}
	struct ragg__verbs_ep *ep = ep_new(dev, id, user);
	if (!ep) {
		rdma_destroy_id(id);
		return -ENOMEM;
	}
	snprintf(ep->base.peer, sizeof(ep->base.peer), "%s", addr);
	priv_pack(ep->priv_out, priv, priv_len);
	ep->priv_out_len = priv_len + 1;
	ep_set_state(ep, RAGG__VERBS_EP_RESOLVING);
	if (rdma_resolve_addr(id, bind_src ? (struct sockaddr *)&src : NULL,
	                      (struct sockaddr *)&dst, (int)dev->cfg.resolve_timeout_ms)) {
		rc = -errno;
		ragg__verbs_error(dev,
		                  "cannot resolve RDMA address %s: %s (is it the address of an "
		                  "RDMA-capable interface? see `rdma link`)",
		                  addr, strerror(errno));
		ragg__verbs_ep_close(&ep->base);
		return rc;
	}
	*out = &ep->base;
	return 0;
}

int ragg__verbs_accept(struct ragg_tp_ep *e, const void *priv, size_t priv_len)
{
	struct ragg__verbs_ep *ep = ragg__verbs_ep(e);
	struct ragg__verbs_dev *dev = ep->dev;
	int rc;
	if (ep->state != RAGG__VERBS_EP_REQUESTED)
		return -EINVAL;
	if (priv_len > RAGG_TP_PRIV_MAX - 1 || (priv_len && !priv))
		return -EMSGSIZE;
	if ((rc = ep_setup_qp(ep))) {
		rdma_reject(ep->id, NULL, 0);
		ep_set_state(ep, RAGG__VERBS_EP_REJECTED);
		return rc;
	}
	uint8_t buf[RAGG_TP_PRIV_MAX];
	priv_pack(buf, priv, priv_len);
	struct rdma_conn_param cp;
	conn_param_init(dev, &cp, buf, priv_len + 1);
	if (rdma_accept(ep->id, &cp)) {
		rc = -errno;
		ragg__verbs_error(dev, "accepting %s: rdma_accept failed: %s", ep->base.peer,
		                  strerror(errno));
		ep_set_state(ep, RAGG__VERBS_EP_REJECTED);
		return rc;
	}
	ep_set_state(ep, RAGG__VERBS_EP_ACCEPTING);
	return 0;
}

int ragg__verbs_reject(struct ragg_tp_ep *e)
{
	struct ragg__verbs_ep *ep = ragg__verbs_ep(e);
	if (ep->state != RAGG__VERBS_EP_REQUESTED)
		return -EINVAL;
	if (rdma_reject(ep->id, NULL, 0)) {
		int rc = -errno;
		ragg__verbs_error(ep->dev, "rejecting %s: %s", ep->base.peer, strerror(errno));
		return rc;
	}
	/* The endpoint is done and says so, so a core that keeps nothing of
	 * a refused request knows when to close it. */
	ragg__verbs_ep_fail(ep, -ECONNREFUSED);
	return 0;
}

void ragg__verbs_ep_close(struct ragg_tp_ep *e)
{
	if (!e)
		return;
	struct ragg__verbs_ep *ep = ragg__verbs_ep(e);
	struct ragg__verbs_dev *dev = ep->dev;
	switch (ep->state) {
	case RAGG__VERBS_EP_REQUESTED: rdma_reject(ep->id, NULL, 0); break;
	case RAGG__VERBS_EP_CONNECTED:
	case RAGG__VERBS_EP_ACCEPTING:
	case RAGG__VERBS_EP_CONNECTING:
	case RAGG__VERBS_EP_FAILED:
		/* DREQ to the peer, our QP to error; harmless where there is
		 * no connection (yet or any more). */
		if (ep->qp)
			rdma_disconnect(ep->id);
		break;
	default: break;
	}
	ep_count_resolving(ep, false);
	ep_teardown_qp(ep);
	ragg__verbs_list_del(&ep->pend);
	ragg__verbs_list_del(&ep->link);
	/* No event for this id is left unacknowledged (each is acked as it
	 * is handled), so this does not block. */
	rdma_destroy_id(ep->id);
	(void)dev;
	free(ep);
}

void ragg__verbs_ep_close_all(struct ragg__verbs_dev *dev)
{
	while (!ragg__verbs_list_empty(&dev->eps)) {
		struct ragg__verbs_ep *ep =
		    ragg__container_of(dev->eps.next, struct ragg__verbs_ep, link);
		ragg__verbs_ep_close(&ep->base);
	}
	if (dev->listen_id) {
		rdma_destroy_id(dev->listen_id);
		dev->listen_id = NULL;
	}
}

/* ---- rdma_cm events ---- */

/* IB CM reject reasons (IBTA table 112) users meet; iWARP reports errno. */
static const char *reject_reason(int status)
{
	switch (status) {
	case 1:
	case 3: return "the peer is out of resources";
	case 8: return "nothing listens on that port (invalid service ID)";
	case 10: return "stale connection";
	case 12: return "invalid GID";
	case 28: return "refused by the peer";
	default: return status < 0 ? strerror(-status) : "rejected";
	}
}

static int cm_status(const struct rdma_cm_event *ev, int fallback)
{
	return ev->status < 0 && ev->status > -4096 ? ev->status : fallback;
}

/* A new connection request; returns an id to destroy once the event is
 * acknowledged (a request we refused ourselves), or NULL. */
static struct rdma_cm_id *on_request(struct ragg__verbs_dev *dev, struct rdma_cm_event *ev,
                                     struct ragg__verbs_out *out)
{
	struct rdma_cm_id *id = ev->id;
	char peer[RAGG_TP_ADDR_MAX];
	ragg__verbs_addr_format(rdma_get_peer_addr(id), peer, sizeof(peer));
	if (id->verbs != dev->ctx) {
		ragg__verbs_warn(dev,
		                 "refusing a connection from %s that arrived on RDMA device %s "
		                 "(this process uses %s)",
		                 peer, dev_of(id), dev->name);
		rdma_reject(id, NULL, 0);
		return id;
	}
	struct ragg__verbs_ep *ep = ep_new(dev, id, NULL);
	if (!ep) {
		rdma_reject(id, NULL, 0);
		return id;
	}
	snprintf(ep->base.peer, sizeof(ep->base.peer), "%s", peer);
	if (!priv_unpack(ep, &ev->param.conn)) {
		ragg__verbs_warn(dev,
		                 "refusing a connection from %s: not a ragg peer (private data "
		                 "without ragg's header)",
		                 peer);
		rdma_reject(id, NULL, 0);
		ragg__verbs_list_del(&ep->link);
		id->context = NULL;
		free(ep);
		return id;
	}
	ragg__verbs_debug(dev, "connection request from %s", peer);
	struct ragg_tp_event *e = ragg__verbs_out_next(out, ep, RAGG_TP_EV_CONNECT_REQUEST);
	e->data = ep->priv;
	e->len = ep->priv_len;
	return NULL;
}

static void on_addr_resolved(struct ragg__verbs_ep *ep)
{
	struct ragg__verbs_dev *dev = ep->dev;
	int rc;
	if (dev->cfg.tos >= 0) {
		uint8_t tos = (uint8_t)dev->cfg.tos;
		if (rdma_set_option(ep->id, RDMA_OPTION_ID, RDMA_OPTION_ID_TOS, &tos, sizeof(tos)))
			ragg__verbs_warn(dev, "RAGG_VERBS_TOS=%ld not applied: %s", dev->cfg.tos,
			                 strerror(errno));
	}
	if ((rc = ep_setup_qp(ep))) {
		ragg__verbs_ep_fail(ep, rc);
		return;
	}
	if (rdma_resolve_route(ep->id, (int)dev->cfg.resolve_timeout_ms)) {
		rc = -errno;
		ragg__verbs_error(dev, "rdma_resolve_route to %s: %s", ep->base.peer,
		                  strerror(errno));
		ragg__verbs_ep_fail(ep, rc);
	}
}

static void on_route_resolved(struct ragg__verbs_ep *ep)
{
	struct ragg__verbs_dev *dev = ep->dev;
	struct rdma_conn_param cp;
	conn_param_init(dev, &cp, ep->priv_out, ep->priv_out_len);
	if (rdma_connect(ep->id, &cp)) {
		int rc = -errno;
		ragg__verbs_error(dev, "rdma_connect to %s: %s", ep->base.peer, strerror(errno));
		ragg__verbs_ep_fail(ep, rc);
		return;
	}
	ep_set_state(ep, RAGG__VERBS_EP_CONNECTING);
}

static void on_established(struct ragg__verbs_ep *ep, struct rdma_cm_event *ev,
                           struct ragg__verbs_out *out)
{
	struct ragg__verbs_dev *dev = ep->dev;
	bool connector = ep->state == RAGG__VERBS_EP_CONNECTING;
	if (!connector && ep->state != RAGG__VERBS_EP_ACCEPTING)
		return;
	if (connector && !priv_unpack(ep, &ev->param.conn)) {
		ragg__verbs_error(dev,
		                  "%s accepted without ragg's private data header: not a ragg peer",
		                  ep->base.peer);
		ragg__verbs_ep_fail(ep, RAGG_ERR_PROTO);
		return;
	}
	ep_set_state(ep, RAGG__VERBS_EP_CONNECTED);
	ragg__verbs_info(dev, "connected %s %s over %s (qp %u)", connector ? "to" : "from",
	                 ep->base.peer, dev->name, ep->qp_num);
	struct ragg_tp_event *e = ragg__verbs_out_next(out, ep, RAGG_TP_EV_CONNECTED);
	if (connector) {
		e->data = ep->priv;
		e->len = ep->priv_len;
	}
}

static void on_failure(struct ragg__verbs_ep *ep, struct rdma_cm_event *ev)
{
	struct ragg__verbs_dev *dev = ep->dev;
	bool was_up = ep->state == RAGG__VERBS_EP_CONNECTED;
	switch (ev->event) {
	case RDMA_CM_EVENT_ADDR_ERROR:
		ragg__verbs_error(dev,
		                  "cannot resolve RDMA address %s (device %s): %s; it must be "
		                  "reachable through an RDMA-capable interface (`rdma link`, "
		                  "`ip route get`)",
		                  ep->base.peer, dev->name,
		                  strerror(-cm_status(ev, -EHOSTUNREACH)));
		ragg__verbs_ep_fail(ep, cm_status(ev, -EHOSTUNREACH));
		break;
	case RDMA_CM_EVENT_ROUTE_ERROR:
		ragg__verbs_error(dev,
		                  "no RDMA route to %s from device %s: %s (RoCE: check the GID "
		                  "table and the neighbour entry; InfiniBand: is a subnet manager "
		                  "running?)",
		                  ep->base.peer, dev_of(ep->id),
		                  strerror(-cm_status(ev, -ENETUNREACH)));
		ragg__verbs_ep_fail(ep, cm_status(ev, -ENETUNREACH));
		break;
	case RDMA_CM_EVENT_REJECTED:
		ragg__verbs_info(dev,
		                 "connection to %s refused (%s): is a ragg process listening "
		                 "there?",
		                 ep->base.peer, reject_reason(ev->status));
		ragg__verbs_ep_fail(ep, was_up ? RAGG_ERR_PEER_LOST : -ECONNREFUSED);
		break;
	case RDMA_CM_EVENT_UNREACHABLE:
		ragg__verbs_warn(dev,
		                 "%s did not answer the connection request (%s); check the "
		                 "address and port, that the peer runs, and on RoCE that UDP "
		                 "port 4791 is not filtered",
		                 ep->base.peer, strerror(-cm_status(ev, -ETIMEDOUT)));
		ragg__verbs_ep_fail(ep, -ECONNREFUSED);
		break;
	case RDMA_CM_EVENT_CONNECT_ERROR:
		ragg__verbs_error(dev, "connection with %s failed while being established: %s",
		                  ep->base.peer, strerror(-cm_status(ev, -ECONNABORTED)));
		ragg__verbs_ep_fail(ep, was_up ? RAGG_ERR_PEER_LOST : -ECONNREFUSED);
		break;
	case RDMA_CM_EVENT_DISCONNECTED:
		ragg__verbs_info(dev, "%s disconnected", ep->base.peer);
		ragg__verbs_ep_fail(ep, RAGG_ERR_PEER_LOST);
		break;
	case RDMA_CM_EVENT_DEVICE_REMOVAL:
		ragg__verbs_error(dev, "RDMA device %s was removed; connection with %s lost",
		                  dev->name, ep->base.peer);
		ragg__verbs_ep_fail(ep, -ENODEV);
		break;
	default: break;
	}
}

static struct rdma_cm_id *cm_handle(struct ragg__verbs_dev *dev, struct rdma_cm_event *ev,
                                    struct ragg__verbs_out *out)
{
	if (ev->event == RDMA_CM_EVENT_CONNECT_REQUEST)
		return on_request(dev, ev, out);
	struct ragg__verbs_ep *ep = ev->id ? ev->id->context : NULL;
	ragg__verbs_debug(dev, "%s on %s (status %d)", rdma_event_str(ev->event),
	                  ep ? ep->base.peer : dev->listen_addr, ev->status);
	if (!ep) {
		if (ev->event == RDMA_CM_EVENT_DEVICE_REMOVAL)
			ragg__verbs_error(dev,
			                  "RDMA device %s was removed; the listener on %s is gone",
			                  dev->name, dev->listen_addr);
		return NULL;
	}
	switch (ev->event) {
	case RDMA_CM_EVENT_ADDR_RESOLVED:
		if (ep->state == RAGG__VERBS_EP_RESOLVING)
			on_addr_resolved(ep);
		break;
	case RDMA_CM_EVENT_ROUTE_RESOLVED:
		if (ep->state == RAGG__VERBS_EP_RESOLVING)
			on_route_resolved(ep);
		break;
	case RDMA_CM_EVENT_ESTABLISHED: on_established(ep, ev, out); break;
	case RDMA_CM_EVENT_TIMEWAIT_EXIT:
	case RDMA_CM_EVENT_ADDR_CHANGE:
	case RDMA_CM_EVENT_CONNECT_RESPONSE: break;
	default: on_failure(ep, ev); break;
	}
	return NULL;
}

void ragg__verbs_cm_progress(struct ragg__verbs_dev *dev, struct ragg__verbs_out *out)
{
	/* Each rdma_cm event yields at most one event for the core, so only
	 * take one while there is room for it. */
	while (ragg__verbs_out_room(out) > 0) {
		struct rdma_cm_event *ev;
		if (rdma_get_cm_event(dev->cm_ch, &ev)) {
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				ragg__verbs_error(dev, "rdma_get_cm_event: %s", strerror(errno));
			dev->cm_ready = false;
			return;
		}
		struct rdma_cm_id *drop = cm_handle(dev, ev, out);
		rdma_ack_cm_event(ev);
		if (drop)
			rdma_destroy_id(drop);
	}
}
