/*
 * poll(), wait() and arm().
 *
 * poll() first serves the sockets (handshakes, questions about regions,
 * peers gone), then visits every endpoint: queued ops that can run now,
 * then what it owes the core in order: CONNECT_REQUEST or CONNECTED,
 * PEER_MAPPED, the WRITE_DONEs, the records of its ring (WRITE_LANDED, RECV), and last
 * DISCONNECTED, once everything the peer completed before it went is out.
 * A batch that fills up ends at some endpoint; the next poll() starts
 * after it, so a busy endpoint cannot starve the others.
 *
 * A RECV's data lives in its endpoint's buffer until the next poll(), so an
 * endpoint hands out one message per poll() and its ring waits behind it.
 *
 * Sleeping: arm() sets the `sleeping` flag of every ring we consume, then
 * looks at each once more (wire.h: whoever publishes after the flag is set
 * writes our eventfd), and gives up with -EAGAIN if anything is there.
 * After it the epoll fd is readable as soon as there is work, so wait()
 * is arm() and epoll_wait(), and a core waiting on several devices polls
 * wait_fd() instead.
 */
#include "config.h"

#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "shm.h"

/* epoll events taken per poll(). */
#define POLL_BATCH 64
/* How often handshake deadlines (and connects the backlog refused) are
 * looked at. */
#define SWEEP_MS 100

#define for_each_ep(dev, ep, l, next)                                                              \
	for (l = (dev)->eps.next; l != &(dev)->eps && ((next = l->next), 1) &&                     \
	                          ((ep = ragg__container_of(l, struct ragg__shm_ep, link)), 1);    \
	     l = next)

static void disarm(struct ragg__shm_dev *dev)
{
	struct ragg__shm_link *l, *next;
	struct ragg__shm_ep *ep;

	if (!dev->armed)
		return;
	for_each_ep(dev, ep, l, next) if (ep->rx_on) ragg__shm_ring_awake(&ep->rx);
	dev->armed = false;
}

static void ring_broken(struct ragg__shm_ep *ep)
{
	/* Nothing more is read from it, not even up to where it stopped. */
	ep->rx_on = false;
	ragg__shm_refuse(ep, RAGG_ERR_PROTO, "the peer corrupted the completion ring");
}

static void drain_ring(struct ragg__shm_ep *ep, struct ragg__shm_out *out)
{
	struct ragg__shm_ring *r = &ep->rx;
	uint64_t start = r->pos, limit;
	struct ragg_tp_event *ev;

	if (!ep->rx_on)
		return;
	if (ep->state == RAGG__SHM_EP_FAILED) {
		limit = ep->rx_stop;
	} else {
		if (ragg__shm_ring_avail(r) < 0) {
			ring_broken(ep);
			return;
		}
		limit = r->seen;
	}
	while (r->pos != limit && !ragg__shm_out_full(out)) {
		struct ragg__shm_rec rec = ragg__shm_ring_peek(r);
		if (rec.type == RAGG__SHM_REC_WRITE) {
			ev = ragg__shm_out_next(out, ep, RAGG_TP_EV_WRITE_LANDED);
			ev->imm = rec.imm;
			ev->len = (size_t)rec.len;
			ragg__shm_ring_skip(r, 1);
			continue;
		}
		if (rec.type != RAGG__SHM_REC_MSG || rec.len > RAGG_TP_MSG_MAX ||
		    ragg__shm_rec_slots((size_t)rec.len) > limit - r->pos) {
			if (r->pos != start)
				ragg__shm_ring_release(r, ep->peer_efd);
			ring_broken(ep);
			return;
		}
		if (ep->msg_gen == ep->dev->poll_gen)
			break;
		ragg__shm_ring_copy_msg(r, ep->rx_msg, (size_t)rec.len);
		ev = ragg__shm_out_next(out, ep, RAGG_TP_EV_RECV);
		ev->data = ep->rx_msg;
		ev->len = (size_t)rec.len;
		ep->msg_gen = ep->dev->poll_gen;
		ragg__shm_ring_skip(r, ragg__shm_rec_slots((size_t)rec.len));
	}
	if (r->pos != start)
		ragg__shm_ring_release(r, ep->peer_efd);
}

