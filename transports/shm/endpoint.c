/*
 * Connection setup and teardown.
 *
 * Handshake: the connector creates the ring it will consume and sends
 * HELLO with its private data and three fds: that ring, its device's
 * eventfd and its region table. The acceptor keeps them unmapped and
 * reports CONNECT_REQUEST; only accept() maps them (nothing of a peer the
 * core has not admitted is touched), creates the acceptor's own ring and
 * answers ACCEPT with the same three of its own. reject() answers ERR
 * (-ECONNREFUSED) and reports the endpoint DISCONNECTED so the core,
 * holding nothing else of it, closes it. After ACCEPT both sides write at
 * once: everything else goes through the rings.
 *
 * Until its HELLO is complete an accepted socket is the transport's own
 * business: the core never hears of a peer that sends garbage or nothing;
 * such sockets are logged and dropped (the last after params.timeout_ms).
 *
 * A connect() to a listener whose backlog is full fails with EAGAIN on a
 * unix socket (there is no "in progress"); the endpoint then retries from
 * poll() until the handshake deadline.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "shm.h"

static struct ragg__shm_ep *ep_new(struct ragg__shm_dev *dev, int fd)
{
	struct ragg__shm_ep *ep = calloc(1, sizeof(*ep));
	if (!ep)
		return NULL;
	ep->base.dev = &dev->base;
	ep->dev = dev;
	ep->fd = fd;
	ep->pidfd = ep->peer_efd = -1;
	for (int i = 0; i < RAGG__SHM_PKT_FDS_MAX; i++)
		ep->held[i] = -1;
	if (ragg__shm_queues_alloc(ep)) {
		free(ep);
		return NULL;
	}
	ragg__shm_list_add_tail(&dev->eps, &ep->link);
	return ep;
}

/* Counted even without a timeout: the sweep also retries connects. */
static void set_deadline(struct ragg__shm_ep *ep)
{
	int t = ep->dev->base.params.timeout_ms;
	ep->deadline_ms = t > 0 ? ragg__tp_now_ms() + t : INT64_MAX;
	ep->dev->handshakes++;
}

void ragg__shm_ep_handshake_done(struct ragg__shm_ep *ep)
{
	if (!ep->deadline_ms)
		return;
	ep->deadline_ms = 0;
	ep->dev->handshakes--;
}

static void close_held(struct ragg__shm_ep *ep)
{
	for (int i = 0; i < RAGG__SHM_PKT_FDS_MAX; i++) {
		if (ep->held[i] >= 0)
			close(ep->held[i]);
		ep->held[i] = -1;
	}
}

void ragg__shm_ep_free(struct ragg__shm_ep *ep)
{
	ragg__shm_ep_handshake_done(ep);
	ragg__shm_ctl_drop(ep);
	if (ep->fd >= 0)
		close(ep->fd);
	if (ep->pidfd >= 0)
		close(ep->pidfd);
	if (ep->peer_efd >= 0)
		close(ep->peer_efd);
	close_held(ep);
	ragg__shm_ring_unmap(&ep->rx);
	ragg__shm_ring_unmap(&ep->tx);
	if (ep->peer_gens)
		munmap((void *)ep->peer_gens, ep->peer_gens_len);
	ragg__shm_remotes_free(ep);
	ragg__shm_list_del(&ep->link);
	free(ep->ops);
	free(ep->done);
	free(ep);
}

void ragg__shm_ep_fail(struct ragg__shm_ep *ep, int status)
{
	struct ragg__shm_dev *dev = ep->dev;

	if (ep->state == RAGG__SHM_EP_FAILED)
		return;
	ragg__shm_ep_handshake_done(ep);
	ragg__shm_ctl_drop(ep);
	if (ep->fd >= 0) {
		/* The socket leaves the epoll set with its last reference. */
		close(ep->fd);
		ep->fd = -1;
	}
	ep->epoll_mask = 0;
	ep->state = RAGG__SHM_EP_FAILED;
	ep->status = status;
	/* What the peer completed before the end is still reported, then
	 * DISCONNECTED: a tail read now covers every record published
	 * before the socket closed. */
	if (ep->rx_on) {
		uint64_t t = atomic_load_explicit(&ep->rx.hdr->tail, memory_order_acquire);
		ep->rx_stop = t - ep->rx.pos <= ep->rx.slots ? t : ep->rx.pos;
	}
	ragg__shm_ops_cancel(ep);
	if (ep->exposed) {
		ep->report |= RAGG__SHM_REPORT_DISCONNECTED;
	} else {
		/* Freed at the end of poll(): this poll may still hold an
		 * epoll event that points here. */
		ragg__shm_list_del(&ep->link);
		ragg__shm_list_add_tail(&dev->dead, &ep->link);
	}
}

