/*
 * Connection setup and teardown.
 *
 * Handshake: the connector sends HELLO carrying its private data; the
 * acceptor reports CONNECT_REQUEST and the core answers with accept(), which
 * sends ACCEPT with the acceptor's private data, or reject(), which sends
 * ERR(-ECONNREFUSED) and then reports the endpoint DISCONNECTED (status
 * -ECONNREFUSED) so the core, holding nothing else of it, closes it. Both
 * frames are ordinary frames of the stream, so a
 * connector may queue writes as soon as it sees CONNECTED and the acceptor
 * right after accept(): they follow the handshake on the same socket.
 *
 * Until its HELLO is complete an accepted socket is the transport's own
 * business: the core never hears of a peer that sends garbage, a wrong
 * version or nothing at all; such sockets are logged and dropped (the last
 * after params.timeout_ms).
 */
#include "config.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tcp.h"

static struct ragg__tcp_ep *ep_new(struct ragg__tcp_dev *dev, int fd)
{
	struct ragg__tcp_ep *ep = calloc(1, sizeof(*ep));
	if (!ep)
		return NULL;
	ep->base.dev = &dev->base;
	ep->dev = dev;
	ep->fd = fd;
	ragg__tcp_list_init(&ep->pend);
	if (ragg__tcp_tx_alloc(ep, dev->cfg.queue_depth)) {
		free(ep);
		return NULL;
	}
	ragg__tcp_list_add_tail(&dev->eps, &ep->link);
	return ep;
}

static void set_deadline(struct ragg__tcp_ep *ep)
{
	if (ep->dev->base.params.timeout_ms <= 0)
		return;
	ep->deadline_ms = ragg__tp_now_ms() + ep->dev->base.params.timeout_ms;
	ep->dev->handshakes++;
}

void ragg__tcp_ep_handshake_done(struct ragg__tcp_ep *ep)
{
	if (!ep->deadline_ms)
		return;
	ep->deadline_ms = 0;
	ep->dev->handshakes--;
}

void ragg__tcp_ep_free(struct ragg__tcp_ep *ep)
{
	ragg__tcp_ep_handshake_done(ep);
	if (ep->fd >= 0)
		close(ep->fd);
	ragg__tcp_list_del(&ep->pend);
	ragg__tcp_list_del(&ep->link);
	ragg__tcp_seal_free(ep);
	free(ep->tx);
	free(ep->msgs);
	free(ep);
}

void ragg__tcp_ep_fail(struct ragg__tcp_ep *ep, int status)
{
	struct ragg__tcp_dev *dev = ep->dev;

	if (ep->state == RAGG__TCP_EP_FAILED)
		return;
	ragg__tcp_ep_handshake_done(ep);
	if (ep->fd >= 0) {
		/* The socket leaves the epoll set with its last reference. */
		close(ep->fd);
		ep->fd = -1;
	}
	ep->epoll_mask = 0;
	ep->state = RAGG__TCP_EP_FAILED;
	ep->status = status;
	if (ep->exposed) {
		ragg__tcp_pending_add(ep, RAGG__TCP_REPORT_DISCONNECTED);
	} else {
		/* Freed at the end of poll(): this poll may still hold an
		 * epoll event that points here. */
		ragg__tcp_list_del(&ep->pend);
		ragg__tcp_list_del(&ep->link);
		ragg__tcp_list_add_tail(&dev->dead, &ep->link);
	}
}

