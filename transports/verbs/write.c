/*
 * The data path: one-sided writes (with or without immediate) and control
 * messages, posted on the endpoint's RC send queue. See verbs.h for the
 * credit and signalling rules; nothing here allocates or blocks.
 *
 * The immediate travels in network byte order (htonl here, ntohl at the
 * receiver), so peers of either endianness agree on its value.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <string.h>

#include "verbs.h"

static inline uint32_t credits(const struct ragg__verbs_ep *ep)
{
	return ep->depth - (uint32_t)(ep->sq_posted - ep->sq_done);
}

/* Signal when the caller wants to hear of this WR, every signal_interval
 * WRs, and whenever fewer than signal_interval credits would be left. */
static inline unsigned signal_flag(struct ragg__verbs_ep *ep, bool report, uint32_t left_after)
{
	uint32_t iv = ep->dev->signal_interval;
	if (report || ++ep->unsignalled >= iv || left_after < iv) {
		ep->unsignalled = 0;
		return IBV_SEND_SIGNALED;
	}
	return 0;
}

static int not_connected(const struct ragg__verbs_ep *ep)
{
	if (ep->state == RAGG__VERBS_EP_FAILED)
		return RAGG_ERR_PEER_LOST;
	return -ENOTCONN;
}

/* ibv_post_send failed: account for the WRs that did go out (bad points
 * into the chain at the first that did not). */
static int post_failed(struct ragg__verbs_ep *ep, struct ibv_send_wr *first,
                       struct ibv_send_wr *bad, int err, uint32_t unsignalled_before)
{
	uint32_t posted = 0;
	for (struct ibv_send_wr *w = first; w && w != bad; w = w->next)
		posted++;
	ep->sq_posted += posted;
	if (!posted)
		ep->unsignalled = unsignalled_before;
	/* ENOMEM: the provider thinks the queue is full; that is the same
	 * "try again" as running out of credits. */
	if (err == ENOMEM && !posted)
		return -EAGAIN;
	ragg__verbs_error(ep->dev, "posting to %s failed: %s", ep->base.peer, strerror(err));
	return err ? -err : -EIO;
}