/* Who is at the other end, and a handle on that process that a reused pid
 * cannot fake. */
static void peer_cred(struct ragg__shm_ep *ep)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);
	if (getsockopt(ep->fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0 || cred.pid <= 0)
		return;
	ep->peer_pid = cred.pid;
#ifdef SYS_pidfd_open
	ep->pidfd = (int)syscall(SYS_pidfd_open, cred.pid, 0);
	if (ep->pidfd < 0)
		ep->pidfd = -1;
#endif
}

int ragg__shm_listen(struct ragg_tp_dev *d, const char *host_port, char *addr, size_t addr_len)
{
	struct ragg__shm_dev *dev = ragg__shm_dev(d);
	char name[72], out[RAGG_TP_ADDR_MAX];
	struct sockaddr_un sa;
	socklen_t sl;
	int fd, rc;

	if (dev->lfd >= 0)
		return -EBUSY;
	if ((rc = ragg__shm_addr_listen_name(dev, host_port, name, sizeof(name))))
		return rc;
	int n = snprintf(out, sizeof(out), "shm:%s:%s", dev->host_id, name);
	if (!addr || n < 0 || (size_t)n >= addr_len) {
		ragg__shm_error(dev, "listen: no room for the address \"%s\"", out);
		return -ENAMETOOLONG;
	}
	ragg__shm_addr_abstract(name, &sa, &sl);
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		rc = -errno;
		ragg__shm_error(dev, "listen: socket: %s", strerror(-rc));
		return rc;
	}
	if (bind(fd, (struct sockaddr *)&sa, sl) < 0 || listen(fd, (int)dev->cfg.backlog) < 0) {
		rc = -errno;
		ragg__shm_error(dev, "listen on %s: %s", out, strerror(-rc));
		goto err_close;
	}
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = RAGG__SHM_TAG_LISTEN };
	if (epoll_ctl(dev->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		rc = -errno;
		ragg__shm_error(dev, "listen: epoll_ctl: %s", strerror(-rc));
		goto err_close;
	}
	dev->lfd = fd;
	ragg__tp_accept_guard_init(&dev->accept_guard);
	snprintf(dev->laddr, sizeof(dev->laddr), "%s", out);
	strcpy(addr, out);
	ragg__shm_info(dev, "listening on %s", out);
	return 0;

err_close:
	close(fd);
	return rc;
}

/* connect(); on success the HELLO waiting in the queue goes out. */
static void try_connect(struct ragg__shm_ep *ep)
{
	if (connect(ep->fd, (struct sockaddr *)&ep->sa, ep->sa_len) < 0) {
		int err = errno;
		if (err == EAGAIN || err == EINTR)
			return; /* backlog full: the sweep tries again */
		ragg__shm_info(ep->dev, "connect %s: %s", ep->base.peer, strerror(err));
		ragg__shm_ep_fail(ep, err == ENOENT ? -ECONNREFUSED : -err);
		return;
	}
	ep->state = RAGG__SHM_EP_HELLO_SENT;
	peer_cred(ep);
	if (ragg__shm_ep_set_mask(ep, EPOLLIN) == 0)
		ragg__shm_ctl_flush(ep);
}

