/*
 * The tcp transport's private objects.
 *
 * One device owns one epoll set; every socket of the device (listener,
 * endpoints, the core's wake fd) is in it, level-triggered, so a readiness
 * left unserved by one poll() is simply seen again by the next. The transport
 * is single-threaded per device: the core calls every op of a device and its
 * endpoints from one thread at a time.
 *
 * Nothing is allocated per frame. Each endpoint preallocates a ring of
 * pending sends (headers encoded in place, payload pointers into the
 * caller's memory) and a small ring of buffers for control messages and
 * handshake private data; received payloads go straight from the socket
 * into the target region, or into the endpoint's message buffer.
 *
 * Events are never queued in a list of their own. Whatever poll() could not
 * report at once stays as state of its endpoint (a report bit, completed but
 * unreported sends in the ring) and the endpoint sits on the device's
 * pending list until poll() has room for it; so the events owed are bounded
 * by the rings and can never be lost or reordered per endpoint.
 */
#ifndef RAGG_TCP_H
#define RAGG_TCP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "../util/accept.h"
#include "../util/epoll.h"
#include "../util/idtab.h"
#include "../util/softmr.h"
#include "compiler.h"
#include "wire.h"

#include <ragg/transport.h>

extern const struct ragg_tp_ops ragg__tp_tcp_ops;

struct ragg__tcp_dev;

/* ---- settings (config.c) ---- */

struct ragg__tcp_config {
	size_t sndbuf; /* 0: kernel autotuning */
	size_t rcvbuf;
	size_t local_sndbuf; /* SO_SNDBUF towards a peer on this host; 0: sndbuf */
	size_t queue_depth; /* pending writes per endpoint, power of two */
	bool nodelay;
	size_t backlog;
	char iface[64]; /* interface whose address a wildcard listen advertises */
	size_t seal_threads; /* helpers sealing and opening records (seal.c) */
};

int ragg__tcp_config_read(struct ragg__tcp_dev *dev, struct ragg__tcp_config *cfg);

/* ---- intrusive lists ---- */

struct ragg__tcp_link {
	struct ragg__tcp_link *prev, *next;
};

static inline void ragg__tcp_list_init(struct ragg__tcp_link *head)
{
	head->prev = head->next = head;
}

static inline bool ragg__tcp_list_empty(const struct ragg__tcp_link *head)
{
	return head->next == head;
}

static inline void ragg__tcp_list_add_tail(struct ragg__tcp_link *head, struct ragg__tcp_link *l)
{
	l->prev = head->prev;
	l->next = head;
	head->prev->next = l;
	head->prev = l;
}

static inline void ragg__tcp_list_del(struct ragg__tcp_link *l)
{
	l->prev->next = l->next;
	l->next->prev = l->prev;
	l->prev = l->next = l;
}

/* ---- objects ---- */

/* The region's id, key and access live in soft, checked by
 * ragg__tp_softmr_check() when a frame arrives. */
struct ragg__tcp_mr {
	struct ragg__tp_softmr soft; /* first: the region table frees through it */
	struct ragg__tcp_dev *dev;
};
_Static_assert(offsetof(struct ragg__tcp_mr, soft) == 0, "soft first");

enum ragg__tcp_ep_state {
	RAGG__TCP_EP_CONNECTING, /* connector: TCP connect in progress */
	RAGG__TCP_EP_HELLO_SENT, /* connector: hello queued, waiting for ACCEPT */
	RAGG__TCP_EP_HELLO_WAIT, /* acceptor: waiting for HELLO; core unaware */
	RAGG__TCP_EP_REQUESTED, /* acceptor: CONNECT_REQUEST out, core decides */
	RAGG__TCP_EP_CONNECTED,
	RAGG__TCP_EP_REJECTED, /* acceptor: refusal queued, waiting for ep_close */
	RAGG__TCP_EP_FAILED, /* socket closed; DISCONNECTED owed or given */
};

/* Reports an endpoint owes the core, in the order they are given. */
#define RAGG__TCP_REPORT_REQUEST      (1u << 0)
#define RAGG__TCP_REPORT_CONNECTED    (1u << 1)
#define RAGG__TCP_REPORT_DISCONNECTED (1u << 2)
#define RAGG__TCP_REPORT_RX           (1u << 3) /* receive stopped early, resume */

/* One pending send. Frames leave in ring order; [head, send) are written to
 * the kernel and wait only to be reported, [send, tail) are still to go and
 * the one at `send` may be partly written (tx_off bytes). */
