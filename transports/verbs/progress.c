/*
 * Progress: completions, receive re-posting, rdma_cm and async events, and
 * waiting for any of them.
 *
 * poll() order: re-post the receive buffers the previous poll() consumed
 * (its RECV data is valid until now, and re-posting here keeps the
 * ibv_post_srq_recv off the path from a landed write to the caller's
 * answer); turn ring CQEs into events (refilling the ring from the CQ in
 * batches); then, with the CQ seen empty, rdma_cm events; DISCONNECTED
 * events last, once the ring is empty, so a peer's last writes are reported
 * before its departure. Data that landed from an endpoint that failed but
 * whose DISCONNECTED is still owed is reported; after that, nothing.
 *
 * The rdma_cm channel and the async event fd cost a system call to look
 * at, so a poll() reads them only while connections are being set up, when
 * wait() saw them readable, or once every SLOW_CHECK_US; the clock is read
 * only every 256th call. The latency-critical loop (poll the CQ, find a
 * landed write) stays free of system calls.
 *
 * Completion channel: the CQ is armed (ibv_req_notify_cq) only by a
 * blocking wait(), which then polls the CQ once more to close the race with
 * a CQE that came before the arming. Each CQ event is retrieved with
 * ibv_get_cq_event and acknowledged in batches (ibv_ack_cq_events takes a
 * lock); close() acknowledges the rest before destroying the CQ.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>

#include "verbs.h"

#define TAG_COMP 0
#define TAG_CM 1
#define TAG_ASYNC 2
#define TAG_WAKE 3

#define CQ_ACK_BATCH 64
/* How often a busy poll() or wait() looks at the rdma_cm and async fds. */
#define SLOW_CHECK_US 2000

static int64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* True at most once per SLOW_CHECK_US, reading the clock every 256th call. */
static bool slow_check_due(struct ragg__verbs_dev *dev, unsigned calls)
{
	if (calls & 255)
		return false;
	int64_t t = now_us();
	if (t < dev->next_slow_us)
		return false;
	dev->next_slow_us = t + SLOW_CHECK_US;
	return true;
}

struct ragg_tp_event *ragg__verbs_out_next(struct ragg__verbs_out *out, struct ragg__verbs_ep *ep,
                                           enum ragg_tp_event_type type)
{
	struct ragg_tp_event *e = &out->ev[out->n++];
	memset(e, 0, sizeof(*e));
	e->type = type;
	e->ep = ep ? &ep->base : NULL;
	return e;
}

int ragg__verbs_srq_post(struct ragg__verbs_dev *dev, const uint32_t *idx, uint32_t n)
{
	if (!n)
		return 0;
	for (uint32_t i = 0; i < n; i++) {
		dev->rsge[i] = (struct ibv_sge){.addr = (uintptr_t)dev->rbufs[idx[i]],
		                                .length = RAGG_TP_MSG_MAX,
		                                .lkey = dev->rbufs_mr->lkey};
		dev->rwr[i] = (struct ibv_recv_wr){.wr_id = RAGG__VERBS_WR_RECV | idx[i],
		                                   .next = i + 1 < n ? &dev->rwr[i + 1] : NULL,
		                                   .sg_list = &dev->rsge[i],
		                                   .num_sge = 1};
	}
	struct ibv_recv_wr *bad = NULL;
	int err = ibv_post_srq_recv(dev->srq, dev->rwr, &bad);
	if (err) {
		ragg__verbs_error(dev, "%s: re-posting %u shared receives failed: %s", dev->name, n,
		                  strerror(err));
		return -err;
	}
	return 0;
}

static inline void repost_later(struct ragg__verbs_dev *dev, uint64_t wr_id)
{
	dev->repost[dev->nrepost++] = (uint32_t)(wr_id & ~RAGG__VERBS_WR_RECV);
}

int ragg__verbs_cq_drain(struct ragg__verbs_dev *dev, int max)
{
	int total = 0;
	while (total < max && dev->wc_count < dev->wc_cap) {
		uint32_t tail = (dev->wc_head + dev->wc_count) % dev->wc_cap;
		uint32_t contig = dev->wc_cap - dev->wc_count;
		if (contig > dev->wc_cap - tail)
			contig = dev->wc_cap - tail;
		int want = (int)contig;
		if (want > (int)dev->cfg.poll_batch)
			want = (int)dev->cfg.poll_batch;
		if (want > max - total)
			want = max - total;
		int n = ibv_poll_cq(dev->cq, want, &dev->wc[tail]);
		if (ragg__unlikely(n < 0)) {
			ragg__verbs_error(dev, "%s: ibv_poll_cq failed (%d)", dev->name, n);
			return -EIO;
		}
		dev->wc_count += (uint32_t)n;
		total += n;
		if (n < want)
			break;
	}
	return total;
}

