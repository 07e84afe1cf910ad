/*
 * The control socket: fixed-size packets (wire.h) with their fds, one
 * SOCK_SEQPACKET datagram each, so a packet and its fds arrive whole or not
 * at all. Sends go out at once; one the socket will not take waits in a
 * small per-endpoint queue (its fds duplicated, since the originals may be
 * closed meanwhile) behind EPOLLOUT. Traffic is a handshake and one
 * question per region, so the queue never grows in practice; a full one
 * answers -EAGAIN.
 *
 * Everything a peer sends is checked before use: size, magic, version, the
 * fds it claims to carry, and the state it may come in. A peer that breaks
 * the protocol is told why (ERR) and dropped.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "shm.h"

static const char *type_name(uint8_t type)
{
	static const char *const names[] = { "?",           "hello",     "accept",
		                             "map request", "map reply", "error" };
	return type < RAGG_ARRAY_SIZE(names) ? names[type] : "?";
}

void ragg__shm_pkt_init(struct ragg__shm_pkt *p, uint8_t type)
{
	memset(p, 0, sizeof(*p));
	p->magic = RAGG__SHM_MAGIC;
	p->version = RAGG__SHM_VERSION;
	p->type = type;
}

static ssize_t pkt_sendmsg(int fd, const struct ragg__shm_pkt *p, const int *fds, int nfds)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * RAGG__SHM_PKT_FDS_MAX)];
		struct cmsghdr align;
	} u;
	struct iovec iov = { .iov_base = (void *)p, .iov_len = sizeof(*p) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };

	if (nfds) {
		memset(&u, 0, sizeof(u));
		mh.msg_control = u.buf;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)nfds);
	}
	return sendmsg(fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
}

static int send_failed(struct ragg__shm_ep *ep)
{
	int rc = errno == EPIPE || errno == ECONNRESET || errno == ENOTCONN ? RAGG_ERR_PEER_LOST
	                                                                    : -errno;
	ragg__shm_info(ep->dev, "%s: send: %s", ep->base.peer, strerror(errno));
	ragg__shm_ep_fail(ep, rc);
	return rc;
}

int ragg__shm_ctl_send(struct ragg__shm_ep *ep, struct ragg__shm_pkt *p, const int *fds, int nfds)
{
	if (ep->state == RAGG__SHM_EP_FAILED || ep->fd < 0)
		return ep->status ? ep->status : RAGG_ERR_PEER_LOST;
	p->nfds = (uint8_t)nfds;
	if (ep->ctl_head == ep->ctl_tail && ep->state != RAGG__SHM_EP_CONNECTING) {
		for (;;) {
			if (pkt_sendmsg(ep->fd, p, fds, nfds) == (ssize_t)sizeof(*p))
				return 0;
			if (errno != EINTR)
				break;
		}
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return send_failed(ep);
	}
	if (ep->ctl_tail - ep->ctl_head >= RAGG__SHM_CTL_QUEUE)
		return -EAGAIN;
	struct ragg__shm_ctl *c = &ep->ctl[ep->ctl_tail % RAGG__SHM_CTL_QUEUE];
	for (int i = 0; i < nfds; i++) {
		c->fds[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 0);
		if (c->fds[i] < 0) {
			int rc = -errno;
			while (i--)
				close(c->fds[i]);
			ragg__shm_error(ep->dev, "%s: dup: %s", ep->base.peer, strerror(-rc));
			return rc;
		}
	}
	c->pkt = *p;
	ep->ctl_tail++;
	if (ep->state != RAGG__SHM_EP_CONNECTING)
		ragg__shm_ep_set_mask(ep, EPOLLIN | EPOLLOUT);
	return 0;
}

static void ctl_pop(struct ragg__shm_ep *ep)
{
	struct ragg__shm_ctl *c = &ep->ctl[ep->ctl_head++ % RAGG__SHM_CTL_QUEUE];
	for (int i = 0; i < c->pkt.nfds; i++)
		close(c->fds[i]);
}

void ragg__shm_ctl_flush(struct ragg__shm_ep *ep)
{
	while (ep->ctl_head != ep->ctl_tail && ep->fd >= 0) {
		struct ragg__shm_ctl *c = &ep->ctl[ep->ctl_head % RAGG__SHM_CTL_QUEUE];
		if (pkt_sendmsg(ep->fd, &c->pkt, c->fds, c->pkt.nfds) == (ssize_t)sizeof(c->pkt)) {
			ctl_pop(ep);
			continue;
		}
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			break;
		send_failed(ep);
		return;
	}
	if (ep->fd < 0)
		return;
	ragg__shm_ep_set_mask(ep, EPOLLIN | (ep->ctl_head != ep->ctl_tail ? EPOLLOUT : 0));
	/* The refusal is out: the endpoint is done, and says so, so whoever
	 * rejected it knows to close it. */
	if (ep->state == RAGG__SHM_EP_REJECTED && ep->ctl_head == ep->ctl_tail)
		ragg__shm_ep_fail(ep, -ECONNREFUSED);
}

void ragg__shm_ctl_drop(struct ragg__shm_ep *ep)
{
	while (ep->ctl_head != ep->ctl_tail)
		ctl_pop(ep);
}

