/*
 * The verbs transport's private objects.
 *
 * One device context (ragg__verbs_dev) owns one protection domain, one
 * completion queue with its completion channel, one shared receive queue and
 * one rdma_cm event channel; every endpoint's RC queue pair sends into that
 * CQ and receives from that SRQ. The transport is single-threaded per
 * device: the core calls every op of a device and its endpoints from one
 * thread at a time.
 *
 * Completions. Every CQE goes through the device's ring (dev->wc): poll()
 * and a busy wait() move CQEs from the CQ into the ring, poll() turns them
 * into events from the ring's head. A CQE that cannot be reported yet (no
 * room in the caller's array, its endpoint still waiting for ESTABLISHED)
 * stays at the head, so completions are never reordered. The ring holds as
 * many entries as the CQ: every CQE stands for a send WR or a receive that
 * is not re-posted (and no credit is returned) before its CQE is handled,
 * so the CQ and the ring together never hold more than the CQ's capacity.
 *
 * Send queue credits. Each endpoint may have `depth` WRs outstanding; WR
 * number s (wr_id = s) uses entry s % depth of the endpoint's info ring and
 * message buffer ring. Only some WRs are signalled; on an RC QP the send
 * queue completes in order, so the CQE of WR s returns the credits of every
 * WR up to s. A WR is signalled when the caller asks for WRITE_DONE, every
 * `signal_interval` WRs, and whenever fewer than `signal_interval` credits
 * would remain: so a full queue always has a signalled WR in flight and
 * -EAGAIN can only be temporary.
 *
 * Receive CQEs carry the SRQ buffer's index in wr_id (with
 * RAGG__VERBS_WR_RECV set) and find their endpoint by qp_num; send CQEs
 * find it the same way. ep_close() destroys the QP and then neutralises
 * every CQE of that qp_num still in the CQ or the ring (qp_num 0), so a QP
 * number the device hands out again can never receive a stale completion.
 */
#ifndef RAGG_VERBS_H
#define RAGG_VERBS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>

#include "compiler.h"

#include <ragg/transport.h>

extern const struct ragg_tp_ops ragg__tp_verbs_ops;

/* ---- describe (the table's describe op) and a helper of the core (describe.c) ---- */

/*
 * Describe every RDMA device of this host into buf (NUL-terminated,
 * truncated to len): per device its node type, NUMA node and firmware; per
 * port the state, physical state, link layer, active MTU, speed, and every
 * valid GID with its index, type (IB, RoCE v1, RoCE v2) and net device.
 * Works without opening the transport and without an active port. Returns
 * 0 (also when there are no devices: a line then says why), or a negative
 * errno.
 */
int ragg__verbs_describe(char *buf, size_t len);

/* NUMA node of the named RDMA device (sysfs), or -1 when unknown. */
int ragg__verbs_numa_node(const char *device);

/* ---- settings (config.c) ---- */

struct ragg__verbs_config {
	char device[64];  /* "": the first device with an active port */
	long port;        /* 0: the first active port */
	long gid_index;   /* -1: automatic */
	long queue_depth; /* send WRs per endpoint */
	long srq_depth;   /* 0: automatic */
	long cq_depth;    /* 0: automatic */
	long inline_size; /* requested; the device may grant less */
	long signal_interval;
	long poll_batch;
	size_t max_msg_size; /* 0: the port's */
	size_t bounce_size;
	long resolve_timeout_ms;
	long tos; /* -1: rdma_cm's default */
	long rnr_retry;
	long retry_count;
};

/* Defaults overridden by the environment (the rows of
 * ragg__tp_verbs_settings, config.c). 0, or RAGG_ERR_CONFIG with the
 * offending variable named in why. */
int ragg__verbs_config_read(struct ragg__verbs_config *cfg, char *why, size_t why_len);

/* ---- intrusive lists ---- */

struct ragg__verbs_link {
	struct ragg__verbs_link *prev, *next;
};

static inline void ragg__verbs_list_init(struct ragg__verbs_link *head)
{
	head->prev = head->next = head;
}

static inline bool ragg__verbs_list_empty(const struct ragg__verbs_link *head)
{
	return head->next == head;
}

static inline void ragg__verbs_list_add_tail(struct ragg__verbs_link *head,
                                             struct ragg__verbs_link *l)
{
	l->prev = head->prev;
	l->next = head;
	head->prev->next = l;
	head->prev = l;
}