int ragg__shm_connect(struct ragg_tp_dev *d, const char *addr, const void *priv, size_t priv_len,
                      void *user, struct ragg_tp_ep **out)
{
	struct ragg__shm_dev *dev = ragg__shm_dev(d);
	struct ragg__shm_ep *ep;
	struct ragg__shm_pkt p;
	int rc, ring_fd;

	if (!addr || !out || priv_len > RAGG_TP_PRIV_MAX || (priv_len && !priv))
		return -EINVAL;
	ep = ep_new(dev, -1);
	if (!ep)
		return -ENOMEM;
	ep->base.user = user;
	snprintf(ep->base.peer, sizeof(ep->base.peer), "%s", addr);
	if ((rc = ragg__shm_addr_resolve(dev, addr, &ep->sa, &ep->sa_len)))
		goto err_free;
	if ((rc = ragg__shm_ring_create(dev, &ep->rx, (uint32_t)dev->cfg.queue_depth, &ring_fd)))
		goto err_free;
	ep->rx_on = true;
	ep->fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (ep->fd < 0) {
		rc = -errno;
		ragg__shm_error(dev, "connect %s: socket: %s", addr, strerror(-rc));
		close(ring_fd);
		goto err_free;
	}
	/* Queued until the socket is connected. */
	ep->state = RAGG__SHM_EP_CONNECTING;
	ragg__shm_pkt_init(&p, RAGG__SHM_HELLO);
	p.ring_slots = (uint32_t)dev->cfg.queue_depth;
	p.max_regions = (uint32_t)dev->cfg.max_regions;
	p.priv_len = (uint32_t)priv_len;
	if (priv_len)
		memcpy(p.priv, priv, priv_len);
	int fds[] = { ring_fd, dev->efd, dev->gens_fd };
	rc = ragg__shm_ctl_send(ep, &p, fds, 3);
	close(ring_fd);
	if (rc)
		goto err_free;
	ep->exposed = true;
	set_deadline(ep);
	/* A refusal at once is still an event, as for any other peer. */
	try_connect(ep);
	*out = &ep->base;
	return 0;

err_free:
	ragg__shm_ep_free(ep);
	return rc;
}

/* Map the peer's region table read-only. */
static int map_gens(struct ragg__shm_ep *ep, int fd, uint32_t regions)
{
	long page = sysconf(_SC_PAGESIZE);
	if (regions < 1 || regions > (1u << 24)) {
		ragg__shm_error(ep->dev, "%s: a region table of %u entries", ep->base.peer,
		                regions);
		return RAGG_ERR_PROTO;
	}
	size_t len = ((size_t)regions * sizeof(uint64_t) + (size_t)page - 1) & ~((size_t)page - 1);
	int rc = ragg__shm_memfd_check(ep->dev, fd, len, "region table");
	if (rc)
		return rc;
	void *m = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
	if (m == MAP_FAILED) {
		rc = -errno;
		ragg__shm_error(ep->dev, "%s: mapping the region table: %s", ep->base.peer,
		                strerror(-rc));
		return rc;
	}
	ep->peer_gens = m;
	ep->peer_gens_len = len;
	ep->peer_max_regions = regions;
	return 0;
}

/* The peer's wake fd must be an eventfd, and writing it must never block
 * us: anything else (a pipe, a socket) could stall or signal us. */
static int check_eventfd(struct ragg__shm_ep *ep, int fd)
{
	char path[64], link[64];
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(path, link, sizeof(link) - 1);
	if (n < 0 || (link[n] = '\0', strcmp(link, "anon_inode:[eventfd]") != 0)) {
		ragg__shm_error(ep->dev, "%s: the peer's wake fd is not an eventfd", ep->base.peer);
		return RAGG_ERR_PROTO;
	}
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || (!(fl & O_NONBLOCK) && fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0))
		return -errno;
	return 0;
}

/* Everything the peer's HELLO or ACCEPT handed over, mapped. */
static int attach_peer(struct ragg__shm_ep *ep, int *ring_fd, int *efd, int *gens_fd,
                       uint32_t slots, uint32_t regions)
{
	int rc = check_eventfd(ep, *efd);
	if (rc)
		return rc;
	if ((rc = ragg__shm_ring_attach(ep->dev, &ep->tx, *ring_fd, slots)))
		return rc;
	if ((rc = map_gens(ep, *gens_fd, regions))) {
		ragg__shm_ring_unmap(&ep->tx);
		return rc;
	}
	ep->tx_on = true;
	ep->peer_efd = *efd;
	*efd = -1;
	return 0;
}

