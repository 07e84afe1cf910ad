/*
 * The send path. A write is a ring entry: the header encoded in place and a
 * pointer to the caller's payload, written with one sendmsg() gathering as
 * many queued frames as fit, straight from the caller's memory. A frame the
 * kernel takes only partly stays at the ring's `send` index with tx_off
 * saying how far it got; EPOLLOUT is armed only while the ring holds unsent
 * bytes, so an idle or keeping-up endpoint costs no epoll_ctl.
 *
 * Completion means "handed to the kernel": the caller may reuse its buffer,
 * and TCP delivers it in order unless the connection dies, which the peer
 * and we both see as DISCONNECTED.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "tcp.h"

/* Frames gathered into one sendmsg(). */
#define TX_BATCH 64

int ragg__tcp_tx_alloc(struct ragg__tcp_ep *ep, size_t depth)
{
	size_t msgs = depth < 64 ? depth : 64;
	ep->tx = calloc(depth, sizeof(*ep->tx));
	ep->msgs = calloc(msgs, sizeof(*ep->msgs));
	if (!ep->tx || !ep->msgs) {
		free(ep->tx);
		free(ep->msgs);
		ep->tx = NULL;
		ep->msgs = NULL;
		return -ENOMEM;
	}
	ep->tx_mask = (uint32_t)depth - 1;
	ep->msg_mask = (uint32_t)msgs - 1;
	return 0;
}

static bool tx_full(const struct ragg__tcp_ep *ep)
{
	return ep->tx_tail - ep->tx_head > ep->tx_mask;
}

static bool msg_full(const struct ragg__tcp_ep *ep)
{
	return ep->msg_tail - ep->msg_head > ep->msg_mask;
}

/* Append an entry; the caller checked there is room. Starts writing at
 * once when nothing is queued ahead of it, which is what keeps small
 * ping-pongs at one syscall each. */
static void tx_push(struct ragg__tcp_ep *ep, const struct ragg__tcp_frame *f, const void *buf,
                    bool signal, bool msg, uint64_t cookie)
{
	struct ragg__tcp_txe *e = &ep->tx[ep->tx_tail & ep->tx_mask];
	ragg__tcp_frame_encode(f, e->hdr);
	e->buf = buf;
	e->len = (size_t)f->length;
	e->signal = signal;
	e->msg = msg;
	e->sealed = ep->seal != NULL;
	e->cookie = cookie;
	bool idle = ep->tx_send == ep->tx_tail && !ragg__tcp_seal_staged(ep);
	ep->tx_tail++;
	if (idle && ep->state != RAGG__TCP_EP_CONNECTING && ep->fd >= 0)
		ragg__tcp_flush(ep);
}

int ragg__tcp_queue_ctrl(struct ragg__tcp_ep *ep, uint8_t type, uint32_t imm, const void *buf,
                         size_t len)
{
	if (tx_full(ep) || msg_full(ep))
		return -EAGAIN;
	uint8_t *slot = ep->msgs[ep->msg_tail++ & ep->msg_mask];
	if (len)
		memcpy(slot, buf, len);
	struct ragg__tcp_frame f = { .type = type, .imm = imm, .length = len };
	tx_push(ep, &f, slot, false, true, 0);
	return 0;
}

static int not_connected(const struct ragg__tcp_ep *ep)
{
	if (ep->state == RAGG__TCP_EP_FAILED)
		return ep->status ? ep->status : RAGG_ERR_PEER_LOST;
	return -ENOTCONN;
}

int ragg__tcp_write_imm(struct ragg_tp_ep *e, const void *laddr, struct ragg_tp_mr *lmr,
                        const struct ragg_tp_rdesc *remote, uint64_t roff, size_t len, uint32_t imm,
                        unsigned flags, uint64_t cookie)
{
	struct ragg__tcp_ep *ep = ragg__tcp_ep(e);
	struct ragg__tcp_rdesc rd;

	if (ragg__unlikely(ep->state != RAGG__TCP_EP_CONNECTED))
		return not_connected(ep);
	if (ragg__unlikely(flags & ~(RAGG_TP_WRITE_IMM | RAGG_TP_WRITE_SIGNAL) || (len && !laddr)))
		return -EINVAL;
	if (ragg__unlikely(ragg__tcp_rdesc_unpack(remote, &rd))) {
		ragg__tcp_error(ep->dev, "%s: write_imm: not a tcp region descriptor",
		                ep->base.peer);
		return -EINVAL;
	}
	/* The receiver checks again; this only saves a dropped connection. */
	if (ragg__unlikely(!ragg__tp_in_bounds(rd.length, roff, len))) {
		ragg__tcp_error(ep->dev,
		                "%s: write_imm of %zu bytes at offset %" PRIu64
		                " past the end of a %" PRIu64 "-byte region",
		                ep->base.peer, len, roff, rd.length);
		return RAGG_ERR_BOUNDS;
	}
	if (ragg__unlikely((uint64_t)len > RAGG__TCP_MAX_WRITE))
		return -EINVAL;
	if (ragg__unlikely(lmr && len && !ragg__tp_mr_holds(lmr, laddr, len)))
		return -EINVAL;
	if (tx_full(ep))
		return -EAGAIN;
	struct ragg__tcp_frame f = {
		.type = RAGG__TCP_WRITE,
		.flags = flags & RAGG_TP_WRITE_IMM ? RAGG__TCP_F_IMM : 0,
		.imm = imm,
		.region = rd.region,
		.key = rd.key,
		.offset = roff,
		.length = len,
	};
	tx_push(ep, &f, laddr, flags & RAGG_TP_WRITE_SIGNAL, false, cookie);
	return 0;
}