int ragg__tcp_listen(struct ragg_tp_dev *d, const char *host_port, char *addr, size_t addr_len)
{
	struct ragg__tcp_dev *dev = ragg__tcp_dev(d);
	char host[NI_MAXHOST], port[NI_MAXSERV], out[RAGG_TP_ADDR_MAX];
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE };
	struct addrinfo *res = NULL, *ai;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	int fd = -1, rc;

	if (dev->lfd >= 0)
		return -EBUSY;
	rc = ragg__tcp_addr_split(host_port, host, sizeof(host), port, sizeof(port));
	if (rc) {
		ragg__tcp_error(dev, "listen: bad address \"%s\"", host_port ? host_port : "");
		return rc;
	}
	if (!strcmp(host, "*"))
		host[0] = '\0';
	if (!host[0])
		hints.ai_family = AF_INET;
	rc = getaddrinfo(host[0] ? host : NULL, port[0] ? port : "0", &hints, &res);
	if (rc) {
		ragg__tcp_error(dev, "listen: %s: %s", host_port, gai_strerror(rc));
		return -EADDRNOTAVAIL;
	}
	rc = -EADDRNOTAVAIL;
	for (ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			rc = -errno;
			continue;
		}
		int one = 1;
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (ragg__tcp_sock_setup(dev, fd, false) == 0 &&
		    bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 &&
		    listen(fd, (int)dev->cfg.backlog) == 0)
			break;
		rc = -errno;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0) {
		ragg__tcp_error(dev, "listen on \"%s\": %s", host_port ? host_port : "",
		                strerror(-rc));
		return rc;
	}
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0) {
		rc = -errno;
		goto err_close;
	}
	ragg__tcp_addr_iface((struct sockaddr *)&ss, dev->device, sizeof(dev->device));
	rc = ragg__tcp_addr_format((struct sockaddr *)&ss, sl, out, sizeof(out));
	if (rc)
		goto err_close;
	if (!strcmp(dev->device, "any")) {
		/* "0.0.0.0:port" reaches nothing from another host: advertise an
		 * interface's address instead. */
		char adv[NI_MAXHOST], lport[NI_MAXSERV];
		snprintf(lport, sizeof(lport), "%s", strrchr(out, ':') + 1);
		rc = ragg__tcp_addr_advertise(dev, ss.ss_family, adv, sizeof(adv));
		if (rc)
			goto err_close;
		int n = snprintf(out, sizeof(out), ss.ss_family == AF_INET6 ? "[%s]:%s" : "%s:%s",
		                 adv, lport);
		if (n < 0 || (size_t)n >= sizeof(out)) {
			rc = -ENAMETOOLONG;
			goto err_close;
		}
	}
	if (!addr || strlen(out) >= addr_len) {
		rc = -ENAMETOOLONG;
		goto err_close;
	}
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = RAGG__TCP_TAG_LISTEN };
	if (epoll_ctl(dev->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		rc = -errno;
		goto err_close;
	}
	dev->lfd = fd;
	ragg__tp_accept_guard_init(&dev->accept_guard);
	snprintf(dev->laddr, sizeof(dev->laddr), "%s", out);
	strcpy(addr, out);
	ragg__tcp_info(dev, "listening on %s (%s)", out, dev->device);
	return 0;

err_close:
	ragg__tcp_error(dev, "listen on \"%s\": %s", host_port ? host_port : "", strerror(-rc));
	close(fd);
	return rc;
}

/* Start the TCP connect to the next resolved address. 0 when under way (or
 * done), negative when no address is left. */
static int connect_next(struct ragg__tcp_ep *ep)
{
	int rc = -ECONNREFUSED;

	while (ep->addr_next < ep->naddrs) {
		int i = ep->addr_next++;
		const struct sockaddr *sa = (const struct sockaddr *)&ep->addrs[i];
		if (ep->fd >= 0) {
			close(ep->fd);
			ep->fd = -1;
			ep->epoll_mask = 0;
		}
		int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			rc = -errno;
			continue;
		}
		ep->fd = fd;
		rc = ragg__tcp_sock_setup(ep->dev, fd, true);
		if (rc)
			continue;
		if (connect(fd, sa, ep->addr_lens[i]) == 0) {
			ragg__tcp_sock_established(ep->dev, fd);
			ep->state = RAGG__TCP_EP_HELLO_SENT;
			rc = ragg__tcp_ep_set_mask(ep, EPOLLIN);
			if (!rc)
				ragg__tcp_flush(ep);
			return rc;
		}
		rc = -errno;
		if (rc == -EINPROGRESS) {
			ep->state = RAGG__TCP_EP_CONNECTING;
			return ragg__tcp_ep_set_mask(ep, EPOLLOUT);
		}
		ragg__tcp_debug(ep->dev, "connect %s: %s", ep->base.peer, strerror(-rc));
	}
	return rc;
}