static inline void ragg__verbs_list_del(struct ragg__verbs_link *l)
{
	l->prev->next = l->next;
	l->next->prev = l->prev;
	l->prev = l->next = l;
}

/* ---- objects ---- */

/* Packed remote descriptor: little-endian addr(8) rkey(4) len(8). */
#define RAGG__VERBS_RDESC_LEN 20

struct ragg__verbs_mr {
	struct ragg_tp_mr base;
	struct ragg__verbs_dev *dev;
	struct ibv_mr *mr;
};

enum ragg__verbs_ep_state {
	RAGG__VERBS_EP_RESOLVING,  /* connector: address, then route */
	RAGG__VERBS_EP_CONNECTING, /* connector: REQ sent */
	RAGG__VERBS_EP_REQUESTED,  /* acceptor: CONNECT_REQUEST given to the core */
	RAGG__VERBS_EP_ACCEPTING,  /* acceptor: REP sent, waiting for RTU */
	RAGG__VERBS_EP_CONNECTED,
	RAGG__VERBS_EP_REJECTED, /* acceptor: refused, waiting for ep_close */
	RAGG__VERBS_EP_FAILED,   /* DISCONNECTED owed or given */
};

/* What a send WR was for, by WR number modulo depth. */
struct ragg__verbs_wri {
	uint64_t cookie;
	uint64_t bounce_tail; /* the bounce ring's tail after this WR */
	bool report;          /* the caller asked for WRITE_DONE */
};

struct ragg__verbs_ep {
	struct ragg_tp_ep base;
	struct ragg__verbs_dev *dev;
	struct ragg__verbs_link link; /* dev->eps */
	struct ragg__verbs_link pend; /* dev->failed while DISCONNECTED is owed */
	struct ragg__verbs_ep *hnext; /* dev->qp_hash chain */
	struct rdma_cm_id *id;
	struct ibv_qp *qp;
	uint32_t qp_num;
	enum ragg__verbs_ep_state state;
	int status;        /* why it failed */
	bool owed_down;    /* DISCONNECTED not reported yet */
	bool notified;     /* rdma_notify(COMM_EST) done */
	uint64_t note_len; /* length of the split write landing next, or 0 */

	/* Send queue; see the credit comment at the top. */
	uint32_t depth;
	uint64_t sq_posted, sq_done;
	uint32_t unsignalled; /* WRs since the last signalled one */
	struct ragg__verbs_wri *wri;
	uint8_t (*msgs)[RAGG_TP_MSG_MAX]; /* send() copies for non-inline */
	struct ibv_mr *msgs_mr;
	/* Copies of unregistered write sources (write.c), on first use. */
	uint8_t *bounce;
	struct ibv_mr *bounce_mr;
	uint64_t bounce_head, bounce_tail;

	/* Connector: the private data to send once the route is resolved. */
	uint8_t priv_out[RAGG_TP_PRIV_MAX];
	size_t priv_out_len;
	/* The peer's private data (CONNECT_REQUEST / CONNECTED). */
	uint8_t priv[RAGG_TP_PRIV_MAX];
	size_t priv_len;
};

#define RAGG__VERBS_WR_RECV (1ull << 63)
/* Immediate of the length note sent before the last WR of a write split
 * over several WRs: the receiver's CQE only knows the last WR's length.
 * Control messages from send() carry no immediate. */
#define RAGG__VERBS_LEN_NOTE 0x4c454e31u /* "LEN1" */

struct ragg__verbs_dev {
	struct ragg_tp_dev base;
	struct ragg__verbs_config cfg;
	int wake_fd; /* the one in the epoll set */

	struct ibv_context **cm_devs; /* rdma_get_devices(), ours among them */
	struct ibv_context *ctx;
	char name[64];
	uint8_t port;
	struct ibv_device_attr dattr;
	struct ibv_port_attr pattr;
	struct ibv_pd *pd;
	struct ibv_comp_channel *comp_ch;
	struct ibv_cq *cq;
	int cq_size;      /* CQEs the CQ holds */
	int cq_committed; /* CQEs the SRQ and the live QPs may produce */
	unsigned cq_events_unacked;
	struct ibv_srq *srq;

	/* Derived limits. */
	uint32_t depth; /* send credits per endpoint */
	uint32_t signal_interval;
	uint32_t max_inline;
	uint64_t max_msg;   /* one WR's largest payload */
	uint64_t max_write; /* one write_imm's largest payload */
	uint32_t max_wrs_per_write;

