/*
 * The shm transport's private objects.
 *
 * Same host only. Each endpoint is a pair of completion rings in shared
 * memory (one per direction, each created and owned by its consumer) and a
 * unix SOCK_SEQPACKET socket in the abstract namespace. The socket carries
 * the handshake, the memfds (SCM_RIGHTS) and answers about regions, and
 * its end (EOF, EPOLLHUP) is how a peer's death is seen; payloads never
 * travel on it. A write is one copy straight into the peer's memory: a
 * memcpy into a mapping of its memfd, or process_vm_writev(2) into memory
 * it did not get from mem_alloc(). The write's completion goes into the
 * peer's ring after the copy, so it is complete and in order when seen.
 *
 * One device owns one epoll set: the listener, every endpoint's socket, the
 * device's eventfd (peers write it to wake us) and the core's wake fd, all
 * level-triggered. The transport is single-threaded per device: the core
 * calls every op of a device and its endpoints from one thread at a time.
 *
 * Nothing is allocated per write. What poll() could not report at once
 * stays as state of its endpoint (report bits, the done queue, unread ring
 * records), bounded by the queue depth, and poll() visits every endpoint
 * each time, starting after the one that filled the previous batch, so no
 * endpoint starves another.
 */
#ifndef RAGG_SHM_H
#define RAGG_SHM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>

#include "../util/accept.h"
#include "../util/epoll.h"
#include "../util/idtab.h"
#include "../util/softmr.h"
#include "compiler.h"
#include "wire.h"

#include <ragg/transport.h>

extern const struct ragg_tp_ops ragg__tp_shm_ops;

struct ragg__shm_dev;
struct ragg__shm_remote_index;

/* ---- settings (config.c) ---- */

struct ragg__shm_config {
	size_t queue_depth; /* ring slots per direction, power of two */
	bool cma; /* allow process_vm_writev into memory not from mem_alloc */
	size_t max_regions; /* entries of the region table */
	size_t backlog;
};

int ragg__shm_config_read(struct ragg__shm_dev *dev, struct ragg__shm_config *cfg);

/* ---- intrusive lists ---- */

struct ragg__shm_link {
	struct ragg__shm_link *prev, *next;
};

static inline void ragg__shm_list_init(struct ragg__shm_link *head)
{
	head->prev = head->next = head;
}

static inline bool ragg__shm_list_empty(const struct ragg__shm_link *head)
{
	return head->next == head;
}

static inline void ragg__shm_list_add_tail(struct ragg__shm_link *head, struct ragg__shm_link *l)
{
	l->prev = head->prev;
	l->next = head;
	head->prev->next = l;
	head->prev = l;
}

static inline void ragg__shm_list_del(struct ragg__shm_link *l)
{
	l->prev->next = l->next;
	l->next->prev = l->prev;
	l->prev = l->next = l;
}

/* ---- memory ---- */

/* A mem_alloc() block: one memfd, mapped once, handed to writers only as
 * far as a region registered inside it reaches. */
struct ragg__shm_block {
	uint8_t *addr;
	size_t len;
	int fd;
};

/* The region's id, key and access live in soft, checked by
 * ragg__tp_softmr_check() when a writer asks where the region is. */
struct ragg__shm_mr {
	struct ragg__tp_softmr soft; /* first: the region table frees through it */
	struct ragg__shm_dev *dev;
	struct ragg__shm_block *block; /* NULL: private memory */
	uint64_t gen;
};
_Static_assert(offsetof(struct ragg__shm_mr, soft) == 0, "soft first");

/* ---- rings (ring.c) ---- */

/* One side's view of a ring; the shared words live in hdr. */
struct ragg__shm_ring {
	struct ragg__shm_ring_hdr *hdr;
	size_t map_len;
	uint32_t slots, mask;
	uint64_t pos; /* consumer: head; producer: tail */
	uint64_t seen; /* consumer: tail last read; producer: head last read */
};

/* Consumer: a new ring in a sealed memfd, mapped; *fd is for the peer. */
int ragg__shm_ring_create(struct ragg__shm_dev *dev, struct ragg__shm_ring *r, uint32_t slots,
                          int *fd);
/* Producer: map the peer's ring after checking the memfd's size and seals. */
int ragg__shm_ring_attach(struct ragg__shm_dev *dev, struct ragg__shm_ring *r, int fd,
                          uint32_t slots);
void ragg__shm_ring_unmap(struct ragg__shm_ring *r);
/* Producer: room for n more slots? On false, `starved` is set so the
 * consumer wakes us when it frees some. */