void ragg__tcp_connect_ready(struct ragg__tcp_ep *ep)
{
	int err = 0;
	socklen_t len = sizeof(err);

	if (getsockopt(ep->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		err = errno;
	if (!err) {
		ragg__tcp_sock_established(ep->dev, ep->fd);
		ep->state = RAGG__TCP_EP_HELLO_SENT;
		if (ragg__tcp_ep_set_mask(ep, EPOLLIN) == 0)
			ragg__tcp_flush(ep);
		return;
	}
	if (err == EINPROGRESS || err == EALREADY)
		return;
	ragg__tcp_debug(ep->dev, "connect %s: %s", ep->base.peer, strerror(err));
	int rc = connect_next(ep);
	if (rc) {
		ragg__tcp_info(ep->dev, "connect %s: %s", ep->base.peer, strerror(err));
		ragg__tcp_ep_fail(ep, -err);
	}
}

static int resolve(struct ragg__tcp_ep *ep, const char *addr)
{
	struct ragg__tcp_dev *dev = ep->dev;
	char host[NI_MAXHOST], port[NI_MAXSERV];
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV };
	struct addrinfo *res, *ai;
	int rc;

	rc = ragg__tcp_addr_split(addr, host, sizeof(host), port, sizeof(port));
	if (rc || !host[0] || !port[0]) {
		ragg__tcp_error(dev, "connect: bad address \"%s\" (want host:port)", addr);
		return -EINVAL;
	}
	rc = getaddrinfo(host, port, &hints, &res);
	if (rc) {
		ragg__tcp_error(dev, "connect %s: %s", addr, gai_strerror(rc));
		return rc == EAI_SYSTEM ? -errno : -EHOSTUNREACH;
	}
	for (ai = res; ai && ep->naddrs < RAGG__TCP_MAX_ADDRS; ai = ai->ai_next) {
		if (ai->ai_addrlen > sizeof(ep->addrs[0]))
			continue;
		memcpy(&ep->addrs[ep->naddrs], ai->ai_addr, ai->ai_addrlen);
		ep->addr_lens[ep->naddrs++] = ai->ai_addrlen;
	}
	freeaddrinfo(res);
	return ep->naddrs ? 0 : -EHOSTUNREACH;
}

int ragg__tcp_connect(struct ragg_tp_dev *d, const char *addr, const void *priv, size_t priv_len,
                      void *user, struct ragg_tp_ep **out)
{
	struct ragg__tcp_dev *dev = ragg__tcp_dev(d);
	struct ragg__tcp_ep *ep;
	int rc;

	if (!addr || !out || priv_len > RAGG_TP_PRIV_MAX || (priv_len && !priv))
		return -EINVAL;
	ep = ep_new(dev, -1);
	if (!ep)
		return -ENOMEM;
	ep->base.user = user;
	snprintf(ep->base.peer, sizeof(ep->base.peer), "%s", addr);
	rc = resolve(ep, addr);
	if (rc)
		goto err_free;
	/* The hello waits in the ring until the socket connects. */
	rc = ragg__tcp_queue_ctrl(ep, RAGG__TCP_HELLO, 0, priv, priv_len);
	if (rc)
		goto err_free;
	ep->exposed = true;
	set_deadline(ep);
	rc = connect_next(ep);
	if (rc) {
		/* Refused at once (loopback does that): still an event, as
		 * for any other peer. */
		ragg__tcp_info(dev, "connect %s: %s", addr, strerror(-rc));
		ragg__tcp_ep_fail(ep, rc);
	}
	*out = &ep->base;
	return 0;

err_free:
	ragg__tcp_ep_free(ep);
	return rc;
}

int ragg__tcp_accept(struct ragg_tp_ep *e, const void *priv, size_t priv_len)
{
	struct ragg__tcp_ep *ep = ragg__tcp_ep(e);
	int rc;

	if (ep->state == RAGG__TCP_EP_FAILED)
		return ep->status ? ep->status : RAGG_ERR_PEER_LOST;
	if (ep->state != RAGG__TCP_EP_REQUESTED || priv_len > RAGG_TP_PRIV_MAX ||
	    (priv_len && !priv))
		return -EINVAL;
	rc = ragg__tcp_queue_ctrl(ep, RAGG__TCP_ACCEPT, 0, priv, priv_len);
	if (rc)
		return rc;
	ep->state = RAGG__TCP_EP_CONNECTED;
	ep->priv_len = 0;
	ragg__tcp_pending_add(ep, RAGG__TCP_REPORT_CONNECTED);
	ragg__tcp_flush(ep);
	return 0;
}

int ragg__tcp_reject(struct ragg_tp_ep *e)
{
	struct ragg__tcp_ep *ep = ragg__tcp_ep(e);
	int rc;

	if (ep->state == RAGG__TCP_EP_FAILED)
		return 0;
	if (ep->state != RAGG__TCP_EP_REQUESTED)
		return -EINVAL;
	rc = ragg__tcp_queue_ctrl(ep, RAGG__TCP_ERR, (uint32_t)-ECONNREFUSED, NULL, 0);
	if (rc)
		return rc;
	ep->state = RAGG__TCP_EP_REJECTED;
	ragg__tcp_flush(ep);
	return 0;
}

void ragg__tcp_ep_close(struct ragg_tp_ep *e)
{
	if (!e)
		return;
	struct ragg__tcp_ep *ep = ragg__tcp_ep(e);
	/* Whatever fits into the socket now still reaches the peer (a
	 * rejection, a last message); the rest is dropped, as a destroyed
	 * queue pair would. */
	if (ep->fd >= 0 && ep->state != RAGG__TCP_EP_CONNECTING && ep->tx_send != ep->tx_tail)
		ragg__tcp_flush(ep);
	ragg__tcp_ep_free(ep);
}

/* Out of descriptors: shed what waits, take the listener out of the poll
 * set for a while (ragg__tcp_listener_resume puts it back) and say so at
 * most once per 10 s; see transports/util/accept.h. */
static void accept_exhausted(struct ragg__tcp_dev *dev, int err)
{
	char msg[256];
	if (ragg__tp_accept_pause_epoll(&dev->accept_guard, dev->epfd, dev->lfd,
	                                RAGG__TCP_TAG_LISTEN, ragg__tp_now_ms(), dev->laddr, err,
	                                msg, sizeof(msg)))
		ragg__tcp_warn(dev, "%s", msg);
}

void ragg__tcp_listener_resume(struct ragg__tcp_dev *dev, int64_t now)
{
	ragg__tp_accept_resume_epoll(&dev->accept_guard, dev->epfd, dev->lfd, RAGG__TCP_TAG_LISTEN,
	                             now);
}

void ragg__tcp_listener_ready(struct ragg__tcp_dev *dev)
{
	/* Bounded, so a connection storm cannot starve the data sockets. */
	for (int i = 0; i < 64; i++) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		int fd =
		    accept4(dev->lfd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE)
				accept_exhausted(dev, errno);
			else if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
				ragg__tcp_warn(dev, "accept on %s: %s", dev->laddr,
				               strerror(errno));
			return;
		}
		ragg__tp_accept_ok(&dev->accept_guard);
		struct ragg__tcp_ep *ep = ep_new(dev, fd);
		if (!ep) {
			ragg__tcp_warn(dev, "accept on %s: out of memory, dropping", dev->laddr);
			close(fd);
			continue;
		}
		if (ragg__tcp_addr_format((struct sockaddr *)&ss, sl, ep->base.peer,
		                          sizeof(ep->base.peer)))
			snprintf(ep->base.peer, sizeof(ep->base.peer), "?");
		ep->state = RAGG__TCP_EP_HELLO_WAIT;
		set_deadline(ep);
		if (ragg__tcp_sock_setup(dev, fd, true) || ragg__tcp_ep_set_mask(ep, EPOLLIN)) {
			ragg__tcp_ep_fail(ep, -EIO);
			continue;
		}
		ragg__tcp_sock_established(dev, fd);
		ragg__tcp_debug(dev, "%s: connection accepted, waiting for hello", ep->base.peer);
	}
}

void ragg__tcp_sweep(struct ragg__tcp_dev *dev, int64_t now)
{
	struct ragg__tcp_link *l, *next;

	for (l = dev->eps.next; l != &dev->eps; l = next) {
		next = l->next;
		struct ragg__tcp_ep *ep = ragg__container_of(l, struct ragg__tcp_ep, link);
		if (!ep->deadline_ms || now < ep->deadline_ms)
			continue;
		if (ep->exposed)
			ragg__tcp_error(dev, "connect %s: no answer within %d ms", ep->base.peer,
			                dev->base.params.timeout_ms);
		else
			ragg__tcp_warn(dev, "%s: no hello within %d ms, dropping", ep->base.peer,
			               dev->base.params.timeout_ms);
		ragg__tcp_ep_fail(ep, RAGG_ERR_TIMEOUT);
	}
}