static bool fds_ok(const struct ragg__shm_pkt *p, const int *fds)
{
	return p->nfds == 3 && fds[0] >= 0 && fds[1] >= 0 && fds[2] >= 0 &&
	       p->priv_len <= RAGG_TP_PRIV_MAX;
}

void ragg__shm_on_hello(struct ragg__shm_ep *ep, const struct ragg__shm_pkt *p, int *fds)
{
	if (!fds_ok(p, fds)) {
		ragg__shm_refuse(ep, RAGG_ERR_PROTO, "malformed hello");
		return;
	}
	for (int i = 0; i < 3; i++) {
		ep->held[i] = fds[i];
		fds[i] = -1;
	}
	ep->held_slots = p->ring_slots;
	ep->held_regions = p->max_regions;
	memcpy(ep->priv, p->priv, p->priv_len);
	ep->priv_len = p->priv_len;
	ep->state = RAGG__SHM_EP_REQUESTED;
	ep->exposed = true;
	ep->report |= RAGG__SHM_REPORT_REQUEST;
	ragg__shm_ep_handshake_done(ep);
	ragg__shm_debug(ep->dev, "%s: connect request", ep->base.peer);
}

void ragg__shm_on_accept(struct ragg__shm_ep *ep, const struct ragg__shm_pkt *p, int *fds)
{
	if (!fds_ok(p, fds)) {
		ragg__shm_refuse(ep, RAGG_ERR_PROTO, "malformed accept");
		return;
	}
	int rc = attach_peer(ep, &fds[0], &fds[1], &fds[2], p->ring_slots, p->max_regions);
	if (rc) {
		ragg__shm_refuse(ep, rc, "cannot map what the acceptor sent");
		return;
	}
	memcpy(ep->priv, p->priv, p->priv_len);
	ep->priv_len = p->priv_len;
	ep->state = RAGG__SHM_EP_CONNECTED;
	ep->report |= RAGG__SHM_REPORT_CONNECTED;
	ragg__shm_ep_handshake_done(ep);
	ragg__shm_debug(ep->dev, "%s: connected", ep->base.peer);
}

int ragg__shm_accept(struct ragg_tp_ep *e, const void *priv, size_t priv_len)
{
	struct ragg__shm_ep *ep = ragg__shm_ep(e);
	struct ragg__shm_dev *dev = ep->dev;
	struct ragg__shm_pkt p;
	int rc, ring_fd;

	if (ep->state == RAGG__SHM_EP_FAILED)
		return ep->status ? ep->status : RAGG_ERR_PEER_LOST;
	if (ep->state != RAGG__SHM_EP_REQUESTED || priv_len > RAGG_TP_PRIV_MAX ||
	    (priv_len && !priv))
		return -EINVAL;
	rc = attach_peer(ep, &ep->held[0], &ep->held[1], &ep->held[2], ep->held_slots,
	                 ep->held_regions);
	close_held(ep);
	if (rc) {
		ragg__shm_refuse(ep, rc, "cannot map what the connector sent");
		return rc;
	}
	if ((rc = ragg__shm_ring_create(dev, &ep->rx, (uint32_t)dev->cfg.queue_depth, &ring_fd))) {
		ragg__shm_ep_fail(ep, rc);
		return rc;
	}
	ep->rx_on = true;
	ragg__shm_pkt_init(&p, RAGG__SHM_ACCEPT);
	p.ring_slots = (uint32_t)dev->cfg.queue_depth;
	p.max_regions = (uint32_t)dev->cfg.max_regions;
	p.priv_len = (uint32_t)priv_len;
	if (priv_len)
		memcpy(p.priv, priv, priv_len);
	int fds[] = { ring_fd, dev->efd, dev->gens_fd };
	rc = ragg__shm_ctl_send(ep, &p, fds, 3);
	close(ring_fd);
	if (rc) {
		ragg__shm_ep_fail(ep, rc);
		return rc;
	}
	ep->state = RAGG__SHM_EP_CONNECTED;
	ep->priv_len = 0;
	ep->report |= RAGG__SHM_REPORT_CONNECTED;
	return 0;
}

