/*
 * The receive path and poll()/wait().
 *
 * A frame is read in two steps: its header into rx_hdr, then, after the
 * header passed every check (region id, key, bounds, state), its payload
 * straight into the region (or the message buffer). The payload read also
 * asks for the next header in the same readv(), so a stream of frames costs
 * about one syscall each. A refused frame's payload is never read: the
 * connection is dropped at its header, before any byte of it can land.
 *
 * Events that carry data (RECV, CONNECT_REQUEST, CONNECTED) point into the
 * endpoint's buffers, valid until the next poll(); an endpoint therefore
 * hands out at most one of them per poll() and resumes next time.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "tcp.h"

/* epoll events taken per poll(). */
#define POLL_BATCH 64
/* How often handshake deadlines are checked. */
#define SWEEP_MS 100
/* What one endpoint may read in one go before the others get a turn. */
#define RX_BUDGET_BYTES  ((size_t)16 << 20)
#define RX_BUDGET_FRAMES 1024

static const char *type_name(uint8_t type)
{
	static const char *const names[] = { "?", "hello", "accept", "write", "message", "error" };
	return type < RAGG_ARRAY_SIZE(names) ? names[type] : "?";
}

/* Drop the connection over a frame we will not take. The peer gets a best
 * effort ERR frame saying why, unless a frame of ours is half written.
 * `decoded`: rx_frame holds this frame's header, not the last one's. */
static void refuse(struct ragg__tcp_ep *ep, int status, const char *why, bool decoded)
{
	struct ragg__tcp_dev *dev = ep->dev;
	const struct ragg__tcp_frame *f = &ep->rx_frame;

	if (decoded && f->type == RAGG__TCP_WRITE)
		ragg__tcp_error(dev,
		                "%s: write of %" PRIu64 " bytes at offset %" PRIu64
		                " into region %" PRIu32
		                " refused: %s: %s (%s); dropping the connection",
		                ep->base.peer, f->length, f->offset, f->region, why,
		                ragg_strerror(status), ragg_strerror_name(status));
	else
		ragg__tcp_error(dev, "%s: %s; dropping the connection: %s (%s)", ep->base.peer, why,
		                ragg_strerror(status), ragg_strerror_name(status));
	if (ep->fd >= 0 && ep->tx_off == 0) {
		uint8_t hdr[RAGG__TCP_HDR_SIZE];
		struct ragg__tcp_frame err = { .type = RAGG__TCP_ERR, .imm = (uint32_t)status };
		ragg__tcp_frame_encode(&err, hdr);
		if (ep->seal) {
			ragg__tcp_seal_err(ep, hdr);
		} else {
			ssize_t w = send(ep->fd, hdr, sizeof(hdr), MSG_NOSIGNAL | MSG_DONTWAIT);
			(void)w;
		}
	}
	ragg__tcp_ep_fail(ep, status);
}

/* A header arrived: check it against our state and the region table and
 * aim the payload. 0, or the endpoint failed. */
static int frame_begin(struct ragg__tcp_ep *ep)
{
	struct ragg__tcp_dev *dev = ep->dev;
	struct ragg__tcp_frame *f = &ep->rx_frame;
	enum ragg__tcp_ep_state st = ep->state;
	int rc = ragg__tcp_frame_decode(ep->rx_hdr, f);

	if (rc == RAGG_ERR_VERSION) {
		char why[64];
		snprintf(why, sizeof(why), "peer speaks version %u, we speak %u", f->version,
		         RAGG__TCP_VERSION);
		refuse(ep, rc, why, false);
		return rc;
	}
	if (rc) {
		refuse(ep, rc, "malformed frame header", false);
		return rc;
	}
	switch (f->type) {
	case RAGG__TCP_WRITE: {
		if (st != RAGG__TCP_EP_CONNECTED)
			break;
		struct ragg__tp_softmr *mr;
		const char *why;
		rc = ragg__tp_softmr_check(&dev->regions, f->region, f->key, f->offset, f->length,
		                           RAGG__TP_ACCESS_REMOTE_WRITE, &mr, &why);
		if (rc) {
			refuse(ep, rc, why, true);
			return rc;
		}
		ep->rx_dst = (uint8_t *)mr->base.addr + f->offset;
		ep->rx_left = (size_t)f->length;
		return 0;
	}
	case RAGG__TCP_MSG:
		if (st != RAGG__TCP_EP_CONNECTED)
			break;
		ep->rx_dst = ep->rx_msg;
		ep->rx_left = (size_t)f->length;
		return 0;
	case RAGG__TCP_HELLO:
		if (st != RAGG__TCP_EP_HELLO_WAIT)
			break;
		ep->rx_dst = ep->priv;
		ep->rx_left = ep->priv_len = (size_t)f->length;
		return 0;
	case RAGG__TCP_ACCEPT:
		if (st != RAGG__TCP_EP_HELLO_SENT)
			break;
		ep->rx_dst = ep->priv;
		ep->rx_left = ep->priv_len = (size_t)f->length;
		return 0;
	case RAGG__TCP_ERR:
		if (st == RAGG__TCP_EP_HELLO_WAIT)
			break;
		rc = (int32_t)f->imm;
		ragg__tcp_log(dev, rc == -ECONNREFUSED ? RAGG_LOG_INFO : RAGG_LOG_ERROR,
		              "%s: peer dropped the connection: %s (%s)", ep->base.peer,
		              ragg_strerror(rc), ragg_strerror_name(rc));
		ragg__tcp_ep_fail(ep, rc);
		return rc;
	default:
		break;
	}
	char why[64];
	snprintf(why, sizeof(why), "unexpected %s frame", type_name(f->type));
	refuse(ep, RAGG_ERR_PROTO, why, true);
	return RAGG_ERR_PROTO;
}