/* Give what an endpoint owes, in order, as far as out has room. */
static void emit(struct ragg__shm_ep *ep, struct ragg__shm_out *out)
{
	struct ragg_tp_event *ev;

	if (ep->report & RAGG__SHM_REPORT_REQUEST) {
		if (ragg__shm_out_full(out))
			return;
		ev = ragg__shm_out_next(out, ep, RAGG_TP_EV_CONNECT_REQUEST);
		ev->data = ep->priv;
		ev->len = ep->priv_len;
		ep->report &= ~RAGG__SHM_REPORT_REQUEST;
	}
	if (ep->report & RAGG__SHM_REPORT_CONNECTED) {
		if (ragg__shm_out_full(out))
			return;
		ev = ragg__shm_out_next(out, ep, RAGG_TP_EV_CONNECTED);
		ev->data = ep->priv_len ? ep->priv : NULL;
		ev->len = ep->priv_len;
		ep->report &= ~RAGG__SHM_REPORT_CONNECTED;
	}
	if (ep->report & RAGG__SHM_REPORT_MAPPED) {
		if (ragg__shm_out_full(out))
			return;
		ragg__shm_out_next(out, ep, RAGG_TP_EV_PEER_MAPPED);
		ep->report &= ~RAGG__SHM_REPORT_MAPPED;
	}
	for (; ep->done_head != ep->done_tail; ep->done_head++) {
		if (ragg__shm_out_full(out))
			return;
		const struct ragg__shm_done *d = &ep->done[ep->done_head & ep->done_mask];
		ev = ragg__shm_out_next(out, ep, RAGG_TP_EV_WRITE_DONE);
		ev->cookie = d->cookie;
		ev->len = d->len;
		ev->status = d->status;
	}
	drain_ring(ep, out);
	if (ep->state == RAGG__SHM_EP_FAILED && (ep->report & RAGG__SHM_REPORT_DISCONNECTED)) {
		if ((ep->rx_on && ep->rx.pos != ep->rx_stop) || ep->done_head != ep->done_tail ||
		    ragg__shm_out_full(out))
			return;
		ev = ragg__shm_out_next(out, ep, RAGG_TP_EV_DISCONNECTED);
		ev->status = ep->status;
		ep->report = 0;
	}
}

/* Make the endpoint after x the first one visited. */
static void start_after(struct ragg__shm_link *head, struct ragg__shm_link *x)
{
	if (x->next == head)
		return;
	ragg__shm_list_del(head);
	head->prev = x;
	head->next = x->next;
	x->next->prev = head;
	x->next = head;
}

static void ep_ready(struct ragg__shm_ep *ep, uint32_t events)
{
	/* Failed earlier in this batch: its socket is gone. */
	if (ep->state == RAGG__SHM_EP_FAILED || ep->fd < 0)
		return;
	if (events & EPOLLOUT)
		ragg__shm_ctl_flush(ep);
	if (events & (EPOLLIN | EPOLLHUP | EPOLLERR))
		ragg__shm_ctl_rx(ep);
}