void ragg__verbs_wc_forget(struct ragg__verbs_dev *dev, uint32_t qp_num)
{
	/* The QP is destroyed, so the CQ gets nothing more from it: take
	 * everything out (the ring can hold all of it) and blank its CQEs. */
	while (ragg__verbs_cq_drain(dev, (int)dev->wc_cap) > 0)
		;
	for (uint32_t i = 0; i < dev->wc_count; i++) {
		struct ibv_wc *wc = &dev->wc[(dev->wc_head + i) % dev->wc_cap];
		if (wc->qp_num == qp_num)
			wc->qp_num = 0;
	}
}

static const char *wc_advice(enum ibv_wc_status s)
{
	switch (s) {
	case IBV_WC_RETRY_EXC_ERR:
		return "the peer stopped answering (process gone, link down, or path broken)";
	case IBV_WC_RNR_RETRY_EXC_ERR: return "the peer had no receive posted for too long";
	case IBV_WC_REM_ACCESS_ERR:
		return "write outside the peer's registered region or with a stale key";
	case IBV_WC_REM_INV_REQ_ERR:
		return "the peer refused the request (message too long for its receive?)";
	case IBV_WC_LOC_LEN_ERR: return "a message was longer than the receive buffer";
	case IBV_WC_LOC_PROT_ERR: return "a local buffer was not inside a registered region";
	case IBV_WC_REM_OP_ERR: return "the peer's queue pair failed";
	default: return "queue pair in error";
	}
}

/* A failed work completion: the QP is in error. */
static void qp_error(struct ragg__verbs_ep *ep, const struct ibv_wc *wc)
{
	struct ragg__verbs_dev *dev = ep->dev;
	if (ep->state == RAGG__VERBS_EP_FAILED || ep->state == RAGG__VERBS_EP_REJECTED)
		return; /* flushes after the first error */
	int status = wc->status == IBV_WC_REM_ACCESS_ERR ? RAGG_ERR_KEY : RAGG_ERR_PEER_LOST;
	if (wc->status == IBV_WC_WR_FLUSH_ERR)
		ragg__verbs_info(dev, "connection with %s closed: work requests flushed (%s)",
		                 ep->base.peer, ibv_wc_status_str(wc->status));
	else
		ragg__verbs_error(dev,
		                  "connection with %s failed: %s (status %d, vendor error 0x%x): "
		                  "%s; reported as %s",
		                  ep->base.peer, ibv_wc_status_str(wc->status), wc->status,
		                  wc->vendor_err, wc_advice(wc->status),
		                  ragg_strerror_name(status));
	ragg__verbs_ep_fail(ep, status);
}

/* Whether ep's completions still become events: connected, or failed with
 * its DISCONNECTED not yet given (what landed before still counts). */
static inline bool deliverable(const struct ragg__verbs_ep *ep)
{
	return ep->state == RAGG__VERBS_EP_CONNECTED ||
	       (ep->state == RAGG__VERBS_EP_FAILED && ep->owed_down);
}

/* Turn one CQE into at most one event. False: it must stay at the head of
 * the ring (no room, or its endpoint is not established yet). */