/* The payload is complete: say so. */
static void frame_end(struct ragg__tcp_ep *ep, struct ragg__tcp_out *out)
{
	const struct ragg__tcp_frame *f = &ep->rx_frame;
	struct ragg_tp_event *ev;

	switch (f->type) {
	case RAGG__TCP_WRITE:
		if (f->flags & RAGG__TCP_F_IMM) {
			ev = ragg__tcp_out_next(out, ep, RAGG_TP_EV_WRITE_LANDED);
			ev->imm = f->imm;
			ev->len = (size_t)f->length;
		}
		break;
	case RAGG__TCP_MSG:
		ev = ragg__tcp_out_next(out, ep, RAGG_TP_EV_RECV);
		ev->data = ep->rx_msg;
		ev->len = (size_t)f->length;
		ep->rx_gen = ep->dev->poll_gen;
		break;
	case RAGG__TCP_HELLO:
		ep->state = RAGG__TCP_EP_REQUESTED;
		ep->exposed = true;
		ragg__tcp_ep_handshake_done(ep);
		ev = ragg__tcp_out_next(out, ep, RAGG_TP_EV_CONNECT_REQUEST);
		ev->data = ep->priv;
		ev->len = ep->priv_len;
		ep->rx_gen = ep->dev->poll_gen;
		ragg__tcp_debug(ep->dev, "%s: connect request", ep->base.peer);
		break;
	case RAGG__TCP_ACCEPT:
		ep->state = RAGG__TCP_EP_CONNECTED;
		ragg__tcp_ep_handshake_done(ep);
		ev = ragg__tcp_out_next(out, ep, RAGG_TP_EV_CONNECTED);
		ev->data = ep->priv;
		ev->len = ep->priv_len;
		ep->rx_gen = ep->dev->poll_gen;
		ragg__tcp_debug(ep->dev, "%s: connected", ep->base.peer);
		break;
	default:
		break;
	}
}

static void rx_error(struct ragg__tcp_ep *ep, ssize_t n)
{
	int rc = RAGG_ERR_PEER_LOST;

	if (n < 0 && errno != ECONNRESET)
		rc = -errno;
	if (!ep->exposed)
		/* Never said hello: a port scanner or a health check. */
		ragg__tcp_debug(ep->dev, "%s: closed before hello", ep->base.peer);
	else if (n < 0)
		ragg__tcp_info(ep->dev, "%s: receive: %s", ep->base.peer, strerror(errno));
	else if (ep->rx_got || ep->rx_in_payload)
		ragg__tcp_info(ep->dev, "%s: connection closed inside a frame", ep->base.peer);
	else
		ragg__tcp_debug(ep->dev, "%s: connection closed by peer", ep->base.peer);
	ragg__tcp_ep_fail(ep, rc);
}

/* A sealed record did not open. */
static void auth_fail(struct ragg__tcp_ep *ep, const char *what)
{
	char why[160];
	snprintf(why, sizeof(why),
	         "sealed %s fails authentication (altered, replayed, reordered or dropped on "
	         "the way)",
	         what);
	ep->rx_in_payload = false;
	refuse(ep, RAGG_ERR_AUTH, why, false);
}