bool ragg__shm_ring_room(struct ragg__shm_ring *r, uint32_t n);
void ragg__shm_ring_put_write(struct ragg__shm_ring *r, uint32_t imm, uint64_t len);
void ragg__shm_ring_put_msg(struct ragg__shm_ring *r, const void *buf, size_t len);
/* Producer: publish what was put, and wake the consumer if it sleeps. */
void ragg__shm_ring_publish(struct ragg__shm_ring *r, int efd);
/* Consumer: records waiting (tail re-read), or -1 when the producer broke
 * the ring. */
int64_t ragg__shm_ring_avail(struct ragg__shm_ring *r);
/* Consumer: the record at our position (a copy: the peer may scribble on
 * the ring, so it is read once), and its message payload. */
struct ragg__shm_rec ragg__shm_ring_peek(const struct ragg__shm_ring *r);
void ragg__shm_ring_copy_msg(const struct ragg__shm_ring *r, void *buf, size_t len);
/* Consumer: move past n slots; release() then hands everything moved past
 * back to the producer, and wakes it if it starved for room. */
static inline void ragg__shm_ring_skip(struct ragg__shm_ring *r, uint32_t n)
{
	r->pos += n;
}
void ragg__shm_ring_release(struct ragg__shm_ring *r, int efd);
/* Consumer: announce sleep (Dekker, see wire.h); true when records came
 * in meanwhile. */
bool ragg__shm_ring_sleep(struct ragg__shm_ring *r);
void ragg__shm_ring_awake(struct ragg__shm_ring *r);

/* ---- endpoints ---- */

enum ragg__shm_ep_state {
	RAGG__SHM_EP_CONNECTING, /* connector: the listener's backlog was full, retrying */
	RAGG__SHM_EP_HELLO_SENT, /* connector: waiting for ACCEPT */
	RAGG__SHM_EP_HELLO_WAIT, /* acceptor: waiting for HELLO; core unaware */
	RAGG__SHM_EP_REQUESTED, /* acceptor: CONNECT_REQUEST out, core decides */
	RAGG__SHM_EP_CONNECTED,
	RAGG__SHM_EP_REJECTED, /* acceptor: refusal queued, then FAILED */
	RAGG__SHM_EP_FAILED, /* socket closed; DISCONNECTED owed or given */
};

/* Reports an endpoint owes the core, given in this order. */
#define RAGG__SHM_REPORT_REQUEST      (1u << 0)
#define RAGG__SHM_REPORT_CONNECTED    (1u << 1)
#define RAGG__SHM_REPORT_DISCONNECTED (1u << 2)
#define RAGG__SHM_REPORT_MAPPED       (1u << 3) /* a region asked for is ready */

/* A peer region the writer knows of, by (region, key). */
enum ragg__shm_remote_state {
	RAGG__SHM_REMOTE_ASKED = 1, /* MAP_REQ sent, ops wait behind it */
	RAGG__SHM_REMOTE_READY,
};

struct ragg__shm_remote {
	uint32_t region;
	uint8_t state;
	uint8_t kind;
	uint8_t core_waits; /* peer_map() said -EINPROGRESS: report the answer */
	uint64_t key;
	uint64_t length;
	uint64_t gen;
	uint8_t *base; /* shared: our mapping of the region's first byte */
	uint64_t addr; /* private: the region's address in the owner */
	void *map;
	size_t map_len;
};

/* A write or message posted while a region it (or an earlier op) needs is
 * still being asked for; run in order once the answer is in. */
struct ragg__shm_op {
	uint8_t is_msg;
	uint8_t flags;
	uint32_t remote; /* index in ep->remotes */
	uint32_t imm;
	const void *laddr;
	size_t len;
	uint64_t roff;
	uint64_t cookie;
	uint8_t msg[RAGG_TP_MSG_MAX];
};

/* A signalled write done (status 0) or given up (negative), to report. */
struct ragg__shm_done {
	uint64_t cookie;
	size_t len;
	int status;
};

/* A control packet the socket would not take at once. */
#define RAGG__SHM_CTL_QUEUE 8
struct ragg__shm_ctl {
	struct ragg__shm_pkt pkt;
	int fds[RAGG__SHM_PKT_FDS_MAX];
};

