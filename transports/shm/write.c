/*
 * The write path. A write is the copy itself, done in write_imm(): a
 * memcpy into our mapping of the peer's region, or process_vm_writev(2)
 * into its private memory; then, with an immediate, a record in the peer's
 * ring, published with release semantics after the copy, so the peer sees
 * the data whenever it sees the record, and sees records in posting order.
 * No syscall is made per write except the one wakeup of a peer that sleeps
 * (and, for private memory, the copy itself).
 *
 * A signalled write is done when write_imm returns; its WRITE_DONE waits in
 * the endpoint's done queue for the next poll(). The queue is as deep as
 * the ring, and a signalled write that would overflow it gets -EAGAIN.
 *
 * The one exception to "done at once" is the first write to a region: the
 * owner has to tell us where it is first (remote.c). Until it has, that
 * write and every op posted after it on the endpoint (messages included,
 * which travel through the ring so that they stay in order with writes)
 * wait in a small queue, referring to the caller's buffer as a posted
 * RDMA write does, and run from poll() once the answer is in.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "shm.h"

/* Ops waiting behind a question to the owner. */
#define OPS_DEPTH 64

int ragg__shm_queues_alloc(struct ragg__shm_ep *ep)
{
	size_t depth = ep->dev->cfg.queue_depth;
	ep->done = calloc(depth, sizeof(*ep->done));
	if (!ep->done)
		return -ENOMEM;
	ep->done_mask = (uint32_t)depth - 1;
	return 0;
}

static int ops_alloc(struct ragg__shm_ep *ep)
{
	ep->ops = calloc(OPS_DEPTH, sizeof(*ep->ops));
	if (!ep->ops)
		return -ENOMEM;
	ep->op_mask = OPS_DEPTH - 1;
	return 0;
}

/* Room for one more WRITE_DONE, counting those that queued ops will owe. */
static bool done_room(const struct ragg__shm_ep *ep)
{
	return ep->done_tail - ep->done_head + ep->sig_queued <= ep->done_mask;
}

static void done_push(struct ragg__shm_ep *ep, uint64_t cookie, size_t len, int status)
{
	struct ragg__shm_done *d = &ep->done[ep->done_tail++ & ep->done_mask];
	d->cookie = cookie;
	d->len = len;
	d->status = status;
}

static int not_connected(const struct ragg__shm_ep *ep)
{
	if (ep->state == RAGG__SHM_EP_FAILED)
		return ep->status ? ep->status : RAGG_ERR_PEER_LOST;
	return -ENOTCONN;
}

/* Cross-memory attach into the peer's private region. */
static int cma_write(struct ragg__shm_ep *ep, uint64_t raddr, const uint8_t *src, size_t len)
{
	/* The pid could have been reused since the peer died: write only
	 * while the process we connected to still runs. */
	if (ep->pidfd >= 0) {
		struct pollfd pfd = { .fd = ep->pidfd, .events = POLLIN };
		if (poll(&pfd, 1, 0) > 0) {
			ragg__shm_info(ep->dev, "%s: peer process exited", ep->base.peer);
			return RAGG_ERR_PEER_LOST;
		}
	}
	while (len) {
		struct iovec l = { .iov_base = (void *)src, .iov_len = len };
		struct iovec r = { .iov_base = (void *)(uintptr_t)raddr, .iov_len = len };
		ssize_t n = process_vm_writev(ep->peer_pid, &l, 1, &r, 1, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			int rc = n == 0 ? -EFAULT : errno == ESRCH ? RAGG_ERR_PEER_LOST : -errno;
			ragg__shm_error(
			    ep->dev, "%s: process_vm_writev of %zu bytes: %s%s", ep->base.peer, len,
			    n == 0 ? "no progress" : strerror(errno),
			    rc == -EPERM ? " (no ptrace access to the peer: see ragg-shm(7), "
			                   "or allocate its regions with mem_alloc)"
			                 : "");
			return rc;
		}
		src += n;
		raddr += (uint64_t)n;
		len -= (size_t)n;
	}
	return 0;
}

static int copy_to(struct ragg__shm_ep *ep, const struct ragg__shm_remote *r, uint64_t roff,
                   const void *src, size_t len)
{
	if (!len)
		return 0;
	if (r->kind == RAGG__SHM_KIND_SHARED) {
		memcpy(r->base + roff, src, len);
		return 0;
	}
	return cma_write(ep, r->addr + roff, src, len);
}

/* Against what the owner said, not what the descriptor claims: a forged
 * descriptor may repeat a known (region, key) with a larger length. */
static int past_end(struct ragg__shm_ep *ep, const struct ragg__shm_remote *r, uint64_t roff,
                    size_t len)
{
	if (ragg__likely(ragg__tp_in_bounds(r->length, roff, len)))
		return 0;
	ragg__shm_error(ep->dev,
	                "%s: write of %zu bytes at offset %" PRIu64 " past the end of the %" PRIu64
	                "-byte region %" PRIu32 ": %s (%s)",
	                ep->base.peer, len, roff, r->length, r->region,
	                ragg_strerror(RAGG_ERR_BOUNDS), ragg_strerror_name(RAGG_ERR_BOUNDS));
	return RAGG_ERR_BOUNDS;
}

