/*
 * The transport table: what a transport (tcp, verbs, shm ...) provides to the
 * ragg core. A transport is one folder in transports/ filling one
 * `struct ragg_tp_ops` and one line in the registry. The core never includes
 * verbs or socket headers; everything device-specific stays behind this table.
 *
 * Model: one-sided writes with a 32-bit immediate into memory the peer has
 * registered, plus small control messages. Every call is non-blocking; all
 * progress and notifications come out of poll(). Writes posted on one
 * endpoint land at the peer in the order they were posted (a write with an
 * immediate is reported only after every earlier write on that endpoint has
 * landed). A remote write can only ever land inside a region its peer
 * registered and described to it, and only with the right key.
 *
 * Errors: 0 or a negative errno / RAGG_ERR_* code, as in <ragg/ragg.h>.
 * -EAGAIN from write_imm or send means "queue full: poll, then retry".
 */
#ifndef RAGG_TRANSPORT_H
#define RAGG_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>

#include <ragg/ragg.h>

#ifdef __cplusplus
extern "C" {
#endif

#define RAGG_TP_ABI_VERSION 1

/* Largest packed memory descriptor and connection private data. The private
 * data bound is rdma_cm's field for an RC connect request; a transport's
 * ragg_tp_attr.max_priv says what it really carries (verbs: one byte less,
 * for the length). */
#define RAGG_TP_RDESC_MAX 32
#define RAGG_TP_PRIV_MAX  56
/* Largest control message for send(). */
#define RAGG_TP_MSG_MAX 256
/* Largest endpoint address ("host:port", or a transport's own form). */
#define RAGG_TP_ADDR_MAX 128

enum ragg_log_level {
	RAGG_LOG_NONE = 0,
	RAGG_LOG_ERROR,
	RAGG_LOG_WARN,
	RAGG_LOG_INFO,
	RAGG_LOG_DEBUG,
};

/* Capability flags a transport sets in ops->caps; they must match what it
 * implements. */
#define RAGG_TP_CAP_WRITE_IMM  (1u << 0)
#define RAGG_TP_CAP_SEND       (1u << 1)
#define RAGG_TP_CAP_INLINE     (1u << 2) /* small writes complete at post time */
#define RAGG_TP_CAP_ZERO_COPY  (1u << 3) /* receiver's payload lands straight in the slot */
#define RAGG_TP_CAP_LOCAL_ONLY (1u << 4) /* peers must be on this host */
#define RAGG_TP_CAP_SEAL       (1u << 5) /* seal() works (RAGG_SEAL=on) */

/* write_imm flags */
#define RAGG_TP_WRITE_IMM    (1u << 0) /* deliver the immediate to the peer */
#define RAGG_TP_WRITE_SIGNAL (1u << 1) /* report RAGG_TP_EV_WRITE_DONE locally */

/* Opaque, length-prefixed description of a registered region, packed by the
 * transport that registered it and sent to the peer. */
struct ragg_tp_rdesc {
	uint8_t len;
	uint8_t blob[RAGG_TP_RDESC_MAX];
};

struct ragg_tp_ops;

/* Settings the core passes to open(). */
struct ragg_tp_params {
	size_t size;
	int poll_mode; /* enum ragg_poll */
	int spin_us;
	int timeout_ms; /* deadline of a connection's set-up (RAGG_HANDSHAKE_MS) */
	int max_peers; /* sizing hint */
	/* Logging sink; level is enum ragg_log_level. Never NULL. */
	void (*log)(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
	int log_level;
	int wake_fd; /* also wake wait() when this fd is readable, or -1 */
};

/* The core-visible heads of transport objects; transports embed them as the
 * first member of their own structs and get back with container_of. */
struct ragg_tp_dev {
	const struct ragg_tp_ops *ops;
	struct ragg_tp_params params;
};

struct ragg_tp_mr {
	void *addr;
	size_t len;
};

struct ragg_tp_ep {
	struct ragg_tp_dev *dev;
	void *user; /* owned by the core */
	char peer[RAGG_TP_ADDR_MAX]; /* printable peer address, for messages */
};

enum ragg_tp_event_type {
	/* Incoming connection: ep is pending, data/len the peer's private data.
	 * The core answers with accept() or reject(). */
	RAGG_TP_EV_CONNECT_REQUEST = 1,
	/* Connection ready. On the connecting side data/len carry the
	 * acceptor's private data. */
	RAGG_TP_EV_CONNECTED,
	/* A signalled local write finished; its buffer may be reused. */
	RAGG_TP_EV_WRITE_DONE,
	/* A peer's write with immediate landed; imm and len set. */
	RAGG_TP_EV_WRITE_LANDED,
	/* A control message; data valid until the next poll(). */
	RAGG_TP_EV_RECV,
	/* The endpoint failed or the peer closed; status says why. The core
	 * must still ep_close() it. */
	RAGG_TP_EV_DISCONNECTED,
	/* One or more regions of this endpoint's peer for which peer_map()
	 * returned -EINPROGRESS got their answer: peer_map() now says 0 or
	 * a final error. Only transports with peer_map produce it. */
	RAGG_TP_EV_PEER_MAPPED,
};

struct ragg_tp_event {
	enum ragg_tp_event_type type;
	int status;
	struct ragg_tp_ep *ep;
	uint32_t imm;
	uint64_t cookie;
	size_t len;
	const void *data;
};

struct ragg_tp_attr {
	size_t size;
	size_t max_write; /* largest single write_imm */
	size_t max_inline; /* writes up to this size are sent inline */
	size_t max_priv; /* connection private data limit */
	int queue_depth; /* outstanding writes per endpoint before -EAGAIN */
	char device[64]; /* device in use, e.g. "rxe0" or "lo" */
};

struct ragg_tp_ops {
	size_t size; /* sizeof(struct ragg_tp_ops): the table can grow */
	unsigned abi; /* RAGG_TP_ABI_VERSION */
	const char *name;
	unsigned caps;

	/* Usable here? 0 yes; otherwise negative with a reason in why. */
	int (*probe)(char *why, size_t why_len);

	/* One device context per process. */
	int (*open)(const struct ragg_tp_params *params, struct ragg_tp_dev **dev);
	void (*close)(struct ragg_tp_dev *dev);
	int (*query)(struct ragg_tp_dev *dev, struct ragg_tp_attr *attr);

	/* Register memory for remote writes into it (and as a write source);
	 * rdesc receives the packed descriptor to give to peers. */
	int (*mr_reg)(struct ragg_tp_dev *dev, void *addr, size_t len, struct ragg_tp_mr **mr,
	              struct ragg_tp_rdesc *rdesc);
	int (*mr_dereg)(struct ragg_tp_mr *mr);

	/* Listen on host (port 0: any); the reachable address is written to
	 * addr ("host:port"). One listener per device. */
	int (*listen)(struct ragg_tp_dev *dev, const char *host, char *addr, size_t addr_len);
	/* Start connecting to addr, carrying priv; completion arrives as
	 * RAGG_TP_EV_CONNECTED (or DISCONNECTED) from poll(). */
	int (*connect)(struct ragg_tp_dev *dev, const char *addr, const void *priv, size_t priv_len,
	               void *user, struct ragg_tp_ep **ep);
	int (*accept)(struct ragg_tp_ep *ep, const void *priv, size_t priv_len);
	int (*reject)(struct ragg_tp_ep *ep);
	/* Release an endpoint (any state); no event refers to it afterwards. */
	void (*ep_close)(struct ragg_tp_ep *ep);

	/* One-sided write of len bytes from laddr (inside lmr, or any memory
	 * when lmr is NULL and the transport allows it) to offset roff of the
	 * peer's region described by remote. */
	int (*write_imm)(struct ragg_tp_ep *ep, const void *laddr, struct ragg_tp_mr *lmr,
	                 const struct ragg_tp_rdesc *remote, uint64_t roff, size_t len,
	                 uint32_t imm, unsigned flags, uint64_t cookie);
	int (*send)(struct ragg_tp_ep *ep, const void *buf, size_t len);

	/* Progress and collect up to max events; never blocks. */
	int (*poll)(struct ragg_tp_dev *dev, struct ragg_tp_event *events, int max);
	/* Sleep until poll() may have something or timeout_ms passes (0 on
	 * either). */
	int (*wait)(struct ragg_tp_dev *dev, int timeout_ms);

	/* Optional (NULL: any memory may be registered as it is). Memory that
	 * suits mr_reg best, e.g. shared memory that same-host peers map, so
	 * that their writes land in it with one copy. Page aligned, zeroed. */
	void *(*mem_alloc)(struct ragg_tp_dev *dev, size_t len);
	void (*mem_free)(struct ragg_tp_dev *dev, void *p, size_t len);
	/* Optional (NULL: every address is reachable). Whether this device can
	 * connect to a peer's listen address; 1 yes, 0 no. */
	int (*reachable)(struct ragg_tp_dev *dev, const char *addr);

	/* Optional, both or neither: waiting on several devices at once (a
	 * process using shm to its neighbours and tcp or verbs to the rest).
	 * arm() prepares the device for sleeping: -EAGAIN when poll() has
	 * events already (do not sleep), else 0, and from then on wait_fd()
	 * becomes readable as soon as poll() may have something. The caller
	 * sleeps in poll(2)/epoll on the fds of all its devices, then polls
	 * every device. */
	int (*arm)(struct ragg_tp_dev *dev);
	int (*wait_fd)(struct ragg_tp_dev *dev);

	/* Optional (NULL: never possible). Load/store access to a peer's
	 * region, for transports whose peers share memory, so that a sum or
	 * copy can read or write it in place instead of through a write. 0:
	 * *ptr is the region's first byte as mapped here, valid until
	 * ep_close(). -EINPROGRESS: the owner is being asked; poll(), then
	 * call again once poll() reported RAGG_TP_EV_PEER_MAPPED for ep.
	 * -EOPNOTSUPP: this region cannot be mapped (e.g. it is
	 * the peer's private memory); writes still reach it. *len is the
	 * region's length as its owner registered it, whatever the
	 * descriptor claims. Stores through the pointer carry no
	 * notification: a write_imm of length 0 posted after them delivers
	 * the immediate, and the peer then sees them. */
	int (*peer_map)(struct ragg_tp_ep *ep, const struct ragg_tp_rdesc *remote, void **ptr,
	                size_t *len);

	/* Set whenever the table is this large (a stub returning -EOPNOTSUPP
	 * where the transport has nothing to say; callers still test tables
	 * from older headers with RAGG_TP_HAS_OP). A readable inventory of
	 * the devices this transport would use here, for ragg-info: lines of
	 * text, each indented by two spaces and ending in a newline, written
	 * to buf (always NUL-terminated, cut at len). Needs no open device.
	 * 0, or a negative code. */
	int (*describe)(char *buf, size_t len);

	/* Set whenever the table is this large (a stub returning -EOPNOTSUPP
	 * where the transport cannot seal; it then leaves RAGG_TP_CAP_SEAL
	 * out of caps, and the core refuses RAGG_SEAL=on with it). From now
	 * on, seal every frame this endpoint
	 * sends and open every frame it receives with the AEAD `cipher`
	 * (RAGG_TP_SEAL_*): frames sent with tx_key, frames received with
	 * rx_key (key_len bytes each, RAGG_TP_SEAL_KEY_BYTES), each
	 * direction's nonce a counter starting at 0, so a frame altered,
	 * replayed, reordered or dropped on the way fails to open. The core
	 * calls it once per endpoint, on the connection's control stream, at
	 * the point both sides agree on: right after the last message it
	 * sends in the clear and right after the last message it receives in
	 * the clear (the handshake's proofs). A frame that fails to open
	 * drops the connection: DISCONNECTED with RAGG_ERR_AUTH, and a log
	 * line. The keys are copied. 0; -EINVAL (bad cipher or key length),
	 * -EOPNOTSUPP (cipher not available here), -EALREADY, -ENOTCONN, or
	 * -ENOMEM. */
	int (*seal)(struct ragg_tp_ep *ep, unsigned cipher, const uint8_t *rx_key,
	            const uint8_t *tx_key, size_t key_len);
};

/* Ciphers for seal(). */
#define RAGG_TP_SEAL_AES256GCM         1 /* AES-256-GCM (needs AES-NI here) */
#define RAGG_TP_SEAL_CHACHA20POLY1305  2 /* ChaCha20-Poly1305, IETF variant */
#define RAGG_TP_SEAL_KEY_BYTES         32

/* Whether ops (of a transport built against an older header) has op. */
#define RAGG_TP_HAS_OP(ops, op)                                                                    \
	((ops)->size >= offsetof(struct ragg_tp_ops, op) + sizeof((ops)->op) && (ops)->op)

/* The transport built into this library under name, or NULL. */
RAGG_API const struct ragg_tp_ops *ragg_transport_find(const char *name);
/* NULL-terminated list of every built-in transport, in the order
 * RAGG_TRANSPORT=auto tries them. */
RAGG_API const struct ragg_tp_ops *const *ragg_transport_list(void);
/* Whether this library understands the table ops: its abi is
 * RAGG_TP_ABI_VERSION, its size holds every required operation, and none
 * of them is NULL. 0; or RAGG_ERR_VERSION (another ABI, a table too
 * small) or -EINVAL (a required operation missing), with the reason in
 * why (NUL-terminated, cut at why_len; why may be NULL). The library
 * checks every table so before opening it. */
RAGG_API int ragg_transport_check(const struct ragg_tp_ops *ops, char *why, size_t why_len);

#ifdef __cplusplus
}
#endif
#endif