struct ragg__tcp_txe {
	uint8_t hdr[RAGG__TCP_HDR_SIZE];
	uint8_t signal; /* report WRITE_DONE */
	uint8_t msg; /* payload lives in the message ring */
	uint8_t sealed; /* queued after seal(): goes out sealed */
	const void *buf;
	size_t len;
	uint64_t cookie;
};

#define RAGG__TCP_MAX_ADDRS 4

/* Sealing (seal.c): record tag, a sealed header (ciphertext and tag), the
 * largest payload segment under one tag, the sender's staging buffer. */
#define RAGG__TCP_SEAL_TAG   16
#define RAGG__TCP_SEALED_HDR (RAGG__TCP_HDR_SIZE + RAGG__TCP_SEAL_TAG)
#define RAGG__TCP_SEAL_SEG   ((size_t)64 << 10)
#define RAGG__TCP_SEAL_STAGE (8 * (RAGG__TCP_SEAL_SEG + RAGG__TCP_SEAL_TAG) + 4096)
struct ragg__tcp_seal;
struct ragg__tcp_seal_pool;

struct ragg__tcp_ep {
	struct ragg_tp_ep base;
	struct ragg__tcp_dev *dev;
	struct ragg__tcp_link link; /* dev->eps, or dev->dead */
	struct ragg__tcp_link pend; /* dev->pending while reports are owed */
	int fd;
	enum ragg__tcp_ep_state state;
	uint32_t epoll_mask; /* events registered for fd */
	bool exposed; /* the core holds this endpoint */
	int status; /* why it failed */
	unsigned report;
	int64_t deadline_ms; /* handshake must finish by then; 0: none */

	/* Connector: resolved addresses still to try. */
	struct sockaddr_storage addrs[RAGG__TCP_MAX_ADDRS];
	socklen_t addr_lens[RAGG__TCP_MAX_ADDRS];
	int naddrs, addr_next;

	struct ragg__tcp_txe *tx;
	uint32_t tx_mask, tx_head, tx_send, tx_tail;
	size_t tx_off;
	uint8_t (*msgs)[RAGG_TP_MSG_MAX];
	uint32_t msg_mask, msg_head, msg_tail;

	/* Receive: the header being read, then the payload of the frame it
	 * announced, read straight to rx_dst. */
	uint8_t rx_hdr[RAGG__TCP_SEALED_HDR]; /* sealed: the header's tag follows */
	size_t rx_got;
	bool rx_in_payload;
	struct ragg__tcp_frame rx_frame;
	uint8_t *rx_dst;
	size_t rx_left;
	int rx_lowat; /* SO_RCVLOWAT as last set (0: never set, the kernel's 1) */
	uint64_t rx_gen; /* poll generation that handed out rx_msg or priv */
	uint8_t rx_msg[RAGG_TP_MSG_MAX];
	uint8_t priv[RAGG_TP_PRIV_MAX]; /* the peer's private data */
	size_t priv_len;

	/* Sealed (seal.c), or NULL. Receive: the payload segment being read
	 * to rx_seg (rx_seg_len bytes, rx_dst where the next byte goes), then
	 * its tag. */
	struct ragg__tcp_seal *seal;
	uint8_t *rx_seg;
	size_t rx_seg_len;
	uint8_t rx_tag[RAGG__TCP_SEAL_TAG];
	size_t rx_tag_got;
};

/* epoll data for the objects that are not endpoints; endpoints use their
 * pointer, which is never this small. */
#define RAGG__TCP_TAG_LISTEN 1
#define RAGG__TCP_TAG_WAKE   2

struct ragg__tcp_dev {
	struct ragg_tp_dev base;
	struct ragg__tcp_config cfg;
	int epfd;
	int lfd;
	struct ragg__tp_accept_guard accept_guard; /* EMFILE/ENFILE on lfd */
	int wake_fd; /* the one in the epoll set */
	char laddr[RAGG_TP_ADDR_MAX];
	char device[64];
	struct ragg__tcp_link eps; /* every live endpoint */
	struct ragg__tcp_link pending; /* endpoints owing reports */
	struct ragg__tcp_link dead; /* internal endpoints freed at end of poll */
	int handshakes; /* endpoints with a deadline */
	int64_t next_sweep_ms;
	uint64_t poll_gen;
	bool buf_warned;
	struct ragg__tp_idtab regions; /* struct ragg__tcp_mr, by id */
	struct ragg__tcp_seal_pool *seal_pool; /* seal.c: started by the first seal() */
};

/* Where poll() puts events. */
struct ragg__tcp_out {
	struct ragg_tp_event *ev;
	int n, max;
};