int ragg__tcp_send(struct ragg_tp_ep *e, const void *buf, size_t len)
{
	struct ragg__tcp_ep *ep = ragg__tcp_ep(e);

	if (ep->state != RAGG__TCP_EP_CONNECTED)
		return not_connected(ep);
	if (len > RAGG_TP_MSG_MAX)
		return -EMSGSIZE;
	if (len && !buf)
		return -EINVAL;
	return ragg__tcp_queue_ctrl(ep, RAGG__TCP_MSG, 0, buf, len);
}

/* Retire written entries up to the first one owing a WRITE_DONE. */
static void tx_retire(struct ragg__tcp_ep *ep)
{
	while (ep->tx_head != ep->tx_send) {
		struct ragg__tcp_txe *e = &ep->tx[ep->tx_head & ep->tx_mask];
		if (e->signal)
			break;
		if (e->msg)
			ep->msg_head++;
		ep->tx_head++;
	}
}

void ragg__tcp_flush(struct ragg__tcp_ep *ep)
{
	struct iovec iov[2 * TX_BATCH];

	if (ep->seal) {
		int rc = ragg__tcp_seal_flush(ep);
		if (rc) {
			ragg__tcp_info(ep->dev, "%s: send: %s", ep->base.peer, strerror(-rc));
			ragg__tcp_ep_fail(ep, rc == -EPIPE || rc == -ECONNRESET ? RAGG_ERR_PEER_LOST
			                                                        : rc);
			return;
		}
		goto done;
	}
	while (ep->tx_send != ep->tx_tail) {
		size_t total = 0;
		int n = 0;
		for (uint32_t i = ep->tx_send; i != ep->tx_tail && n + 2 <= 2 * TX_BATCH; i++) {
			struct ragg__tcp_txe *e = &ep->tx[i & ep->tx_mask];
			size_t skip = i == ep->tx_send ? ep->tx_off : 0;
			if (skip < RAGG__TCP_HDR_SIZE) {
				iov[n].iov_base = e->hdr + skip;
				iov[n++].iov_len = RAGG__TCP_HDR_SIZE - skip;
				total += RAGG__TCP_HDR_SIZE - skip;
				skip = 0;
			} else {
				skip -= RAGG__TCP_HDR_SIZE;
			}
			if (e->len > skip) {
				iov[n].iov_base = (uint8_t *)e->buf + skip;
				iov[n++].iov_len = e->len - skip;
				total += e->len - skip;
			}
			/* sendmsg() returns ssize_t: stop gathering well before. */
			if (total > SSIZE_MAX / 2)
				break;
		}
		struct msghdr mh = { .msg_iov = iov, .msg_iovlen = (size_t)n };
		ssize_t w = sendmsg(ep->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			int rc =
			    errno == EPIPE || errno == ECONNRESET ? RAGG_ERR_PEER_LOST : -errno;
			ragg__tcp_info(ep->dev, "%s: send: %s", ep->base.peer, strerror(errno));
			ragg__tcp_ep_fail(ep, rc);
			return;
		}
		/* Advance over what the kernel took. */
		size_t done = (size_t)w;
		while (done) {
			struct ragg__tcp_txe *e = &ep->tx[ep->tx_send & ep->tx_mask];
			size_t left = RAGG__TCP_HDR_SIZE + e->len - ep->tx_off;
			if (done < left) {
				ep->tx_off += done;
				break;
			}
			done -= left;
			ep->tx_off = 0;
			ep->tx_send++;
		}
		if ((size_t)w < total)
			break; /* the socket is full: the next try would EAGAIN */
	}
done:;
	uint32_t want =
	    EPOLLIN | (ep->tx_send != ep->tx_tail || ragg__tcp_seal_staged(ep) ? EPOLLOUT : 0);
	if (ep->state != RAGG__TCP_EP_CONNECTING)
		ragg__tcp_ep_set_mask(ep, want);
	tx_retire(ep);
	if (ep->tx_head != ep->tx_send)
		ragg__tcp_pending_add(ep, 0);
	/* The refusal is out: the endpoint is done, and says so, so whoever
	 * rejected it knows to close it. */
	if (ep->state == RAGG__TCP_EP_REJECTED && ep->tx_send == ep->tx_tail &&
	    !ragg__tcp_seal_staged(ep))
		ragg__tcp_ep_fail(ep, -ECONNREFUSED);
}

void ragg__tcp_tx_report(struct ragg__tcp_ep *ep, struct ragg__tcp_out *out)
{
	bool failed = ep->state == RAGG__TCP_EP_FAILED;
	/* On failure the unsent rest completes with an error, as a flushed
	 * work request does, so the caller learns the fate of every signalled
	 * buffer. */
	uint32_t end = failed ? ep->tx_tail : ep->tx_send;

	while (ep->tx_head != end) {
		struct ragg__tcp_txe *e = &ep->tx[ep->tx_head & ep->tx_mask];
		if (e->signal) {
			if (ragg__tcp_out_full(out))
				return;
			bool sent = (int32_t)(ep->tx_send - ep->tx_head) > 0;
			struct ragg_tp_event *ev =
			    ragg__tcp_out_next(out, ep, RAGG_TP_EV_WRITE_DONE);
			ev->cookie = e->cookie;
			ev->len = e->len;
			ev->status = sent ? 0 : -ECANCELED;
		}
		if (e->msg)
			ep->msg_head++;
		ep->tx_head++;
	}
	if (failed) {
		ep->tx_send = ep->tx_tail;
		ep->tx_off = 0;
	}
}
