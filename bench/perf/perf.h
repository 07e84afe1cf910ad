/*
 * ragg-perf: write bandwidth and latency over any ragg transport, in the
 * manner of perftest's ib_write_bw / ib_write_lat. One binary is server and
 * client; the client drives every test and the server follows, so only the
 * client's options matter for what is measured.
 *
 * Uses the public API (<ragg/transport.h>) for everything it measures: it is
 * a tool for users measuring their fabric. It links the library's internal
 * build (libragg_core) only to parse its options with the library's own
 * grammars (transports/util/settings.h).
 */
#ifndef RAGG_PERF_H
#define RAGG_PERF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ragg/transport.h>

/* write_bw, write_lat, msg_rate (write_bw's test at small sizes, read as
 * messages per second). */
enum perf_mode { PERF_BW = 1, PERF_LAT = 2, PERF_RATE = 3 };

struct perf_opts {
	const char *transport;
	const char *host; /* client: the server; NULL: be the server */
	const char *bind; /* server: listen host */
	unsigned port;
	enum perf_mode mode;
	size_t size;
	size_t max_size;
	bool all; /* every power of two up to max_size */
	uint64_t iters; /* 0: default for the size */
	double duration; /* seconds; 0: count iterations */
	int depth; /* writes in flight (bw) */
	int timeout_s; /* server: wait this long for a client; both: for progress */
	bool json;
	bool busy; /* spin in poll() instead of sleeping in wait() */
	bool seal; /* seal the connection (transport's seal()) */
	int verbose;
};

/* One connected session, either side. */
struct perf_session {
	const struct perf_opts *o;
	const struct ragg_tp_ops *tp;
	struct ragg_tp_dev *dev;
	struct ragg_tp_ep *ep;
	uint8_t *buf; /* target of the peer's writes; the server also sends from it */
	size_t buf_len;
	struct ragg_tp_mr *mr;
	uint8_t *src; /* client: source of its writes */
	struct ragg_tp_mr *src_mr;
	struct ragg_tp_rdesc remote; /* the peer's buf */
	int queue_depth;
};

/* Control messages; the client asks, the server answers. */
enum perf_op { OP_BEGIN = 1, OP_READY, OP_END, OP_DONE, OP_QUIT };

struct perf_msg {
	uint32_t op;
	uint32_t mode;
	uint64_t size;
	uint64_t count; /* END: writes posted; DONE: writes landed */
	double peak_Bps; /* DONE: best rate over a window at the server */
};

struct perf_bw_result {
	size_t size;
	uint64_t iters;
	double peak_MBps, avg_MBps, Mpps;
};

struct perf_lat_result {
	size_t size;
	uint64_t iters;
	double min_us, median_us, max_us, p99_us, p999_us, avg_us;
};

int perf_parse(int argc, char **argv, struct perf_opts *o);
const char *perf_mode_name(enum perf_mode m);
uint64_t perf_now_ns(void);
void perf_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void perf_die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));

/* session.c */
int perf_server(const struct perf_opts *o);
int perf_client(const struct perf_opts *o);
/* Next event of interest from the peer, polling (and sleeping unless busy)
 * until one comes; exits on disconnect or after timeout_s of nothing. */
int perf_next(struct perf_session *s, struct ragg_tp_event *ev);
void perf_send(struct perf_session *s, const struct perf_msg *m);
void perf_expect(struct perf_session *s, enum perf_op op, struct perf_msg *m);
void perf_write(struct perf_session *s, const void *laddr, struct ragg_tp_mr *lmr, size_t len,
                uint32_t imm, unsigned flags, uint64_t cookie);

/* bw.c, lat.c */
void perf_bw_client(struct perf_session *s, size_t size, struct perf_bw_result *r);
/* Serve one bandwidth test after BEGIN; returns at END. */
void perf_bw_server(struct perf_session *s, const struct perf_msg *begin);
void perf_lat_client(struct perf_session *s, size_t size, struct perf_lat_result *r);
void perf_lat_server(struct perf_session *s, const struct perf_msg *begin);

/* report.c */
void perf_report_header(const struct perf_opts *o);
void perf_report_bw(const struct perf_opts *o, const struct perf_bw_result *r);
void perf_report_lat(const struct perf_opts *o, const struct perf_lat_result *r);
void perf_report_summary(const struct perf_opts *o);

#endif