static bool handle_wc(struct ragg__verbs_dev *dev, struct ibv_wc *wc, struct ragg__verbs_out *out)
{
	bool recv = wc->wr_id & RAGG__VERBS_WR_RECV;
	struct ragg__verbs_ep *ep = wc->qp_num ? ragg__verbs_ep_by_qp(dev, wc->qp_num) : NULL;
	if (ragg__unlikely(!ep)) {
		if (recv)
			repost_later(dev, wc->wr_id);
		return true;
	}
	if (recv) {
		if (ragg__unlikely(wc->status != IBV_WC_SUCCESS)) {
			repost_later(dev, wc->wr_id);
			qp_error(ep, wc);
			return true;
		}
		if (ragg__unlikely(ep->state == RAGG__VERBS_EP_ACCEPTING)) {
			/* The peer's first packet came before the RTU (or the
			 * RTU was lost): tell rdma_cm, which then reports
			 * ESTABLISHED, and keep this CQE until it has. */
			if (!ep->notified) {
				ep->notified = true;
				rdma_notify(ep->id, IBV_EVENT_COMM_EST);
			}
			ragg__verbs_cm_progress(dev, out);
			if (ep->state == RAGG__VERBS_EP_ACCEPTING)
				return false;
			/* rdma_cm events may have added QPs, and a grown CQ
			 * moves the ring: our CQE is at its head still. */
			wc = &dev->wc[dev->wc_head];
		}
		if (!deliverable(ep)) {
			repost_later(dev, wc->wr_id);
			return true;
		}
		if (ragg__unlikely(ragg__verbs_out_room(out) == 0))
			return false;
		uint32_t idx = (uint32_t)(wc->wr_id & ~RAGG__VERBS_WR_RECV);
		if (ragg__likely(wc->opcode == IBV_WC_RECV_RDMA_WITH_IMM)) {
			struct ragg_tp_event *e =
			    ragg__verbs_out_next(out, ep, RAGG_TP_EV_WRITE_LANDED);
			e->imm = ntohl(wc->imm_data);
			e->len = ep->note_len ? ep->note_len : wc->byte_len;
			ep->note_len = 0;
			dev->repost[dev->nrepost++] = idx;
		} else if (ragg__unlikely(wc->wc_flags & IBV_WC_WITH_IMM)) {
			/* A length note for the split write landing next on
			 * this endpoint (write.c); RC keeps the two in order. */
			const uint8_t *p = dev->rbufs[idx];
			uint64_t v = 0;
			for (int b = 0; b < 8 && (uint32_t)b < wc->byte_len; b++)
				v |= (uint64_t)p[b] << (8 * b);
			ep->note_len = v;
			dev->repost[dev->nrepost++] = idx;
		} else {
			/* The data stays valid until the next poll(), which
			 * re-posts the buffer first thing. */
			struct ragg_tp_event *e = ragg__verbs_out_next(out, ep, RAGG_TP_EV_RECV);
			e->data = dev->rbufs[idx];
			e->len = wc->byte_len;
			dev->repost[dev->nrepost++] = idx;
		}
		return true;
	}
	if (ragg__unlikely(wc->status != IBV_WC_SUCCESS)) {
		qp_error(ep, wc);
		return true;
	}
	const struct ragg__verbs_wri *w = &ep->wri[wc->wr_id % ep->depth];
	if (w->report && deliverable(ep)) {
		if (ragg__unlikely(ragg__verbs_out_room(out) == 0))
			return false;
		struct ragg_tp_event *e = ragg__verbs_out_next(out, ep, RAGG_TP_EV_WRITE_DONE);
		e->cookie = w->cookie;
	}
	/* In-order send queue: this WR and every unsignalled one before it
	 * are done, and so is the bounce space they used. */
	ep->sq_done = wc->wr_id + 1;
	ep->bounce_head = w->bounce_tail;
	return true;
}

static void async_progress(struct ragg__verbs_dev *dev)
{
	struct ibv_async_event ae;
	dev->async_ready = false;
	while (ibv_get_async_event(dev->ctx, &ae) == 0) {
		struct ragg__verbs_ep *ep = NULL;
		switch (ae.event_type) {
		case IBV_EVENT_QP_FATAL:
		case IBV_EVENT_QP_REQ_ERR:
		case IBV_EVENT_QP_ACCESS_ERR:
			/* Another device context of this process may share the
			 * verbs context; only act on our own QPs. */
			ep = ragg__verbs_ep_by_qp(dev, ae.element.qp->qp_num);
			if (ep && ep->state != RAGG__VERBS_EP_FAILED) {
				ragg__verbs_error(dev, "connection with %s failed: %s (%s)",
				                  ep->base.peer, ibv_event_type_str(ae.event_type),
				                  ae.event_type == IBV_EVENT_QP_ACCESS_ERR
				                      ? "the peer wrote outside a region or with a "
				                        "wrong key"
				                      : "queue pair error");
				ragg__verbs_ep_fail(ep, ae.event_type == IBV_EVENT_QP_ACCESS_ERR
				                            ? RAGG_ERR_KEY
				                            : RAGG_ERR_PEER_LOST);
			}
			break;
		case IBV_EVENT_PORT_ERR:
			if (ae.element.port_num == dev->port)
				ragg__verbs_error(
				    dev,
				    "%s port %u went DOWN: connections will fail until "
				    "the link is back (check the cable/switch, or the "
				    "net device under a Soft-RoCE device)",
				    dev->name, dev->port);
			break;
		case IBV_EVENT_PORT_ACTIVE:
			if (ae.element.port_num == dev->port)
				ragg__verbs_info(dev, "%s port %u is ACTIVE again", dev->name,
				                 dev->port);
			break;
		case IBV_EVENT_DEVICE_FATAL:
			ragg__verbs_error(dev, "%s: fatal device error; every connection is lost",
			                  dev->name);
			for (struct ragg__verbs_link *l = dev->eps.next; l != &dev->eps;
			     l = l->next)
				ragg__verbs_ep_fail(
				    ragg__container_of(l, struct ragg__verbs_ep, link), -ENODEV);
			break;
		default:
			ragg__verbs_debug(dev, "%s: async event %s", dev->name,
			                  ibv_event_type_str(ae.event_type));
			break;
		}
		ibv_ack_async_event(&ae);
	}
}