static inline struct ragg__tcp_dev *ragg__tcp_dev(struct ragg_tp_dev *d)
{
	return ragg__container_of(d, struct ragg__tcp_dev, base);
}

static inline struct ragg__tcp_ep *ragg__tcp_ep(struct ragg_tp_ep *e)
{
	return ragg__container_of(e, struct ragg__tcp_ep, base);
}

static inline bool ragg__tcp_out_full(const struct ragg__tcp_out *out)
{
	return out->n >= out->max;
}

/* The next event slot, zeroed; the caller checked there is room. */
struct ragg_tp_event *ragg__tcp_out_next(struct ragg__tcp_out *out, struct ragg__tcp_ep *ep,
                                         enum ragg_tp_event_type type);

#define ragg__tcp_log(dev, lvl, ...)                                                               \
	do {                                                                                       \
		const struct ragg_tp_params *p_ = &(dev)->base.params;                             \
		if (p_->log_level >= (lvl))                                                        \
			p_->log((lvl), "tcp: " __VA_ARGS__);                                       \
	} while (0)
#define ragg__tcp_error(dev, ...) ragg__tcp_log(dev, RAGG_LOG_ERROR, __VA_ARGS__)
#define ragg__tcp_warn(dev, ...)  ragg__tcp_log(dev, RAGG_LOG_WARN, __VA_ARGS__)
#define ragg__tcp_info(dev, ...)  ragg__tcp_log(dev, RAGG_LOG_INFO, __VA_ARGS__)
#define ragg__tcp_debug(dev, ...) ragg__tcp_log(dev, RAGG_LOG_DEBUG, __VA_ARGS__)

/* Register ep's fd for exactly `mask` (EPOLLIN/EPOLLOUT). */
static inline int ragg__tcp_ep_set_mask(struct ragg__tcp_ep *ep, uint32_t mask)
{
	return ragg__tp_epoll_set_mask(ep->dev->epfd, ep->fd, &ep->epoll_mask, mask, ep,
	                               &ep->dev->base.params, "tcp", ep->base.peer);
}

/* Put params.wake_fd in the epoll set: the core may set it after open(). */
static inline int ragg__tcp_wake_sync(struct ragg__tcp_dev *dev)
{
	return ragg__tp_epoll_wake_sync(dev->epfd, &dev->wake_fd, RAGG__TCP_TAG_WAKE,
	                                &dev->base.params, "tcp");
}

/* ---- device.c ---- */
void ragg__tcp_pending_add(struct ragg__tcp_ep *ep, unsigned report);

/* ---- address.c ---- */
/* Split "host:port", "[v6]:port", "[v6]", "host" or ":port"; port may come
 * back empty. */
int ragg__tcp_addr_split(const char *addr, char *host, size_t host_len, char *port,
                         size_t port_len);
int ragg__tcp_addr_format(const struct sockaddr *sa, socklen_t len, char *buf, size_t buf_len);
/* The interface holding sa's address (or "any"/"lo" ...), for query(). */
void ragg__tcp_addr_iface(const struct sockaddr *sa, char *buf, size_t len);
/* An address peers can reach when listening on the wildcard. */
int ragg__tcp_addr_advertise(struct ragg__tcp_dev *dev, int family, char *buf, size_t len);
int ragg__tcp_sock_setup(struct ragg__tcp_dev *dev, int fd, bool data);
/* Settings that depend on who the peer is, once the connection is up. */
void ragg__tcp_sock_established(struct ragg__tcp_dev *dev, int fd);

/* ---- memory.c ---- */
int ragg__tcp_mr_reg(struct ragg_tp_dev *d, void *addr, size_t len, struct ragg_tp_mr **mr,
                     struct ragg_tp_rdesc *rdesc);
int ragg__tcp_mr_dereg(struct ragg_tp_mr *m);
void ragg__tcp_regions_free(struct ragg__tcp_dev *dev);

/* ---- endpoint.c ---- */
int ragg__tcp_listen(struct ragg_tp_dev *d, const char *host, char *addr, size_t addr_len);
int ragg__tcp_connect(struct ragg_tp_dev *d, const char *addr, const void *priv, size_t priv_len,
                      void *user, struct ragg_tp_ep **ep);
int ragg__tcp_accept(struct ragg_tp_ep *e, const void *priv, size_t priv_len);
int ragg__tcp_reject(struct ragg_tp_ep *e);
void ragg__tcp_ep_close(struct ragg_tp_ep *e);
void ragg__tcp_ep_free(struct ragg__tcp_ep *ep);
/* Take new connections from the listener. */
void ragg__tcp_listener_ready(struct ragg__tcp_dev *dev);
/* A pause of the listener after EMFILE/ENFILE is over at `now`: listen
 * again. */