	/* Shared receive queue: srq_depth buffers of RAGG_TP_MSG_MAX bytes. */
	uint32_t srq_depth;
	uint8_t (*rbufs)[RAGG_TP_MSG_MAX];
	struct ibv_mr *rbufs_mr;
	uint32_t *repost; /* consumed, re-posted by the next poll() */
	uint32_t nrepost;
	struct ibv_recv_wr *rwr; /* scratch for batched re-posting */
	struct ibv_sge *rsge;
	struct ibv_send_wr *swr; /* scratch for a split write */
	struct ibv_sge *ssge;

	/* Completion ring; see the top of this file. */
	struct ibv_wc *wc;
	uint32_t wc_cap, wc_head, wc_count;

	struct rdma_event_channel *cm_ch;
	struct rdma_cm_id *listen_id;
	char listen_addr[RAGG_TP_ADDR_MAX];
	int epfd;
	int resolving; /* endpoints waiting on rdma_cm, polled eagerly */
	unsigned poll_calls;
	int64_t next_slow_us; /* next look at the rdma_cm and async fds */
	bool cm_ready;        /* wait() saw the cm channel readable */
	bool async_ready;

	struct ragg__verbs_link eps;    /* every endpoint */
	struct ragg__verbs_link failed; /* endpoints owing DISCONNECTED */
	struct ragg__verbs_ep **qp_hash;
	uint32_t qp_hash_mask;
};

/* Where poll() puts events. */
struct ragg__verbs_out {
	struct ragg_tp_event *ev;
	int n, max;
};

static inline struct ragg__verbs_dev *ragg__verbs_dev(struct ragg_tp_dev *d)
{
	return ragg__container_of(d, struct ragg__verbs_dev, base);
}

static inline struct ragg__verbs_ep *ragg__verbs_ep(struct ragg_tp_ep *e)
{
	return ragg__container_of(e, struct ragg__verbs_ep, base);
}

static inline struct ragg__verbs_mr *ragg__verbs_mr(struct ragg_tp_mr *m)
{
	return ragg__container_of(m, struct ragg__verbs_mr, base);
}

static inline int ragg__verbs_out_room(const struct ragg__verbs_out *out)
{
	return out->max - out->n;
}

/* The next event slot, zeroed; the caller checked there is room. */
struct ragg_tp_event *ragg__verbs_out_next(struct ragg__verbs_out *out, struct ragg__verbs_ep *ep,
                                           enum ragg_tp_event_type type);

#define ragg__verbs_log(dev, lvl, ...)                                 \
	do {                                                           \
		const struct ragg_tp_params *p_ = &(dev)->base.params; \
		if (p_->log_level >= (lvl))                            \
			p_->log((lvl), "verbs: " __VA_ARGS__);         \
	} while (0)
#define ragg__verbs_error(dev, ...) ragg__verbs_log(dev, RAGG_LOG_ERROR, __VA_ARGS__)
#define ragg__verbs_warn(dev, ...) ragg__verbs_log(dev, RAGG_LOG_WARN, __VA_ARGS__)
#define ragg__verbs_info(dev, ...) ragg__verbs_log(dev, RAGG_LOG_INFO, __VA_ARGS__)
#define ragg__verbs_debug(dev, ...) ragg__verbs_log(dev, RAGG_LOG_DEBUG, __VA_ARGS__)

/* ---- device.c ---- */
int ragg__verbs_probe(char *why, size_t why_len);
int ragg__verbs_open(const struct ragg_tp_params *params, struct ragg_tp_dev **dev);
void ragg__verbs_close(struct ragg_tp_dev *d);
int ragg__verbs_query(struct ragg_tp_dev *d, struct ragg_tp_attr *attr);
/* Make room in the CQ for one more QP's send queue; 0 or negative errno. */
int ragg__verbs_cq_reserve(struct ragg__verbs_dev *dev, int cqes);
void ragg__verbs_cq_release(struct ragg__verbs_dev *dev, int cqes);
/* Register params.wake_fd in the epoll set if it changed since. */
int ragg__verbs_wake_sync(struct ragg__verbs_dev *dev);
const char *ragg__verbs_port_state_str(enum ibv_port_state s);