static void emit_failed(struct ragg__verbs_dev *dev, struct ragg__verbs_out *out)
{
	while (!ragg__verbs_list_empty(&dev->failed) && ragg__verbs_out_room(out) > 0) {
		struct ragg__verbs_ep *ep =
		    ragg__container_of(dev->failed.next, struct ragg__verbs_ep, pend);
		ragg__verbs_list_del(&ep->pend);
		ep->owed_down = false;
		struct ragg_tp_event *e = ragg__verbs_out_next(out, ep, RAGG_TP_EV_DISCONNECTED);
		e->status = ep->status;
	}
}

int ragg__verbs_poll(struct ragg_tp_dev *d, struct ragg_tp_event *events, int max)
{
	struct ragg__verbs_dev *dev = ragg__verbs_dev(d);
	struct ragg__verbs_out out = {.ev = events, .n = 0, .max = max};
	int rc = 0;

	if (dev->nrepost) {
		rc = ragg__verbs_srq_post(dev, dev->repost, dev->nrepost);
		dev->nrepost = 0;
	}
	unsigned calls = ++dev->poll_calls;

	while (ragg__verbs_out_room(&out) > 0) {
		if (!dev->wc_count) {
			int n = ragg__verbs_cq_drain(dev, (int)dev->cfg.poll_batch);
			if (n <= 0) {
				if (n < 0)
					rc = n;
				break;
			}
		}
		if (!handle_wc(dev, &dev->wc[dev->wc_head], &out))
			break;
		dev->wc_head = dev->wc_head + 1 == dev->wc_cap ? 0 : dev->wc_head + 1;
		dev->wc_count--;
	}

	if (!dev->wc_count) {
		bool slow = slow_check_due(dev, calls);
		if (dev->resolving || dev->cm_ready || slow)
			ragg__verbs_cm_progress(dev, &out);
		if (dev->async_ready || slow)
			async_progress(dev);
		emit_failed(dev, &out);
	}
	return out.n ? out.n : rc;
}

static void consume_cq_events(struct ragg__verbs_dev *dev);

/* Take what the epoll set reported. Completion channel events are only
 * consumed (the CQ itself tells whether there is work: a notification may
 * be left over from an earlier arming); true when anything else fired. */
static bool take_ready(struct ragg__verbs_dev *dev, const struct epoll_event *evs, int n)
{
	bool other = false;
	for (int i = 0; i < n; i++) {
		switch (evs[i].data.u32) {
		case TAG_COMP: consume_cq_events(dev); break;
		case TAG_CM:
			dev->cm_ready = true;
			other = true;
			break;
		case TAG_ASYNC:
			dev->async_ready = true;
			other = true;
			break;
		default: /* the wake fd */ other = true; break;
		}
	}
	return other;
}

static bool pending(const struct ragg__verbs_dev *dev)
{
	return dev->wc_count || dev->cm_ready || dev->async_ready ||
	       !ragg__verbs_list_empty(&dev->failed);
}

/* Take completion notifications left over from an earlier arming, so they
 * do not keep the epoll fd readable. */