void ragg__shm_refuse(struct ragg__shm_ep *ep, int status, const char *why)
{
	ragg__shm_error(ep->dev, "%s: %s; dropping the connection: %s (%s)", ep->base.peer, why,
	                ragg_strerror(status), ragg_strerror_name(status));
	if (ep->fd >= 0) {
		struct ragg__shm_pkt p;
		ragg__shm_pkt_init(&p, RAGG__SHM_ERR);
		p.status = status;
		ssize_t n = pkt_sendmsg(ep->fd, &p, NULL, 0);
		(void)n;
	}
	ragg__shm_ep_fail(ep, status);
}

static void rx_closed(struct ragg__shm_ep *ep, int err)
{
	if (!ep->exposed)
		ragg__shm_debug(ep->dev, "%s: closed before hello", ep->base.peer);
	else if (err)
		ragg__shm_info(ep->dev, "%s: receive: %s", ep->base.peer, strerror(err));
	else
		ragg__shm_debug(ep->dev, "%s: connection closed by peer", ep->base.peer);
	ragg__shm_ep_fail(ep, err && err != ECONNRESET ? -err : RAGG_ERR_PEER_LOST);
}

static void on_err(struct ragg__shm_ep *ep, const struct ragg__shm_pkt *p)
{
	int rc = p->status;
	if (rc >= 0 || rc < -4095) {
		ragg__shm_refuse(ep, RAGG_ERR_PROTO, "error packet without a valid status");
		return;
	}
	ragg__shm_log(ep->dev, rc == -ECONNREFUSED ? RAGG_LOG_INFO : RAGG_LOG_ERROR,
	              "%s: peer dropped the connection: %s (%s)", ep->base.peer, ragg_strerror(rc),
	              ragg_strerror_name(rc));
	ragg__shm_ep_fail(ep, rc);
}

static void dispatch(struct ragg__shm_ep *ep, const struct ragg__shm_pkt *p, int *fds)
{
	enum ragg__shm_ep_state st = ep->state;

	switch (p->type) {
	case RAGG__SHM_HELLO:
		if (st != RAGG__SHM_EP_HELLO_WAIT)
			break;
		ragg__shm_on_hello(ep, p, fds);
		return;
	case RAGG__SHM_ACCEPT:
		if (st != RAGG__SHM_EP_HELLO_SENT)
			break;
		ragg__shm_on_accept(ep, p, fds);
		return;
	case RAGG__SHM_MAP_REQ:
		if (st != RAGG__SHM_EP_CONNECTED || p->nfds)
			break;
		ragg__shm_on_map_req(ep, p);
		return;
	case RAGG__SHM_MAP_REP:
		if (st != RAGG__SHM_EP_CONNECTED)
			break;
		ragg__shm_on_map_rep(ep, p, fds);
		return;
	case RAGG__SHM_ERR:
		if (st == RAGG__SHM_EP_HELLO_WAIT || p->nfds)
			break;
		on_err(ep, p);
		return;
	default:
		break;
	}
	char why[64];
	snprintf(why, sizeof(why), "unexpected %s packet", type_name(p->type));
	ragg__shm_refuse(ep, RAGG_ERR_PROTO, why);
}

void ragg__shm_ctl_rx(struct ragg__shm_ep *ep)
{
	/* Bounded, so a chatty peer cannot keep poll() to itself; what is
	 * left keeps the socket readable for the next one. */
	for (int pkts = 0; pkts < 64 && ep->fd >= 0 && ep->state != RAGG__SHM_EP_FAILED; pkts++) {
		union {
			char buf[CMSG_SPACE(sizeof(int) * RAGG__SHM_PKT_FDS_MAX)];
			struct cmsghdr align;
		} u;
		struct ragg__shm_pkt p;
		struct iovec iov = { .iov_base = &p, .iov_len = sizeof(p) };
		struct msghdr mh = { .msg_iov = &iov,
			             .msg_iovlen = 1,
			             .msg_control = u.buf,
			             .msg_controllen = sizeof(u.buf) };
		int fds[RAGG__SHM_PKT_FDS_MAX] = { -1, -1, -1 }, nfds = 0;

		ssize_t n = recvmsg(ep->fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				rx_closed(ep, errno);
			return;
		}
		if (n == 0) {
			rx_closed(ep, 0);
			return;
		}
		bool extra = false;
		for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
			if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
				continue;
			size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
			for (size_t i = 0; i < k; i++) {
				int fd;
				memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
				if (nfds < RAGG__SHM_PKT_FDS_MAX) {
					fds[nfds++] = fd;
				} else {
					close(fd);
					extra = true;
				}
			}
		}
		if ((mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) || extra || n != (ssize_t)sizeof(p) ||
		    p.magic != RAGG__SHM_MAGIC) {
			ragg__shm_refuse(ep, RAGG_ERR_PROTO, "malformed control packet");
		} else if (p.version != RAGG__SHM_VERSION) {
			char why[64];
			snprintf(why, sizeof(why), "peer speaks version %u, we speak %u", p.version,
			         RAGG__SHM_VERSION);
			ragg__shm_refuse(ep, RAGG_ERR_VERSION, why);
		} else if (p.nfds != nfds) {
			ragg__shm_refuse(ep, RAGG_ERR_PROTO, "control packet with the wrong fds");
		} else {
			dispatch(ep, &p, fds);
		}
		/* Handlers take the fds they keep (set to -1). */
		for (int i = 0; i < nfds; i++)
			if (fds[i] >= 0)
				close(fds[i]);
	}
}