/* ---- address.c ---- */
/* Split "host:port", "[v6]:port", "[v6]", "host" or ":port"; port may come
 * back empty. */
int ragg__verbs_addr_split(const char *addr, char *host, size_t host_len, char *port,
                           size_t port_len);
int ragg__verbs_addr_format(const struct sockaddr *sa, char *buf, size_t len);
/* Resolve host and port (numeric or names) into ss; 0 or negative errno. */
int ragg__verbs_addr_resolve(const char *host, const char *port, struct sockaddr_storage *ss);
/* The IP address behind the device's port (the GID at gid_index, or the
 * first usable one), for a listener without a host. */
int ragg__verbs_addr_local(struct ragg__verbs_dev *dev, struct sockaddr_storage *ss);
/* A loopback address becomes the device's own (same port): RDMA reaches
 * this host through the device, never through lo. 1 when replaced, 0 when
 * ss was not loopback, or negative errno. */
int ragg__verbs_addr_unloop(struct ragg__verbs_dev *dev, struct sockaddr_storage *ss);

/* ---- memory.c ---- */
int ragg__verbs_mr_reg(struct ragg_tp_dev *d, void *addr, size_t len, struct ragg_tp_mr **mr,
                       struct ragg_tp_rdesc *rdesc);
int ragg__verbs_mr_dereg(struct ragg_tp_mr *m);
/* ibv_reg_mr with errors turned into advice (RLIMIT_MEMLOCK). */
struct ibv_mr *ragg__verbs_reg(struct ragg__verbs_dev *dev, void *addr, size_t len, int access,
                               const char *what, int *rc);
/* Unpack a peer's descriptor; false when it is not one of ours. */
bool ragg__verbs_rdesc_unpack(const struct ragg_tp_rdesc *r, uint64_t *addr, uint32_t *rkey,
                              uint64_t *len);

/* ---- endpoint.c ---- */
int ragg__verbs_listen(struct ragg_tp_dev *d, const char *host, char *addr, size_t addr_len);
int ragg__verbs_connect(struct ragg_tp_dev *d, const char *addr, const void *priv, size_t priv_len,
                        void *user, struct ragg_tp_ep **ep);
int ragg__verbs_accept(struct ragg_tp_ep *e, const void *priv, size_t priv_len);
int ragg__verbs_reject(struct ragg_tp_ep *e);
void ragg__verbs_ep_close(struct ragg_tp_ep *e);
/* Owe DISCONNECTED(status) and stop using the endpoint. Idempotent. */
void ragg__verbs_ep_fail(struct ragg__verbs_ep *ep, int status);
struct ragg__verbs_ep *ragg__verbs_ep_by_qp(struct ragg__verbs_dev *dev, uint32_t qp_num);
/* Handle rdma_cm events while out has room; false when the channel failed. */
void ragg__verbs_cm_progress(struct ragg__verbs_dev *dev, struct ragg__verbs_out *out);
/* Tear down every endpoint and the listener (close()). */
void ragg__verbs_ep_close_all(struct ragg__verbs_dev *dev);

/* ---- write.c ---- */
int ragg__verbs_write_imm(struct ragg_tp_ep *e, const void *laddr, struct ragg_tp_mr *lmr,
                          const struct ragg_tp_rdesc *remote, uint64_t roff, size_t len,
                          uint32_t imm, unsigned flags, uint64_t cookie);
int ragg__verbs_send(struct ragg_tp_ep *e, const void *buf, size_t len);

/* ---- progress.c ---- */
int ragg__verbs_poll(struct ragg_tp_dev *d, struct ragg_tp_event *events, int max);
int ragg__verbs_wait(struct ragg_tp_dev *d, int timeout_ms);
/* Waiting on several devices: see transport.h. wait_fd is the epoll fd. */
int ragg__verbs_arm(struct ragg_tp_dev *d);
int ragg__verbs_wait_fd(struct ragg_tp_dev *d);
/* Post SRQ receives for the given buffer indexes. */
int ragg__verbs_srq_post(struct ragg__verbs_dev *dev, const uint32_t *idx, uint32_t n);
/* Move CQEs from the CQ to the ring; the number moved or negative errno. */
int ragg__verbs_cq_drain(struct ragg__verbs_dev *dev, int max);
/* Forget the CQEs of a destroyed QP (see the top of this file). */
void ragg__verbs_wc_forget(struct ragg__verbs_dev *dev, uint32_t qp_num);

#endif