struct ragg__shm_ep {
	struct ragg_tp_ep base;
	struct ragg__shm_dev *dev;
	struct ragg__shm_link link; /* dev->eps, or dev->dead */
	int fd;
	enum ragg__shm_ep_state state;
	uint32_t epoll_mask;
	bool exposed; /* the core holds this endpoint */
	int status; /* why it failed */
	unsigned report;
	int64_t deadline_ms; /* handshake must finish by then; 0: none */
	struct sockaddr_un sa; /* connector: the listener, for retries */
	socklen_t sa_len;

	pid_t peer_pid; /* SO_PEERCRED, in our pid namespace */
	int pidfd; /* the peer process, to tell it from a reused pid */
	int peer_efd; /* written to wake the peer */
	int held[RAGG__SHM_PKT_FDS_MAX]; /* acceptor: HELLO's fds until accept() */
	uint32_t held_slots, held_regions;

	struct ragg__shm_ring rx; /* ours: the peer's completions to us */
	struct ragg__shm_ring tx; /* the peer's: our completions to it */
	bool rx_on, tx_on;
	/* Slots a post refused with -EAGAIN wanted: the peer wakes us when it
	 * frees some, but poll() may have eaten that wakeup, so arm() looks
	 * again before we sleep. */
	uint32_t tx_want;
	uint64_t rx_stop; /* failed: records up to here are still reported */
	const _Atomic uint64_t *peer_gens; /* the peer's region table, read-only */
	size_t peer_gens_len;
	uint32_t peer_max_regions;

	struct ragg__shm_remote *remotes;
	struct ragg__shm_remote_index *remote_index; /* by region id (remote.c) */
	uint32_t nremotes, remotes_cap;
	uint32_t sig_queued; /* signalled writes among the queued ops */

	struct ragg__shm_op *ops; /* allocated on first use */
	uint32_t op_mask, op_head, op_tail;
	struct ragg__shm_done *done;
	uint32_t done_mask, done_head, done_tail;
	struct ragg__shm_ctl ctl[RAGG__SHM_CTL_QUEUE];
	uint32_t ctl_head, ctl_tail;

	uint64_t msg_gen; /* poll generation that handed out rx_msg */
	uint8_t rx_msg[RAGG_TP_MSG_MAX];
	uint8_t priv[RAGG_TP_PRIV_MAX]; /* the peer's private data */
	size_t priv_len;
};

/* epoll data for what is not an endpoint; endpoints use their pointer,
 * which is never this small. */
#define RAGG__SHM_TAG_LISTEN 1
#define RAGG__SHM_TAG_WAKE   2
#define RAGG__SHM_TAG_EVENT  3

struct ragg__shm_dev {
	struct ragg_tp_dev base;
	struct ragg__shm_config cfg;
	int epfd;
	int lfd;
	struct ragg__tp_accept_guard accept_guard; /* EMFILE/ENFILE on lfd */
	int efd; /* our eventfd: peers write it to wake us */
	int wake_fd; /* the core's, as in the epoll set */
	bool armed; /* ring `sleeping` flags are set */
	bool cma; /* private regions can receive writes */
	char cma_why[192]; /* why not */
	char host_id[17];
	char laddr[RAGG_TP_ADDR_MAX];
	struct ragg__shm_link eps; /* every live endpoint; poll starts at the head */
	struct ragg__shm_link dead; /* internal endpoints freed at end of poll */
	int handshakes; /* endpoints with a deadline */
	int64_t next_sweep_ms;
	uint64_t poll_gen;

	struct ragg__tp_idtab regions; /* struct ragg__shm_mr, by id */
	uint64_t next_gen;
	/* Region table in a sealed memfd, peers map it read-only: entry id
	 * holds the generation of the region registered under id, 0 when
	 * none, so a writer sees a deregistered region without asking. */
	_Atomic uint64_t *gens;
	size_t gens_len;
	int gens_fd;

	struct ragg__shm_block **blocks;
	uint32_t nblocks, blocks_cap;
};

/* Where poll() puts events. */
struct ragg__shm_out {
	struct ragg_tp_event *ev;
	int n, max;
};

static inline struct ragg__shm_dev *ragg__shm_dev(struct ragg_tp_dev *d)
{
	return ragg__container_of(d, struct ragg__shm_dev, base);
}

static inline struct ragg__shm_ep *ragg__shm_ep(struct ragg_tp_ep *e)
{
	return ragg__container_of(e, struct ragg__shm_ep, base);
}

static inline bool ragg__shm_out_full(const struct ragg__shm_out *out)
{
	return out->n >= out->max;
}