int ragg__shm_poll(struct ragg_tp_dev *d, struct ragg_tp_event *events, int max)
{
	struct ragg__shm_dev *dev = ragg__shm_dev(d);
	struct ragg__shm_out out = { .ev = events, .max = max };
	struct epoll_event evs[POLL_BATCH];
	struct ragg__shm_link *l, *next, *last = NULL;
	struct ragg__shm_ep *ep;

	if (max <= 0 || !events)
		return max < 0 || (max && !events) ? -EINVAL : 0;
	dev->poll_gen++;
	disarm(dev);
	if (dev->accept_guard.paused_until)
		ragg__shm_listener_resume(dev, ragg__tp_now_ms());
	if (dev->handshakes) {
		int64_t now = ragg__tp_now_ms();
		if (now >= dev->next_sweep_ms) {
			ragg__shm_sweep(dev, now);
			dev->next_sweep_ms = now + SWEEP_MS;
		}
	}
	int n = epoll_wait(dev->epfd, evs, POLL_BATCH, 0);
	for (int i = 0; i < n; i++) {
		uint64_t tag = evs[i].data.u64;
		if (tag == RAGG__SHM_TAG_LISTEN) {
			ragg__shm_listener_ready(dev);
		} else if (tag == RAGG__SHM_TAG_EVENT) {
			uint64_t v;
			ssize_t r = read(dev->efd, &v, sizeof(v));
			(void)r;
		} else if (tag != RAGG__SHM_TAG_WAKE) {
			ep_ready(evs[i].data.ptr, evs[i].events);
		}
	}
	/* Ops the answers just read let run, before anything is reported. */
	for_each_ep(dev, ep, l, next) if (ep->op_head != ep->op_tail) ragg__shm_ops_run(ep);
	for_each_ep(dev, ep, l, next)
	{
		if (ragg__shm_out_full(&out))
			break;
		int before = out.n;
		emit(ep, &out);
		if (out.n > before)
			last = l;
	}
	if (ragg__shm_out_full(&out) && last)
		start_after(&dev->eps, last);
	while (!ragg__shm_list_empty(&dev->dead))
		ragg__shm_ep_free(ragg__container_of(dev->dead.next, struct ragg__shm_ep, link));
	return out.n;
}

static bool has_work(struct ragg__shm_ep *ep)
{
	if ((ep->report &
	     (RAGG__SHM_REPORT_REQUEST | RAGG__SHM_REPORT_CONNECTED | RAGG__SHM_REPORT_MAPPED)) ||
	    ep->done_head != ep->done_tail)
		return true;
	if (ep->state == RAGG__SHM_EP_FAILED)
		return (ep->report & RAGG__SHM_REPORT_DISCONNECTED) != 0;
	if (ep->tx_want && ragg__shm_ring_room(&ep->tx, ep->tx_want)) {
		ep->tx_want = 0;
		return true;
	}
	return (ep->rx_on && ragg__shm_ring_sleep(&ep->rx)) || ragg__shm_ops_runnable(ep);
}

int ragg__shm_arm(struct ragg_tp_dev *d)
{
	struct ragg__shm_dev *dev = ragg__shm_dev(d);
	struct ragg__shm_link *l, *next;
	struct ragg__shm_ep *ep;

	int rc = ragg__shm_wake_sync(dev);
	if (rc)
		return rc;
	dev->armed = true;
	for_each_ep(dev, ep, l, next)
	{
		if (has_work(ep)) {
			disarm(dev);
			return -EAGAIN;
		}
	}
	return 0;
}

int ragg__shm_wait_fd(struct ragg_tp_dev *d)
{
	return ragg__shm_dev(d)->epfd;
}

int ragg__shm_wait(struct ragg_tp_dev *d, int timeout_ms)
{
	struct ragg__shm_dev *dev = ragg__shm_dev(d);
	struct epoll_event ev;

	int rc = ragg__shm_arm(d);
	if (rc)
		return rc == -EAGAIN ? 0 : rc;
	/* Only the sleep matters: level-triggered readiness is seen again by
	 * poll(), and the wake fd is left for its owner to read. */
	if (dev->handshakes && (timeout_ms < 0 || timeout_ms > SWEEP_MS))
		timeout_ms = SWEEP_MS;
	int n = epoll_wait(dev->epfd, &ev, 1, timeout_ms);
	int err = errno;
	disarm(dev);
	if (n < 0 && err != EINTR)
		return -err;
	return 0;
}