static void consume_cq_events(struct ragg__verbs_dev *dev)
{
	struct ibv_cq *cq;
	void *cq_ctx;
	while (ibv_get_cq_event(dev->comp_ch, &cq, &cq_ctx) == 0)
		dev->cq_events_unacked++;
	if (dev->cq_events_unacked >= CQ_ACK_BATCH) {
		ibv_ack_cq_events(dev->cq, dev->cq_events_unacked);
		dev->cq_events_unacked = 0;
	}
}

int ragg__verbs_arm(struct ragg_tp_dev *d)
{
	struct ragg__verbs_dev *dev = ragg__verbs_dev(d);
	struct epoll_event evs[4];
	int rc = ragg__verbs_wake_sync(dev);
	if (rc)
		return rc;
	/* The epoll fd (wait_fd) must become readable for everything poll()
	 * acts on: the armed CQ, the rdma_cm and async fds, the wake fd. The
	 * last look at the set (no sleep) catches what is ready already,
	 * which poll() would otherwise only see at its next slow check. */
	for (int i = 0; i < 4; i++) {
		if (pending(dev))
			return -EAGAIN;
		consume_cq_events(dev);
		if (ibv_req_notify_cq(dev->cq, 0)) {
			ragg__verbs_error(dev, "%s: ibv_req_notify_cq failed", dev->name);
			return -EIO;
		}
		if (ragg__verbs_cq_drain(dev, 1) != 0)
			return -EAGAIN;
		int n = epoll_wait(dev->epfd, evs, 4, 0);
		if (n <= 0)
			return 0;
		if (take_ready(dev, evs, n))
			return -EAGAIN;
		/* Only a completion notification: look at the CQ again. */
	}
	return -EAGAIN;
}

int ragg__verbs_wait_fd(struct ragg_tp_dev *d)
{
	return ragg__verbs_dev(d)->epfd;
}

int ragg__verbs_wait(struct ragg_tp_dev *d, int timeout_ms)
{
	struct ragg__verbs_dev *dev = ragg__verbs_dev(d);
	struct epoll_event evs[4];
	int rc = ragg__verbs_wake_sync(dev);
	if (rc)
		return rc;
	if (pending(dev))
		return 0;
	if (ragg__verbs_cq_drain(dev, 1) != 0 || timeout_ms == 0)
		return 0;
	int64_t start = now_us();
	int64_t deadline = timeout_ms < 0 ? INT64_MAX : start + (int64_t)timeout_ms * 1000;
	int mode = dev->base.params.poll_mode;

	if (mode != RAGG_POLL_BLOCK) {
		int64_t spin_end =
		    mode == RAGG_POLL_BUSY
		        ? deadline
		        : start + (dev->base.params.spin_us > 0 ? dev->base.params.spin_us : 0);
		/* The CQ on every turn, the clock every 128th, the other fds
		 * (a system call) every SLOW_CHECK_US, or at once when there
		 * is a wake fd to honour. */
		int64_t next_fds = dev->wake_fd >= 0 ? 0 : start + SLOW_CHECK_US;
		for (unsigned i = 1;; i++) {
			if (ragg__verbs_cq_drain(dev, 1) != 0)
				return 0;
			if ((i & 127) == 0) {
				int64_t t = now_us();
				if (t >= next_fds) {
					int n = epoll_wait(dev->epfd, evs, 4, 0);
					if (n > 0 && take_ready(dev, evs, n))
						return 0;
					next_fds = dev->wake_fd >= 0 ? t + 100 : t + SLOW_CHECK_US;
				}
				if (t >= spin_end)
					break;
			}
		}
		if (mode == RAGG_POLL_BUSY)
			return 0;
	}

	for (;;) {
		if (ibv_req_notify_cq(dev->cq, 0)) {
			ragg__verbs_error(dev, "%s: ibv_req_notify_cq failed", dev->name);
			return -EIO;
		}
		if (ragg__verbs_cq_drain(dev, 1) != 0)
			return 0;
		int64_t left = deadline == INT64_MAX ? -1 : (deadline - now_us() + 999) / 1000;
		if (deadline != INT64_MAX && left <= 0)
			return 0;
		int n = epoll_wait(dev->epfd, evs, 4, left > INT32_MAX ? INT32_MAX : (int)left);
		if (n < 0)
			return errno == EINTR ? 0 : -errno;
		if (n == 0 || take_ready(dev, evs, n))
			return 0;
		/* Only the completion channel: the loop re-arms and looks at
		 * the CQ, sleeping again if the notification was stale. */
	}
}