static int stale(struct ragg__shm_ep *ep, const struct ragg__shm_remote *r)
{
	/* An owner deregisters a region it described to us only as it tears
	 * down, after closing its endpoints: when the connection is hung up,
	 * the peer is going away, which is what the caller must hear (not a
	 * bad key from a peer that is still there). */
	struct pollfd pfd = { .fd = ep->fd, .events = POLLRDHUP };
	if (ep->fd >= 0 && poll(&pfd, 1, 0) > 0 && (pfd.revents & (POLLRDHUP | POLLHUP | POLLERR))) {
		ragg__shm_error(ep->dev,
		                "%s: region %" PRIu32 " was deregistered by its owner, which closed "
		                "the connection: %s (%s)",
		                ep->base.peer, r->region, ragg_strerror(RAGG_ERR_PEER_LOST),
		                ragg_strerror_name(RAGG_ERR_PEER_LOST));
		ragg__shm_ep_fail(ep, RAGG_ERR_PEER_LOST);
		return RAGG_ERR_PEER_LOST;
	}
	ragg__shm_error(ep->dev,
	                "%s: region %" PRIu32 " was deregistered by its owner: "
	                "write with a stale descriptor refused: %s (%s)",
	                ep->base.peer, r->region, ragg_strerror(RAGG_ERR_KEY),
	                ragg_strerror_name(RAGG_ERR_KEY));
	return RAGG_ERR_KEY;
}

/* The write, now; -EAGAIN before anything happened when the ring is full. */
static int write_now(struct ragg__shm_ep *ep, const struct ragg__shm_remote *r, const void *laddr,
                     uint64_t roff, size_t len, uint32_t imm, unsigned flags, uint64_t cookie)
{
	if (ragg__unlikely(!ragg__shm_remote_live(ep, r)))
		return stale(ep, r);
	int rc = past_end(ep, r, roff, len);
	if (ragg__unlikely(rc))
		return rc;
	if ((flags & RAGG_TP_WRITE_IMM) && !ragg__shm_ring_room(&ep->tx, 1)) {
		ep->tx_want = 1;
		return -EAGAIN;
	}
	rc = copy_to(ep, r, roff, laddr, len);
	if (ragg__unlikely(rc)) {
		if (rc == RAGG_ERR_PEER_LOST)
			ragg__shm_ep_fail(ep, rc);
		return rc;
	}
	if (flags & RAGG_TP_WRITE_IMM) {
		ragg__shm_ring_put_write(&ep->tx, imm, len);
		ragg__shm_ring_publish(&ep->tx, ep->peer_efd);
	}
	if (flags & RAGG_TP_WRITE_SIGNAL)
		done_push(ep, cookie, len, 0);
	return 0;
}

static int op_queue(struct ragg__shm_ep *ep, const struct ragg__shm_op *op)
{
	if (!ep->ops && ops_alloc(ep))
		return -ENOMEM;
	if (ep->op_tail - ep->op_head > ep->op_mask)
		return -EAGAIN;
	ep->ops[ep->op_tail++ & ep->op_mask] = *op;
	if (!op->is_msg && (op->flags & RAGG_TP_WRITE_SIGNAL))
		ep->sig_queued++;
	return 0;
}

int ragg__shm_write_imm(struct ragg_tp_ep *e, const void *laddr, struct ragg_tp_mr *lmr,
                        const struct ragg_tp_rdesc *remote, uint64_t roff, size_t len, uint32_t imm,
                        unsigned flags, uint64_t cookie)
{
	struct ragg__shm_ep *ep = ragg__shm_ep(e);
	struct ragg__shm_rdesc rd;

	if (ragg__unlikely(ep->state != RAGG__SHM_EP_CONNECTED))
		return not_connected(ep);
	if (ragg__unlikely(flags & ~(RAGG_TP_WRITE_IMM | RAGG_TP_WRITE_SIGNAL) || (len && !laddr)))
		return -EINVAL;
	if (ragg__unlikely(ragg__shm_rdesc_unpack(remote, &rd))) {
		ragg__shm_error(ep->dev, "%s: write_imm: not an shm region descriptor",
		                ep->base.peer);
		return -EINVAL;
	}
	if (ragg__unlikely(!ragg__tp_in_bounds(rd.length, roff, len))) {
		ragg__shm_error(ep->dev,
		                "%s: write_imm of %zu bytes at offset %" PRIu64
		                " past the end of a %" PRIu64 "-byte region: %s (%s)",
		                ep->base.peer, len, roff, rd.length, ragg_strerror(RAGG_ERR_BOUNDS),
		                ragg_strerror_name(RAGG_ERR_BOUNDS));
		return RAGG_ERR_BOUNDS;
	}
	if (ragg__unlikely(lmr && len && !ragg__tp_mr_holds(lmr, laddr, len)))
		return -EINVAL;
	if ((flags & RAGG_TP_WRITE_SIGNAL) && !done_room(ep))
		return -EAGAIN;
	int i = ragg__shm_remote_get(ep, &rd);
	if (ragg__unlikely(i < 0))
		return i;
	const struct ragg__shm_remote *r = &ep->remotes[i];
	if (ragg__likely(ep->op_head == ep->op_tail && r->state == RAGG__SHM_REMOTE_READY))
		return write_now(ep, r, laddr, roff, len, imm, flags, cookie);
	struct ragg__shm_op op = {
		.flags = (uint8_t)flags,
		.remote = (uint32_t)i,
		.imm = imm,
		.laddr = laddr,
		.len = len,
		.roff = roff,
		.cookie = cookie,
	};
	return op_queue(ep, &op);
}