void ragg__tcp_listener_resume(struct ragg__tcp_dev *dev, int64_t now);
/* The connector's socket became writable or failed. */
void ragg__tcp_connect_ready(struct ragg__tcp_ep *ep);
/* Close the socket and owe DISCONNECTED(status); internal endpoints go to
 * the dead list. Idempotent. */
void ragg__tcp_ep_fail(struct ragg__tcp_ep *ep, int status);
/* The handshake finished: no deadline any more. */
void ragg__tcp_ep_handshake_done(struct ragg__tcp_ep *ep);
/* Fail handshakes past their deadline. */
void ragg__tcp_sweep(struct ragg__tcp_dev *dev, int64_t now);

/* ---- write.c ---- */
int ragg__tcp_write_imm(struct ragg_tp_ep *e, const void *laddr, struct ragg_tp_mr *lmr,
                        const struct ragg_tp_rdesc *remote, uint64_t roff, size_t len, uint32_t imm,
                        unsigned flags, uint64_t cookie);
int ragg__tcp_send(struct ragg_tp_ep *e, const void *buf, size_t len);
/* Queue a handshake or error frame with an optional payload (copied). */
int ragg__tcp_queue_ctrl(struct ragg__tcp_ep *ep, uint8_t type, uint32_t imm, const void *buf,
                         size_t len);
/* Write queued frames until done or the socket is full. */
void ragg__tcp_flush(struct ragg__tcp_ep *ep);
int ragg__tcp_tx_alloc(struct ragg__tcp_ep *ep, size_t depth);
/* Report completed sends; with the endpoint failed, flush the rest. */
void ragg__tcp_tx_report(struct ragg__tcp_ep *ep, struct ragg__tcp_out *out);

/* ---- seal.c ---- */
int ragg__tcp_seal(struct ragg_tp_ep *e, unsigned cipher, const uint8_t *rx_key,
                   const uint8_t *tx_key, size_t key_len);
void ragg__tcp_seal_free(struct ragg__tcp_ep *ep);
/* Encrypt len bytes of in to out with the next send nonce. */
void ragg__tcp_seal_record(struct ragg__tcp_seal *s, uint8_t *out, const void *in, size_t len,
                           uint8_t tag[RAGG__TCP_SEAL_TAG]);
/* Open len bytes in place with the next receive nonce: 0 or RAGG_ERR_AUTH. */
int ragg__tcp_seal_open(struct ragg__tcp_seal *s, uint8_t *buf, size_t len,
                        const uint8_t tag[RAGG__TCP_SEAL_TAG]);
/* A payload segment read in place: it takes the next receive nonce now and
 * is opened, with the others queued, by ragg__tcp_seal_open_queued() (or
 * here, when the queue is full). 0 or RAGG_ERR_AUTH. */
int ragg__tcp_seal_open_later(struct ragg__tcp_ep *ep, uint8_t *buf, size_t len,
                              const uint8_t tag[RAGG__TCP_SEAL_TAG]);
/* Open every queued segment, spread over the device's helper threads: 0,
 * or RAGG_ERR_AUTH when any fails. */
int ragg__tcp_seal_open_queued(struct ragg__tcp_ep *ep);
/* Segments read but not yet opened. */
bool ragg__tcp_seal_queued(const struct ragg__tcp_ep *ep);
/* Stop and join the device's helper threads. */
void ragg__tcp_seal_pool_free(struct ragg__tcp_dev *dev);
/* Sealed bytes staged but not yet taken by the socket. */
bool ragg__tcp_seal_staged(const struct ragg__tcp_ep *ep);
int ragg__tcp_seal_flush(struct ragg__tcp_ep *ep);
void ragg__tcp_seal_err(struct ragg__tcp_ep *ep, const uint8_t hdr[RAGG__TCP_HDR_SIZE]);

/* ---- progress.c ---- */
int ragg__tcp_poll(struct ragg_tp_dev *d, struct ragg_tp_event *events, int max);
int ragg__tcp_wait(struct ragg_tp_dev *d, int timeout_ms);
int ragg__tcp_arm(struct ragg_tp_dev *d);
int ragg__tcp_wait_fd(struct ragg_tp_dev *d);
/* Read frames until the socket is empty or out is full. */
void ragg__tcp_rx(struct ragg__tcp_ep *ep, struct ragg__tcp_out *out);
/* Stop the frame being received into a region about to go away. */
void ragg__tcp_rx_region_gone(struct ragg__tcp_dev *dev, uint32_t id);

#endif