/* What the next read of a payload fills: plain, the rest of the payload
 * and the next header behind it; sealed, the rest of the current segment
 * and its tag. */
static void payload_iov(struct ragg__tcp_ep *ep, struct iovec iov[2])
{
	if (!ep->seal) {
		iov[0] = (struct iovec){ .iov_base = ep->rx_dst, .iov_len = ep->rx_left };
		iov[1] = (struct iovec){ .iov_base = ep->rx_hdr, .iov_len = RAGG__TCP_HDR_SIZE };
		return;
	}
	if (!ep->rx_seg) {
		ep->rx_seg = ep->rx_dst;
		ep->rx_seg_len = ep->rx_left < RAGG__TCP_SEAL_SEG ? ep->rx_left : RAGG__TCP_SEAL_SEG;
		ep->rx_tag_got = 0;
	}
	iov[0] = (struct iovec){ .iov_base = ep->rx_dst,
		                 .iov_len = ep->rx_seg_len - (size_t)(ep->rx_dst - ep->rx_seg) };
	iov[1] = (struct iovec){ .iov_base = ep->rx_tag + ep->rx_tag_got,
		                 .iov_len = RAGG__TCP_SEAL_TAG - ep->rx_tag_got };
}

/* n bytes of a payload read arrived as payload_iov() aimed them. 1: the
 * payload is complete (and, sealed, every segment opened in place); 0:
 * more to read; -1: a segment did not open, the endpoint failed. */
static int payload_got(struct ragg__tcp_ep *ep, size_t n, const struct iovec iov[2])
{
	size_t a = n < iov[0].iov_len ? n : iov[0].iov_len;
	ep->rx_dst += a;
	if (!ep->seal) {
		if (n < ep->rx_left) {
			ep->rx_left -= n;
			return 0;
		}
		ep->rx_got = n - ep->rx_left; /* of the next header */
		ep->rx_left = 0;
		return 1;
	}
	ep->rx_tag_got += n - a;
	if (ep->rx_tag_got < RAGG__TCP_SEAL_TAG)
		return 0;
	/* Opened with the segments read before it, in a batch (seal.c), at
	 * the latest before the frame is reported. */
	if (ragg__tcp_seal_open_later(ep, ep->rx_seg, ep->rx_seg_len, ep->rx_tag)) {
		auth_fail(ep, "payload");
		return -1;
	}
	ep->rx_left -= ep->rx_seg_len;
	ep->rx_seg = NULL;
	if (ep->rx_left)
		return 0;
	if (ragg__tcp_seal_open_queued(ep)) {
		auth_fail(ep, "payload");
		return -1;
	}
	return 1;
}

/* Before the polling thread stops reading ep for now: how many bytes must
 * be queued before the socket reports readable again. In the middle of a
 * large plain payload, a good part of what is left (a wake-up and a read
 * per packet cost a loaded host more than the copy); otherwise 1, so that
 * a header, a small frame or the end of a payload is seen at once. The
 * kernel reports readable anyway on an error, at the end of the stream,
 * and when its receive buffer or window is full. */
#define RX_LOWAT_MIN ((size_t)128 << 10)
#define RX_LOWAT_MAX ((size_t)1024 << 10)
static void rx_lowat(struct ragg__tcp_ep *ep)
{
	size_t want = 1;
	if (ep->rx_in_payload && !ep->seal && ep->rx_left >= RX_LOWAT_MIN)
		want = ep->rx_left < RX_LOWAT_MAX ? ep->rx_left : RX_LOWAT_MAX;
	if ((int)want == (ep->rx_lowat ? ep->rx_lowat : 1))
		return;
	int v = (int)want;
	if (setsockopt(ep->fd, SOL_SOCKET, SO_RCVLOWAT, &v, sizeof(v)) == 0)
		ep->rx_lowat = v;
}

/* Frames are read in one loop, plain or sealed: a header (sealed: a header
 * record, opened before it is checked as any header), then its payload,
 * straight to where frame_begin() aimed it (sealed: segment by segment,
 * each opened there, in place, once its tag is in). */
