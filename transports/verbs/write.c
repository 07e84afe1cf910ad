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
#include <stdlib.h>
#include <string.h>

#include "verbs.h"

static inline uint32_t credits(const struct ragg__verbs_ep *ep)
{
	return ep->depth - (uint32_t)(ep->sq_posted - ep->sq_done);
}

/* Signal when the caller wants to hear of this WR, every signal_interval
 * WRs, and whenever fewer than signal_interval credits would be left. */
static inline unsigned signal_flag(struct ragg__verbs_ep *ep, bool force, uint32_t left_after)
{
	uint32_t iv = ep->dev->signal_interval;
	if (force || ++ep->unsignalled >= iv || left_after < iv) {
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

/*
 * An unregistered source longer than inline data is copied into the
 * endpoint's bounce ring (allocated and registered on first use), a FIFO of
 * bytes released as the send queue completes: each WR records the ring's
 * tail after it, and the CQE of WR s moves the head to WR s's record. WRs
 * that use the ring are always signalled, so its space always comes back.
 * The copy makes this the slow path; registered memory is zero-copy.
 */
static int bounce_copy(struct ragg__verbs_ep *ep, const void *src, size_t len, uint64_t *addr,
                       uint32_t *lkey)
{
	struct ragg__verbs_dev *dev = ep->dev;
	const size_t cap = dev->cfg.bounce_size;
	if (len > cap || len > dev->max_msg)
		return -EINVAL;
	if (!ep->bounce) {
		int rc;
		uint8_t *b = aligned_alloc(4096, (cap + 4095) & ~(size_t)4095);
		if (!b)
			return -ENOMEM;
		ep->bounce_mr =
		    ragg__verbs_reg(dev, b, cap, IBV_ACCESS_LOCAL_WRITE, "bounce buffer", &rc);
		if (!ep->bounce_mr) {
			free(b);
			return rc;
		}
		ep->bounce = b;
	}
	uint64_t pos = ep->bounce_tail;
	size_t at = (size_t)(pos % cap);
	if (at + len > cap) { /* never wrap inside a write */
		pos += cap - at;
		at = 0;
	}
	if (pos + len - ep->bounce_head > cap)
		return -EAGAIN;
	memcpy(ep->bounce + at, src, len);
	ep->bounce_tail = pos + len;
	*addr = (uintptr_t)(ep->bounce + at);
	*lkey = ep->bounce_mr->lkey;
	return 0;
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
	if (ragg__unlikely((flags & ~(RAGG_TP_WRITE_IMM | RAGG_TP_WRITE_SIGNAL)) ||
	                   (len && !laddr)))
		return -EINVAL;
	uint64_t raddr, rlen;
	uint32_t rkey;
	if (ragg__unlikely(!ragg__verbs_rdesc_unpack(remote, &raddr, &rkey, &rlen)))
		return -EINVAL;
	if (ragg__unlikely(roff > rlen || len > rlen - roff))
		return RAGG_ERR_BOUNDS;
	uint32_t lkey = 0;
	bool inl = len && len <= dev->max_inline;
	if (lmr) {
		const struct ragg__verbs_mr *m = ragg__verbs_mr(lmr);
		const char *a = laddr, *base = lmr->addr;
		if (ragg__unlikely(a < base || (size_t)(a - base) > lmr->len ||
		                   len > lmr->len - (size_t)(a - base)))
			return -EINVAL;
		lkey = m->mr->lkey;
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
		uint64_t addr = (uintptr_t)laddr;
		uint64_t tail_before = ep->bounce_tail;
		bool bounced = !lmr && !inl && len;
		if (ragg__unlikely(bounced)) {
			int rc = bounce_copy(ep, laddr, len, &addr, &lkey);
			if (rc)
				return rc;
		}
		uint64_t seq = ep->sq_posted;
		struct ibv_sge sge = {.addr = addr, .length = (uint32_t)len, .lkey = lkey};
		struct ibv_send_wr wr = {
		    .wr_id = seq,
		    .sg_list = len ? &sge : NULL,
		    .num_sge = len ? 1 : 0,
		    .opcode = (flags & RAGG_TP_WRITE_IMM) ? IBV_WR_RDMA_WRITE_WITH_IMM
		                                          : IBV_WR_RDMA_WRITE,
		    .send_flags =
		        signal_flag(ep, report || bounced, room - 1) | (inl ? IBV_SEND_INLINE : 0),
		    .imm_data = htonl(imm),
		    .wr.rdma = {.remote_addr = raddr + roff, .rkey = rkey},
		};
		ep->wri[seq % ep->depth] = (struct ragg__verbs_wri){
		    .cookie = cookie, .bounce_tail = ep->bounce_tail, .report = report};
		int err = ibv_post_send(ep->qp, &wr, &bad);
		if (ragg__unlikely(err)) {
			ep->bounce_tail = tail_before;
			return post_failed(ep, &wr, bad, err, unsignalled_before);
		}
		ep->sq_posted++;
		return 0;
	}
	if (!lmr)
		return -EINVAL; /* unregistered and longer than one WR */

	/*
	 * Longer than one WR may carry: consecutive WRs, the immediate (and
	 * the caller's signal) on the last, which RC delivers last. The
	 * receiver's completion only knows the last WR's length, so a
	 * length note (a send with immediate, see progress.c) goes just
	 * before it. All or nothing, so a full queue never leaves half a
	 * write posted.
	 */
	uint32_t nseg = (uint32_t)((len + dev->max_msg - 1) / dev->max_msg);
	bool with_imm = flags & RAGG_TP_WRITE_IMM;
	uint32_t nwr = nseg + with_imm;
	if (nwr > room)
		return -EAGAIN;
	uint8_t note_inline[8]; /* inline data is copied at post time */
	bool note_inl = dev->max_inline >= sizeof(note_inline);
	for (uint32_t i = 0, seg = 0; i < nwr; i++) {
		bool last = i + 1 == nwr;
		uint64_t seq = ep->sq_posted + i;
		struct ibv_sge *sge = &dev->ssge[i];
		struct ibv_send_wr *wr = &dev->swr[i];
		struct ragg__verbs_wri *w = &ep->wri[seq % ep->depth];
		if (with_imm && i + 2 == nwr) {
			uint8_t *note = note_inl ? note_inline : ep->msgs[seq % ep->depth];
			for (int b = 0; b < 8; b++)
				note[b] = (uint8_t)((uint64_t)len >> (8 * b));
			*sge = (struct ibv_sge){.addr = (uintptr_t)note,
			                        .length = 8,
			                        .lkey = note_inl ? 0 : ep->msgs_mr->lkey};
			*wr = (struct ibv_send_wr){
			    .wr_id = seq,
			    .next = &dev->swr[i + 1],
			    .sg_list = sge,
			    .num_sge = 1,
			    .opcode = IBV_WR_SEND_WITH_IMM,
			    .send_flags = signal_flag(ep, false, room - i - 1) |
			                  (note_inl ? IBV_SEND_INLINE : 0),
			    .imm_data = htonl(RAGG__VERBS_LEN_NOTE),
			};
			*w = (struct ragg__verbs_wri){.bounce_tail = ep->bounce_tail};
			continue;
		}
		uint64_t off = (uint64_t)seg++ * dev->max_msg;
		uint64_t n = len - off < dev->max_msg ? len - off : dev->max_msg;
		*sge = (struct ibv_sge){
		    .addr = (uintptr_t)laddr + off, .length = (uint32_t)n, .lkey = lkey};
		*wr = (struct ibv_send_wr){
		    .wr_id = seq,
		    .next = last ? NULL : &dev->swr[i + 1],
		    .sg_list = sge,
		    .num_sge = 1,
		    .opcode = last && with_imm ? IBV_WR_RDMA_WRITE_WITH_IMM : IBV_WR_RDMA_WRITE,
		    .send_flags = signal_flag(ep, last && report, room - i - 1),
		    .imm_data = htonl(imm),
		    .wr.rdma = {.remote_addr = raddr + roff + off, .rkey = rkey},
		};
		*w = (struct ragg__verbs_wri){
		    .cookie = cookie, .bounce_tail = ep->bounce_tail, .report = last && report};
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
	ep->wri[seq % ep->depth] = (struct ragg__verbs_wri){.bounce_tail = ep->bounce_tail};
	struct ibv_send_wr *bad = NULL;
	int err = ibv_post_send(ep->qp, &wr, &bad);
	if (err)
		return post_failed(ep, &wr, bad, err, unsignalled_before);
	ep->sq_posted++;
	return 0;
}