int ragg__verbs_write_imm(struct ragg_tp_ep *e, const void *laddr, struct ragg_tp_mr *lmr,
                          const struct ragg_tp_rdesc *remote, uint64_t roff, size_t len,
                          uint32_t imm, unsigned flags, uint64_t cookie)
{
	struct ragg__verbs_ep *ep = ragg__verbs_ep(e);
	struct ragg__verbs_dev *dev = ep->dev;

	if (ragg__unlikely(ep->state != RAGG__VERBS_EP_CONNECTED))
		return not_connected(ep);
	uint64_t raddr, rlen;
	uint32_t rkey;
	if (ragg__unlikely(!ragg__verbs_rdesc_unpack(remote, &raddr, &rkey, &rlen)))
		return -EINVAL;
	if (ragg__unlikely(roff > rlen || len > rlen - roff))
		return RAGG_ERR_BOUNDS;
	uint32_t lkey = 0;
	if (lmr) {
		const struct ragg__verbs_mr *m = ragg__verbs_mr(lmr);
		const char *a = laddr, *base = lmr->addr;
		if (ragg__unlikely(a < base || (size_t)(a - base) > lmr->len ||
		                   len > lmr->len - (size_t)(a - base)))
			return -EINVAL;
		lkey = m->mr->lkey;
	} else if (ragg__unlikely(len > dev->max_inline)) {
		/* Only inline data may come from unregistered memory. */
		return -EINVAL;
	}
	if (ragg__unlikely(len > dev->max_write))
		return -EMSGSIZE;

	uint32_t room = credits(ep);
	bool report = flags & RAGG_TP_WRITE_SIGNAL;
	uint32_t unsignalled_before = ep->unsignalled;
	struct ibv_send_wr *bad = NULL;

	if (ragg__likely(len <= dev->max_msg)) {
		if (ragg__unlikely(room == 0))
			return -EAGAIN;
		uint64_t seq = ep->sq_posted;
		struct ibv_sge sge = {.addr = (uintptr_t)laddr, .length = (uint32_t)len, .lkey = lkey};
		struct ibv_send_wr wr = {
			.wr_id = seq,
			.sg_list = len ? &sge : NULL,
			.num_sge = len ? 1 : 0,
			.opcode = (flags & RAGG_TP_WRITE_IMM) ? IBV_WR_RDMA_WRITE_WITH_IMM
			                                      : IBV_WR_RDMA_WRITE,
			.send_flags = signal_flag(ep, report, room - 1) |
			              (len && len <= dev->max_inline ? IBV_SEND_INLINE : 0),
			.imm_data = htonl(imm),
			.wr.rdma = {.remote_addr = raddr + roff, .rkey = rkey},
		};
		struct ragg__verbs_wri *w = &ep->wri[seq % ep->depth];
		w->cookie = cookie;
		w->report = report;
		int err = ibv_post_send(ep->qp, &wr, &bad);
		if (ragg__unlikely(err))
			return post_failed(ep, &wr, bad, err, unsignalled_before);
		ep->sq_posted++;
		return 0;
	}

	/* Longer than one WR may carry: consecutive WRs, the immediate (and
	 * the caller's signal) on the last, which RC delivers last. All or
	 * nothing, so a full queue never leaves half a write posted. */
	uint32_t nwr = (uint32_t)((len + dev->max_msg - 1) / dev->max_msg);
	if (nwr > room)
		return -EAGAIN;
	for (uint32_t i = 0; i < nwr; i++) {
		uint64_t off = (uint64_t)i * dev->max_msg;
		uint64_t n = len - off < dev->max_msg ? len - off : dev->max_msg;
		bool last = i + 1 == nwr;
		uint64_t seq = ep->sq_posted + i;
		struct ibv_sge *sge = &dev->ssge[i];
		struct ibv_send_wr *wr = &dev->swr[i];
		*sge = (struct ibv_sge){.addr = (uintptr_t)laddr + off, .length = (uint32_t)n,
		                        .lkey = lkey};
		*wr = (struct ibv_send_wr){
			.wr_id = seq,
			.next = last ? NULL : &dev->swr[i + 1],
			.sg_list = sge,
			.num_sge = 1,
			.opcode = last && (flags & RAGG_TP_WRITE_IMM) ? IBV_WR_RDMA_WRITE_WITH_IMM
			                                              : IBV_WR_RDMA_WRITE,
			.send_flags = signal_flag(ep, last && report, room - i - 1),
			.imm_data = htonl(imm),
			.wr.rdma = {.remote_addr = raddr + roff + off, .rkey = rkey},
		};
		struct ragg__verbs_wri *w = &ep->wri[seq % ep->depth];
		w->cookie = cookie;
		w->report = last && report;
	}
	int err = ibv_post_send(ep->qp, dev->swr, &bad);
	if (err)
		return post_failed(ep, dev->swr, bad, err, unsignalled_before);
	ep->sq_posted += nwr;
	return 0;
}

int ragg__verbs_send(struct ragg_tp_ep *e, const void *buf, size_t len)
{
	struct ragg__verbs_ep *ep = ragg__verbs_ep(e);
	struct ragg__verbs_dev *dev = ep->dev;

	if (ep->state != RAGG__VERBS_EP_CONNECTED)
		return not_connected(ep);
	if (len > RAGG_TP_MSG_MAX || (len && !buf))
		return -EMSGSIZE;
	uint32_t room = credits(ep);
	if (room == 0)
		return -EAGAIN;
	uint64_t seq = ep->sq_posted;
	struct ibv_sge sge = {.addr = (uintptr_t)buf, .length = (uint32_t)len};
	unsigned inl = IBV_SEND_INLINE;
	if (len > dev->max_inline) {
		/* The caller's buffer is free on return; the copy lives in the
		 * slot of this WR number, reusable once its credit is back. */
		uint8_t *slot = ep->msgs[seq % ep->depth];
		memcpy(slot, buf, len);
		sge.addr = (uintptr_t)slot;
		sge.lkey = ep->msgs_mr->lkey;
		inl = 0;
	}
	uint32_t unsignalled_before = ep->unsignalled;
	struct ibv_send_wr wr = {
		.wr_id = seq,
		.sg_list = len ? &sge : NULL,
		.num_sge = len ? 1 : 0,
		.opcode = IBV_WR_SEND,
		.send_flags = signal_flag(ep, false, room - 1) | (len ? inl : 0),
	};
	ep->wri[seq % ep->depth] = (struct ragg__verbs_wri){0};
	struct ibv_send_wr *bad = NULL;
	int err = ibv_post_send(ep->qp, &wr, &bad);
	if (err)
		return post_failed(ep, &wr, bad, err, unsignalled_before);
	ep->sq_posted++;
	return 0;
}