void ragg__tcp_rx(struct ragg__tcp_ep *ep, struct ragg__tcp_out *out)
{
	/* A peer streaming faster than we read would otherwise keep one
	 * poll() here forever, starving every other endpoint. */
	size_t budget = RX_BUDGET_BYTES;
	int frames = RX_BUDGET_FRAMES;

	for (;;) {
		if (ep->state == RAGG__TCP_EP_FAILED)
			return;
		/* A frame may end in an event: need room for it, and a data
		 * buffer handed out in this poll() must stay untouched. */
		if (ragg__tcp_out_full(out) || ep->rx_gen == ep->dev->poll_gen || !budget ||
		    !frames) {
			ragg__tcp_pending_add(ep, RAGG__TCP_REPORT_RX);
			return;
		}
		if (!ep->rx_in_payload) {
			/* Sealed: the header's ciphertext and its tag. */
			size_t hdr_len = ep->seal ? RAGG__TCP_SEALED_HDR : RAGG__TCP_HDR_SIZE;
			if (ep->rx_got < hdr_len) {
				ssize_t n = recv(ep->fd, ep->rx_hdr + ep->rx_got,
				                 hdr_len - ep->rx_got, MSG_DONTWAIT);
				if (n <= 0) {
					if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK ||
					              errno == EINTR)) {
						rx_lowat(ep);
						return;
					}
					rx_error(ep, n);
					return;
				}
				ep->rx_got += (size_t)n;
				if (ep->rx_got < hdr_len) {
					/* A sealed header is ciphertext until whole. */
					int rc = ep->seal ? 0
					                  : ragg__tcp_frame_precheck(ep->rx_hdr,
					                                             ep->rx_got);
					if (rc) {
						char why[64];
						snprintf(why, sizeof(why),
						         "peer speaks version %u, we speak %u",
						         ep->rx_hdr[4], RAGG__TCP_VERSION);
						refuse(ep, rc,
						       rc == RAGG_ERR_VERSION
						           ? why
						           : "malformed frame header",
						       false);
						return;
					}
					continue;
				}
			}
			ep->rx_got = 0;
			frames--;
			if (ep->seal && ragg__tcp_seal_open(ep->seal, ep->rx_hdr, RAGG__TCP_HDR_SIZE,
			                                    ep->rx_hdr + RAGG__TCP_HDR_SIZE)) {
				auth_fail(ep, "frame header");
				return;
			}
			if (frame_begin(ep))
				return;
			if (!ep->rx_left) {
				frame_end(ep, out);
				continue;
			}
			ep->rx_in_payload = true;
			ep->rx_seg = NULL;
		}
		struct iovec iov[2];
		payload_iov(ep, iov);
		ssize_t n = readv(ep->fd, iov, 2);
		if (n <= 0) {
			if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
				/* Nothing to read: open what was, meanwhile. */
				if (ragg__tcp_seal_queued(ep) && ragg__tcp_seal_open_queued(ep))
					auth_fail(ep, "payload");
				else
					rx_lowat(ep);
				return;
			}
			rx_error(ep, n);
			return;
		}
		budget = (size_t)n < budget ? budget - (size_t)n : 0;
		int rc = payload_got(ep, (size_t)n, iov);
		if (rc < 0)
			return;
		if (rc == 0)
			continue;
		ep->rx_in_payload = false;
		frame_end(ep, out);
	}
}

void ragg__tcp_rx_region_gone(struct ragg__tcp_dev *dev, uint32_t id)
{
	struct ragg__tcp_link *l, *next;

	for (l = dev->eps.next; l != &dev->eps; l = next) {
		next = l->next;
		struct ragg__tcp_ep *ep = ragg__container_of(l, struct ragg__tcp_ep, link);
		if (ep->rx_in_payload && ep->rx_frame.type == RAGG__TCP_WRITE &&
		    ep->rx_frame.region == id) {
			ragg__tcp_error(
			    dev, "%s: region %" PRIu32 " deregistered under an incoming write",
			    ep->base.peer, id);
			ragg__tcp_ep_fail(ep, RAGG_ERR_KEY);
		}
	}
}

/* Give what an endpoint owes, in order; stays pending if out fills. */
static void drain_one(struct ragg__tcp_ep *ep, struct ragg__tcp_out *out)
{
	struct ragg_tp_event *ev;

	if (ep->report & RAGG__TCP_REPORT_CONNECTED) {
		if (ragg__tcp_out_full(out))
			return;
		ragg__tcp_out_next(out, ep, RAGG_TP_EV_CONNECTED);
		ep->report &= ~RAGG__TCP_REPORT_CONNECTED;
	}
	ragg__tcp_tx_report(ep, out);
	if (ep->state == RAGG__TCP_EP_FAILED) {
		if (ep->tx_head != ep->tx_tail || ragg__tcp_out_full(out))
			return;
		if (ep->report & RAGG__TCP_REPORT_DISCONNECTED) {
			ev = ragg__tcp_out_next(out, ep, RAGG_TP_EV_DISCONNECTED);
			ev->status = ep->status;
			ep->report = 0;
		}
	} else if (ep->report & RAGG__TCP_REPORT_RX) {
		ep->report &= ~RAGG__TCP_REPORT_RX;
		ragg__tcp_rx(ep, out);
	}
	if (!ep->report && ep->tx_head == ep->tx_send)
		ragg__tcp_list_del(&ep->pend);
}