int ragg__shm_reject(struct ragg_tp_ep *e)
{
	struct ragg__shm_ep *ep = ragg__shm_ep(e);
	struct ragg__shm_pkt p;

	if (ep->state == RAGG__SHM_EP_FAILED)
		return 0;
	if (ep->state != RAGG__SHM_EP_REQUESTED)
		return -EINVAL;
	close_held(ep);
	ragg__shm_pkt_init(&p, RAGG__SHM_ERR);
	p.status = -ECONNREFUSED;
	int rc = ragg__shm_ctl_send(ep, &p, NULL, 0);
	if (rc)
		return rc;
	ep->state = RAGG__SHM_EP_REJECTED;
	ragg__shm_ctl_flush(ep);
	return 0;
}

void ragg__shm_ep_close(struct ragg_tp_ep *e)
{
	if (!e)
		return;
	struct ragg__shm_ep *ep = ragg__shm_ep(e);
	/* Whatever fits into the socket now still reaches the peer (a
	 * rejection); the rest is dropped. Ring records are already out. */
	if (ep->fd >= 0 && ep->state != RAGG__SHM_EP_CONNECTING && ep->ctl_head != ep->ctl_tail)
		ragg__shm_ctl_flush(ep);
	ragg__shm_ep_free(ep);
}

/* Out of descriptors: shed what waits, take the listener out of the poll
 * set for a while (ragg__shm_listener_resume puts it back) and say so at
 * most once per 10 s; see transports/util/accept.h. */
static void accept_exhausted(struct ragg__shm_dev *dev, int err)
{
	char msg[256];
	if (ragg__tp_accept_pause_epoll(&dev->accept_guard, dev->epfd, dev->lfd,
	                                RAGG__SHM_TAG_LISTEN, ragg__tp_now_ms(), dev->laddr, err,
	                                msg, sizeof(msg)))
		ragg__shm_warn(dev, "%s", msg);
}

void ragg__shm_listener_resume(struct ragg__shm_dev *dev, int64_t now)
{
	ragg__tp_accept_resume_epoll(&dev->accept_guard, dev->epfd, dev->lfd, RAGG__SHM_TAG_LISTEN,
	                             now);
}

void ragg__shm_listener_ready(struct ragg__shm_dev *dev)
{
	/* Bounded, so a connection storm cannot starve the endpoints. */
	for (int i = 0; i < 64; i++) {
		int fd = accept4(dev->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE)
				accept_exhausted(dev, errno);
			else if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
				ragg__shm_warn(dev, "accept on %s: %s", dev->laddr,
				               strerror(errno));
			return;
		}
		ragg__tp_accept_ok(&dev->accept_guard);
		struct ragg__shm_ep *ep = ep_new(dev, fd);
		if (!ep) {
			ragg__shm_warn(dev, "accept on %s: out of memory, dropping", dev->laddr);
			close(fd);
			continue;
		}
		peer_cred(ep);
		snprintf(ep->base.peer, sizeof(ep->base.peer), "shm peer pid %d",
		         (int)ep->peer_pid);
		ep->state = RAGG__SHM_EP_HELLO_WAIT;
		set_deadline(ep);
		if (ragg__shm_ep_set_mask(ep, EPOLLIN)) {
			ragg__shm_ep_fail(ep, -EIO);
			continue;
		}
		ragg__shm_debug(dev, "%s: connection accepted, waiting for hello", ep->base.peer);
	}
}

void ragg__shm_sweep(struct ragg__shm_dev *dev, int64_t now)
{
	struct ragg__shm_link *l, *next;

	for (l = dev->eps.next; l != &dev->eps; l = next) {
		next = l->next;
		struct ragg__shm_ep *ep = ragg__container_of(l, struct ragg__shm_ep, link);
		if (ep->state == RAGG__SHM_EP_CONNECTING)
			try_connect(ep);
		if (!ep->deadline_ms || now < ep->deadline_ms || ep->state == RAGG__SHM_EP_FAILED)
			continue;
		if (ep->exposed)
			ragg__shm_error(dev, "connect %s: no answer within %d ms", ep->base.peer,
			                dev->base.params.timeout_ms);
		else
			ragg__shm_warn(dev, "%s: no hello within %d ms, dropping", ep->base.peer,
			               dev->base.params.timeout_ms);
		ragg__shm_ep_fail(ep, RAGG_ERR_TIMEOUT);
	}
}
