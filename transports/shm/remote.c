/*
 * Peer regions, from both ends of the socket.
 *
 * Writer: the first write to a (region, key) asks the owner where it is
 * (MAP_REQ) and waits, with every later op of the endpoint queued behind
 * it so order holds, for the answer (MAP_REP): for a shared region the
 * memfd, of which just the region's pages are mapped; for a private one
 * its address, written with process_vm_writev. The answer is kept for the
 * endpoint's life and its mappings go with it (ep_close).
 *
 * Owner: a request is answered only for a region registered under that id
 * with that key and length; anything else drops the connection, as a
 * refused frame does on tcp.
 *
 * Entries are found through an index by region id (ids are small: the
 * owner hands out the lowest free one); a region re-registered under the
 * same id with a new key gets a new entry, the old one stays until
 * ep_close.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "shm.h"

struct ragg__shm_remote_index {
	uint32_t n;
	uint32_t slot[]; /* by region id: entry index + 1, 0 when none */
};

static uint32_t *index_slot(struct ragg__shm_ep *ep, uint32_t region, bool grow)
{
	struct ragg__shm_remote_index *ix = ep->remote_index;
	if (ix && region < ix->n)
		return &ix->slot[region];
	if (!grow)
		return NULL;
	uint32_t n = ix ? ix->n : 16;
	while (n <= region)
		n *= 2;
	struct ragg__shm_remote_index *nx = realloc(ix, sizeof(*nx) + n * sizeof(uint32_t));
	if (!nx)
		return NULL;
	uint32_t old = ix ? nx->n : 0;
	memset(nx->slot + old, 0, (n - old) * sizeof(uint32_t));
	nx->n = n;
	ep->remote_index = nx;
	return &nx->slot[region];
}

int ragg__shm_remote_get(struct ragg__shm_ep *ep, const struct ragg__shm_rdesc *rd)
{
	uint32_t *slot = index_slot(ep, rd->region, false);
	if (slot && *slot && ep->remotes[*slot - 1].key == rd->key)
		return (int)(*slot - 1);
	/* An older registration under the same id: known, so refused here by
	 * its generation rather than by the owner, which drops the link. */
	for (uint32_t i = 0; slot && *slot && i < ep->nremotes; i++)
		if (ep->remotes[i].region == rd->region && ep->remotes[i].key == rd->key)
			return (int)i;

	if (rd->region >= ep->peer_max_regions) {
		/* Not a region the owner could have: no need to ask. */
		ragg__shm_error(ep->dev,
		                "%s: write to region %" PRIu32 " refused: past the peer's "
		                "region table: %s (%s)",
		                ep->base.peer, rd->region, ragg_strerror(RAGG_ERR_KEY),
		                ragg_strerror_name(RAGG_ERR_KEY));
		return RAGG_ERR_KEY;
	}
	if (ep->nremotes == ep->remotes_cap) {
		uint32_t cap = ep->remotes_cap ? ep->remotes_cap * 2 : 8;
		struct ragg__shm_remote *r = realloc(ep->remotes, cap * sizeof(*r));
		if (!r)
			return -ENOMEM;
		ep->remotes = r;
		ep->remotes_cap = cap;
	}
	slot = index_slot(ep, rd->region, true);
	if (!slot)
		return -ENOMEM;
	struct ragg__shm_pkt p;
	ragg__shm_pkt_init(&p, RAGG__SHM_MAP_REQ);
	p.region = rd->region;
	p.key = rd->key;
	p.length = rd->length;
	int rc = ragg__shm_ctl_send(ep, &p, NULL, 0);
	if (rc)
		return rc;
	uint32_t i = ep->nremotes++;
	ep->remotes[i] = (struct ragg__shm_remote){
		.region = rd->region,
		.state = RAGG__SHM_REMOTE_ASKED,
		.kind = rd->kind,
		.key = rd->key,
		.length = rd->length,
	};
	*slot = i + 1;
	ragg__shm_debug(ep->dev, "%s: asking where region %" PRIu32 " is", ep->base.peer,
	                rd->region);
	return (int)i;
}

/* Map just the pages of [where, where + length) of the owner's memfd. */
static int map_shared(struct ragg__shm_ep *ep, struct ragg__shm_remote *r, int fd, uint64_t where)
{
	uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
	if (!r->length)
		return 0;
	if (where > UINT64_MAX - r->length || where + r->length > (uint64_t)INT64_MAX - page) {
		ragg__shm_refuse(ep, RAGG_ERR_PROTO, "map reply past any memfd");
		return RAGG_ERR_PROTO;
	}
	uint64_t start = where & ~(page - 1);
	uint64_t end = (where + r->length + page - 1) & ~(page - 1);
	if (end - start > SIZE_MAX) {
		ragg__shm_refuse(ep, RAGG_ERR_PROTO, "map reply larger than our address space");
		return RAGG_ERR_PROTO;
	}
	int rc = ragg__shm_memfd_check(ep->dev, fd, (size_t)end, "region");
	if (rc) {
		ragg__shm_refuse(ep, rc, "bad memfd in a map reply");
		return rc;
	}
	void *m =
	    mmap(NULL, (size_t)(end - start), PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)start);
	if (m == MAP_FAILED) {
		rc = -errno;
		ragg__shm_error(ep->dev, "%s: mapping region %" PRIu32 " (%" PRIu64 " bytes): %s",
		                ep->base.peer, r->region, r->length, strerror(-rc));
		ragg__shm_ep_fail(ep, rc);
		return rc;
	}
	/* As the owner's mapping (memory.c): huge pages where allowed. */
	if (end - start >= ((uint64_t)2 << 20))
		madvise(m, (size_t)(end - start), MADV_HUGEPAGE);
	r->map = m;
	r->map_len = (size_t)(end - start);
	r->base = (uint8_t *)m + (where - start);
	return 0;
}