/* The next event slot, zeroed; the caller checked there is room. */
struct ragg_tp_event *ragg__shm_out_next(struct ragg__shm_out *out, struct ragg__shm_ep *ep,
                                         enum ragg_tp_event_type type);

#define ragg__shm_log(dev, lvl, ...)                                                               \
	do {                                                                                       \
		const struct ragg_tp_params *p_ = &(dev)->base.params;                             \
		if (p_->log_level >= (lvl))                                                        \
			p_->log((lvl), "shm: " __VA_ARGS__);                                       \
	} while (0)
#define ragg__shm_error(dev, ...) ragg__shm_log(dev, RAGG_LOG_ERROR, __VA_ARGS__)
#define ragg__shm_warn(dev, ...)  ragg__shm_log(dev, RAGG_LOG_WARN, __VA_ARGS__)
#define ragg__shm_info(dev, ...)  ragg__shm_log(dev, RAGG_LOG_INFO, __VA_ARGS__)
#define ragg__shm_debug(dev, ...) ragg__shm_log(dev, RAGG_LOG_DEBUG, __VA_ARGS__)

/* Register ep's fd for exactly `mask` (EPOLLIN/EPOLLOUT). */
static inline int ragg__shm_ep_set_mask(struct ragg__shm_ep *ep, uint32_t mask)
{
	return ragg__tp_epoll_set_mask(ep->dev->epfd, ep->fd, &ep->epoll_mask, mask, ep,
	                               &ep->dev->base.params, "shm", ep->base.peer);
}

/* Put params.wake_fd in the epoll set: the core may set it after open(). */
static inline int ragg__shm_wake_sync(struct ragg__shm_dev *dev)
{
	return ragg__tp_epoll_wake_sync(dev->epfd, &dev->wake_fd, RAGG__SHM_TAG_WAKE,
	                                &dev->base.params, "shm");
}

/* ---- device.c ---- */
/* A sealed memfd of len bytes; the seals keep a peer holding it from
 * shrinking it under our mapping (SIGBUS). */
int ragg__shm_memfd(struct ragg__shm_dev *dev, const char *name, size_t len, bool seal_writes,
                    void **map);
/* A peer's memfd is safe to map for len bytes: sealed against shrinking
 * and at least that long. */
int ragg__shm_memfd_check(struct ragg__shm_dev *dev, int fd, size_t len, const char *what);

/* ---- address.c ---- */
/* Same boot and same network namespace (abstract sockets are per netns). */
int ragg__shm_host_id(char id[17], char *why, size_t why_len);
/* The abstract socket for a listen address "shm:<host-id>:<name>", or for
 * "host:port" naming this host (listen() used the port as the name). */
int ragg__shm_addr_resolve(struct ragg__shm_dev *dev, const char *addr, struct sockaddr_un *sa,
                           socklen_t *len);
/* The name listen() takes for "host:port": the port, or random for 0. */
int ragg__shm_addr_listen_name(struct ragg__shm_dev *dev, const char *host_port, char *name,
                               size_t len);
void ragg__shm_addr_abstract(const char *name, struct sockaddr_un *sa, socklen_t *len);
int ragg__shm_reachable(struct ragg_tp_dev *d, const char *addr);

/* ---- memory.c ---- */
void *ragg__shm_mem_alloc(struct ragg_tp_dev *d, size_t len);
void ragg__shm_mem_free(struct ragg_tp_dev *d, void *p, size_t len);
int ragg__shm_mr_reg(struct ragg_tp_dev *d, void *addr, size_t len, struct ragg_tp_mr **mr,
                     struct ragg_tp_rdesc *rdesc);
int ragg__shm_mr_dereg(struct ragg_tp_mr *m);
int ragg__shm_regions_init(struct ragg__shm_dev *dev);
void ragg__shm_regions_free(struct ragg__shm_dev *dev);
/* Owner: the region a MAP_REQ names, if id, key and length all match;
 * else the status to refuse it with and why. */
struct ragg__shm_mr *ragg__shm_region_check(struct ragg__shm_dev *dev, uint32_t id, uint64_t key,
                                            uint64_t length, int *status, const char **why);

/* ---- endpoint.c ---- */
int ragg__shm_listen(struct ragg_tp_dev *d, const char *host, char *addr, size_t addr_len);
int ragg__shm_connect(struct ragg_tp_dev *d, const char *addr, const void *priv, size_t priv_len,
                      void *user, struct ragg_tp_ep **ep);