int ragg__shm_send(struct ragg_tp_ep *e, const void *buf, size_t len)
{
	struct ragg__shm_ep *ep = ragg__shm_ep(e);

	if (ep->state != RAGG__SHM_EP_CONNECTED)
		return not_connected(ep);
	if (len > RAGG_TP_MSG_MAX)
		return -EMSGSIZE;
	if (len && !buf)
		return -EINVAL;
	if (ep->op_head != ep->op_tail) {
		struct ragg__shm_op op = { .is_msg = 1, .len = len };
		memcpy(op.msg, buf, len);
		return op_queue(ep, &op);
	}
	if (!ragg__shm_ring_room(&ep->tx, ragg__shm_rec_slots(len))) {
		ep->tx_want = ragg__shm_rec_slots(len);
		return -EAGAIN;
	}
	ragg__shm_ring_put_msg(&ep->tx, buf, len);
	ragg__shm_ring_publish(&ep->tx, ep->peer_efd);
	return 0;
}

/* What stops the op at the head of the queue; 0 when it can run. */
static int op_blocked(struct ragg__shm_ep *ep, const struct ragg__shm_op *op)
{
	if (op->is_msg)
		return ragg__shm_ring_room(&ep->tx, ragg__shm_rec_slots(op->len)) ? 0 : -EAGAIN;
	if (ep->remotes[op->remote].state != RAGG__SHM_REMOTE_READY)
		return -EINPROGRESS;
	if ((op->flags & RAGG_TP_WRITE_SIGNAL) && ep->done_tail - ep->done_head > ep->done_mask)
		return -EAGAIN;
	if ((op->flags & RAGG_TP_WRITE_IMM) && !ragg__shm_ring_room(&ep->tx, 1))
		return -EAGAIN;
	return 0;
}

void ragg__shm_ops_run(struct ragg__shm_ep *ep)
{
	bool put = false;

	while (ep->op_head != ep->op_tail && ep->state == RAGG__SHM_EP_CONNECTED) {
		const struct ragg__shm_op *op = &ep->ops[ep->op_head & ep->op_mask];
		if (op_blocked(ep, op))
			break;
		if (op->is_msg) {
			ragg__shm_ring_put_msg(&ep->tx, op->msg, op->len);
			put = true;
			ep->op_head++;
			continue;
		}
		const struct ragg__shm_remote *r = &ep->remotes[op->remote];
		int rc = ragg__shm_remote_live(ep, r) ? past_end(ep, r, op->roff, op->len)
		                                      : stale(ep, r);
		if (!rc)
			rc = copy_to(ep, r, op->roff, op->laddr, op->len);
		if (rc) {
			/* A write already accepted cannot be refused any more:
			 * the endpoint fails, and says which write and why. */
			ragg__shm_ep_fail(ep, rc);
			break;
		}
		if (op->flags & RAGG_TP_WRITE_IMM) {
			ragg__shm_ring_put_write(&ep->tx, op->imm, op->len);
			put = true;
		}
		if (op->flags & RAGG_TP_WRITE_SIGNAL) {
			ep->sig_queued--;
			done_push(ep, op->cookie, op->len, 0);
		}
		ep->op_head++;
	}
	if (put)
		ragg__shm_ring_publish(&ep->tx, ep->peer_efd);
}

bool ragg__shm_ops_runnable(struct ragg__shm_ep *ep)
{
	return ep->op_head != ep->op_tail && ep->state == RAGG__SHM_EP_CONNECTED &&
	       !op_blocked(ep, &ep->ops[ep->op_head & ep->op_mask]);
}

void ragg__shm_ops_cancel(struct ragg__shm_ep *ep)
{
	/* As a flushed work request does: the caller learns the fate of
	 * every signalled buffer. */
	for (; ep->op_head != ep->op_tail; ep->op_head++) {
		const struct ragg__shm_op *op = &ep->ops[ep->op_head & ep->op_mask];
		if (!op->is_msg && (op->flags & RAGG_TP_WRITE_SIGNAL)) {
			ep->sig_queued--;
			done_push(ep, op->cookie, op->len, -ECANCELED);
		}
	}
}