void ragg__shm_on_map_rep(struct ragg__shm_ep *ep, const struct ragg__shm_pkt *p, int *fds)
{
	uint32_t *slot = index_slot(ep, p->region, false);
	struct ragg__shm_remote *r = slot && *slot ? &ep->remotes[*slot - 1] : NULL;

	if (!r || r->state != RAGG__SHM_REMOTE_ASKED || r->key != p->key ||
	    r->length != p->length || !p->gen) {
		ragg__shm_refuse(ep, RAGG_ERR_PROTO, "map reply to no question of ours");
		return;
	}
	if (p->kind == RAGG__SHM_KIND_SHARED && p->nfds == 1) {
		if (map_shared(ep, r, fds[0], p->where))
			return;
	} else if (p->kind == RAGG__SHM_KIND_PRIVATE && p->nfds == 0) {
		if (p->where > UINT64_MAX - p->length) {
			ragg__shm_refuse(ep, RAGG_ERR_PROTO, "map reply past the address space");
			return;
		}
		r->addr = p->where;
	} else {
		ragg__shm_refuse(ep, RAGG_ERR_PROTO, "malformed map reply");
		return;
	}
	r->kind = p->kind;
	r->gen = p->gen;
	r->state = RAGG__SHM_REMOTE_READY;
	/* peer_map() said -EINPROGRESS for it: the core hears it may ask again
	 * (a region asked for by writes alone is nothing to the core). */
	if (r->core_waits)
		ep->report |= RAGG__SHM_REPORT_MAPPED;
	r->core_waits = 0;
	ragg__shm_debug(ep->dev, "%s: region %" PRIu32 " (%" PRIu64 " bytes) is %s", ep->base.peer,
	                r->region, r->length,
	                r->kind == RAGG__SHM_KIND_SHARED ? "mapped" : "private, written with CMA");
}

void ragg__shm_on_map_req(struct ragg__shm_ep *ep, const struct ragg__shm_pkt *p)
{
	struct ragg__shm_dev *dev = ep->dev;
	const char *why = NULL;
	int status = 0;
	struct ragg__shm_mr *mr =
	    ragg__shm_region_check(dev, p->region, p->key, p->length, &status, &why);
	if (!mr) {
		char msg[400];
		snprintf(msg, sizeof(msg),
		         "access to %" PRIu64 " bytes of region %" PRIu32 " refused: %s%s%s",
		         p->length, p->region, why, status == -EPERM ? ": " : "",
		         status == -EPERM ? dev->cma_why : "");
		ragg__shm_refuse(ep, status, msg);
		return;
	}
	struct ragg__shm_pkt rep;
	ragg__shm_pkt_init(&rep, RAGG__SHM_MAP_REP);
	rep.region = mr->soft.id;
	rep.key = mr->soft.key;
	rep.length = mr->soft.base.len;
	rep.gen = mr->gen;
	if (mr->block) {
		rep.kind = RAGG__SHM_KIND_SHARED;
		rep.where = (uint64_t)((uint8_t *)mr->soft.base.addr - mr->block->addr);
	} else {
		rep.kind = RAGG__SHM_KIND_PRIVATE;
		rep.where = (uint64_t)(uintptr_t)mr->soft.base.addr;
	}
	int rc = ragg__shm_ctl_send(ep, &rep, mr->block ? &mr->block->fd : NULL, mr->block ? 1 : 0);
	if (rc == -EAGAIN)
		ragg__shm_refuse(ep, -ENOBUFS,
		                 "peer asks for regions faster than it reads answers");
	else if (!rc)
		ragg__shm_debug(dev, "%s: told where region %" PRIu32 " is", ep->base.peer,
		                mr->soft.id);
}

int ragg__shm_peer_map(struct ragg_tp_ep *e, const struct ragg_tp_rdesc *remote, void **ptr,
                       size_t *len)
{
	struct ragg__shm_ep *ep = ragg__shm_ep(e);
	struct ragg__shm_rdesc rd;

	if (ep->state != RAGG__SHM_EP_CONNECTED)
		return ep->state == RAGG__SHM_EP_FAILED && ep->status ? ep->status : -ENOTCONN;
	if (ragg__shm_rdesc_unpack(remote, &rd))
		return -EINVAL;
	if (rd.kind != RAGG__SHM_KIND_SHARED)
		return -EOPNOTSUPP;
	int i = ragg__shm_remote_get(ep, &rd);
	if (i < 0)
		return i;
	struct ragg__shm_remote *r = &ep->remotes[i];
	if (r->state != RAGG__SHM_REMOTE_READY) {
		r->core_waits = 1;
		return -EINPROGRESS;
	}
	/* What the owner said wins over the descriptor's claim. */
	if (r->kind != RAGG__SHM_KIND_SHARED || !r->base)
		return -EOPNOTSUPP;
	if (!ragg__shm_remote_live(ep, r))
		return RAGG_ERR_KEY;
	*ptr = r->base;
	*len = (size_t)r->length;
	return 0;
}

void ragg__shm_remotes_free(struct ragg__shm_ep *ep)
{
	for (uint32_t i = 0; i < ep->nremotes; i++)
		if (ep->remotes[i].map)
			munmap(ep->remotes[i].map, ep->remotes[i].map_len);
	free(ep->remotes);
	free(ep->remote_index);
	ep->remotes = NULL;
	ep->remote_index = NULL;
	ep->nremotes = ep->remotes_cap = 0;
}