int ragg__shm_accept(struct ragg_tp_ep *e, const void *priv, size_t priv_len);
int ragg__shm_reject(struct ragg_tp_ep *e);
void ragg__shm_ep_close(struct ragg_tp_ep *e);
void ragg__shm_ep_free(struct ragg__shm_ep *ep);
/* Close the socket and owe DISCONNECTED(status) once what came before is
 * reported; internal endpoints go to the dead list. Idempotent. */
void ragg__shm_ep_fail(struct ragg__shm_ep *ep, int status);
void ragg__shm_ep_handshake_done(struct ragg__shm_ep *ep);
void ragg__shm_listener_ready(struct ragg__shm_dev *dev);
/* A pause of the listener after EMFILE/ENFILE is over at `now`: listen
 * again. */
void ragg__shm_listener_resume(struct ragg__shm_dev *dev, int64_t now);
/* Fail handshakes past their deadline; retry connects the backlog refused. */
void ragg__shm_sweep(struct ragg__shm_dev *dev, int64_t now);
void ragg__shm_on_hello(struct ragg__shm_ep *ep, const struct ragg__shm_pkt *p, int *fds);
void ragg__shm_on_accept(struct ragg__shm_ep *ep, const struct ragg__shm_pkt *p, int *fds);

/* ---- ctrl.c ---- */
/* Send a control packet with fds (not consumed), or queue it (fds
 * duplicated) when the socket is full; -EAGAIN when the queue is too. */
int ragg__shm_ctl_send(struct ragg__shm_ep *ep, struct ragg__shm_pkt *p, const int *fds, int nfds);
void ragg__shm_ctl_flush(struct ragg__shm_ep *ep);
void ragg__shm_ctl_drop(struct ragg__shm_ep *ep);
/* Read and act on control packets until the socket is empty (or 64). */
void ragg__shm_ctl_rx(struct ragg__shm_ep *ep);
/* Drop the connection over something the peer sent: log, tell it, fail. */
void ragg__shm_refuse(struct ragg__shm_ep *ep, int status, const char *why);
void ragg__shm_pkt_init(struct ragg__shm_pkt *p, uint8_t type);

/* ---- remote.c ---- */
/* The writer's entry for (region, key), asking the owner when new; index
 * in ep->remotes, or negative. */
int ragg__shm_remote_get(struct ragg__shm_ep *ep, const struct ragg__shm_rdesc *rd);
void ragg__shm_on_map_rep(struct ragg__shm_ep *ep, const struct ragg__shm_pkt *p, int *fds);
void ragg__shm_on_map_req(struct ragg__shm_ep *ep, const struct ragg__shm_pkt *p);
void ragg__shm_remotes_free(struct ragg__shm_ep *ep);
/* The peer_map op: our mapping of a peer's shared region. */
int ragg__shm_peer_map(struct ragg_tp_ep *e, const struct ragg_tp_rdesc *remote, void **ptr,
                       size_t *len);
/* The owner still has the region under the generation we mapped. */
static inline bool ragg__shm_remote_live(const struct ragg__shm_ep *ep,
                                         const struct ragg__shm_remote *r)
{
	return r->region < ep->peer_max_regions &&
	       atomic_load_explicit(&ep->peer_gens[r->region], memory_order_acquire) == r->gen;
}

/* ---- write.c ---- */
int ragg__shm_write_imm(struct ragg_tp_ep *e, const void *laddr, struct ragg_tp_mr *lmr,
                        const struct ragg_tp_rdesc *remote, uint64_t roff, size_t len, uint32_t imm,
                        unsigned flags, uint64_t cookie);
int ragg__shm_send(struct ragg_tp_ep *e, const void *buf, size_t len);
int ragg__shm_queues_alloc(struct ragg__shm_ep *ep);
/* Run queued ops whose regions are known, in order, while the ring has
 * room. */
void ragg__shm_ops_run(struct ragg__shm_ep *ep);
/* Ops that could run now (for wait()). */
bool ragg__shm_ops_runnable(struct ragg__shm_ep *ep);
/* The endpoint failed: queued ops are given up, signalled ones reported. */
void ragg__shm_ops_cancel(struct ragg__shm_ep *ep);

/* ---- progress.c ---- */
int ragg__shm_poll(struct ragg_tp_dev *d, struct ragg_tp_event *events, int max);
int ragg__shm_wait(struct ragg_tp_dev *d, int timeout_ms);
int ragg__shm_arm(struct ragg_tp_dev *d);
int ragg__shm_wait_fd(struct ragg_tp_dev *d);

#endif