static void drain(struct ragg__tcp_dev *dev, struct ragg__tcp_out *out)
{
	struct ragg__tcp_link *l = dev->pending.next, *next;

	for (; l != &dev->pending && !ragg__tcp_out_full(out); l = next) {
		next = l->next;
		drain_one(ragg__container_of(l, struct ragg__tcp_ep, pend), out);
	}
}

static void ep_ready(struct ragg__tcp_ep *ep, uint32_t events, struct ragg__tcp_out *out)
{
	/* Failed earlier in this batch: its socket is gone. */
	if (ep->state == RAGG__TCP_EP_FAILED)
		return;
	if (ep->state == RAGG__TCP_EP_CONNECTING) {
		ragg__tcp_connect_ready(ep);
		return;
	}
	if (events & EPOLLOUT)
		ragg__tcp_flush(ep);
	if (events & (EPOLLIN | EPOLLHUP | EPOLLERR))
		ragg__tcp_rx(ep, out);
}

int ragg__tcp_poll(struct ragg_tp_dev *d, struct ragg_tp_event *events, int max)
{
	struct ragg__tcp_dev *dev = ragg__tcp_dev(d);
	struct ragg__tcp_out out = { .ev = events, .max = max };
	struct epoll_event evs[POLL_BATCH];

	if (max <= 0 || !events)
		return max < 0 || (max && !events) ? -EINVAL : 0;
	dev->poll_gen++;
	if (dev->accept_guard.paused_until)
		ragg__tcp_listener_resume(dev, ragg__tp_now_ms());
	if (dev->handshakes) {
		int64_t now = ragg__tp_now_ms();
		if (now >= dev->next_sweep_ms) {
			ragg__tcp_sweep(dev, now);
			dev->next_sweep_ms = now + SWEEP_MS;
		}
	}
	drain(dev, &out);
	if (!ragg__tcp_out_full(&out)) {
		int n = epoll_wait(dev->epfd, evs, POLL_BATCH, 0);
		for (int i = 0; i < n; i++) {
			uint64_t tag = evs[i].data.u64;
			if (tag == RAGG__TCP_TAG_LISTEN)
				ragg__tcp_listener_ready(dev);
			else if (tag != RAGG__TCP_TAG_WAKE)
				ep_ready(evs[i].data.ptr, evs[i].events, &out);
		}
		/* Completions of the sends just made, with what room is left. */
		drain(dev, &out);
	}
	while (!ragg__tcp_list_empty(&dev->dead))
		ragg__tcp_ep_free(ragg__container_of(dev->dead.next, struct ragg__tcp_ep, link));
	return out.n;
}

/* Before a sleep on several devices: the epoll set is level-triggered, so
 * it is readable whenever a socket or the wake fd is; only events already
 * collected but not yet returned must stop the sleep. */
int ragg__tcp_arm(struct ragg_tp_dev *d)
{
	struct ragg__tcp_dev *dev = ragg__tcp_dev(d);
	if (!ragg__tcp_list_empty(&dev->pending))
		return -EAGAIN;
	return ragg__tcp_wake_sync(dev);
}

int ragg__tcp_wait_fd(struct ragg_tp_dev *d)
{
	return ragg__tcp_dev(d)->epfd;
}

int ragg__tcp_wait(struct ragg_tp_dev *d, int timeout_ms)
{
	struct ragg__tcp_dev *dev = ragg__tcp_dev(d);
	struct epoll_event ev;

	if (!ragg__tcp_list_empty(&dev->pending))
		return 0;
	int rc = ragg__tcp_wake_sync(dev);
	if (rc)
		return rc;
	/* Only the sleep matters: level-triggered readiness is seen again by
	 * poll(), and the wake fd is left for its owner to read. */
	int n = epoll_wait(dev->epfd, &ev, 1, timeout_ms);
	if (n < 0 && errno != EINTR)
		return -errno;
	return 0;
}
