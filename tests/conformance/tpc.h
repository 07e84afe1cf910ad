/*
 * The transport conformance suite: every case runs once per transport the
 * library was built with (or only the one named by --transport NAME or
 * RAGG_TRANSPORT), as "<transport>/<case>". A transport whose probe() says
 * it cannot run here is skipped with its reason.
 *
 * Cases drive two (or more) devices in one process over loopback, or over
 * RAGG_VM_ADDR when set (the Soft-RoCE guest's address), polling them in
 * turn. Every wait is bounded by a deadline; the harness's alarm is only the
 * last resort.
 */
#ifndef RAGG_TPC_H
#define RAGG_TPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ragg/transport.h>

#include "compiler.h"
#include "harness.h"

/* Transports one binary can iterate over. */
#define TPC_SLOTS    4
#define TPC_MAX_DEVS 4
/* Default bound on one expected event. */
#define TPC_DEADLINE_MS 10000

struct tpc_case {
	const char *name;
	int timeout_s;
	const char *only; /* transport name, or NULL: every transport */
	void (*slot[TPC_SLOTS])(void);
	struct tpc_case *next;
	/* NULL, or: instantiated only for transports where it holds (an
	 * optional op the case is about); `needs` names it for the note
	 * the runner prints about the others. */
	bool (*when)(const struct ragg_tp_ops *tp);
	const char *needs;
};

void tpc_case_add(struct tpc_case *c);
void tpc_run(int slot, void (*body)(const struct ragg_tp_ops *tp));

#define TPC_CASE_X(name_, timeout_, only_, when_, needs_)                                          \
	static void tpc_body_##name_(const struct ragg_tp_ops *tp);                                \
	static void tpc_##name_##_0(void)                                                          \
	{                                                                                          \
		tpc_run(0, tpc_body_##name_);                                                      \
	}                                                                                          \
	static void tpc_##name_##_1(void)                                                          \
	{                                                                                          \
		tpc_run(1, tpc_body_##name_);                                                      \
	}                                                                                          \
	static void tpc_##name_##_2(void)                                                          \
	{                                                                                          \
		tpc_run(2, tpc_body_##name_);                                                      \
	}                                                                                          \
	static void tpc_##name_##_3(void)                                                          \
	{                                                                                          \
		tpc_run(3, tpc_body_##name_);                                                      \
	}                                                                                          \
	static struct tpc_case tpc_case_##name_ = {                                                \
		.name = #name_,                                                                    \
		.timeout_s = timeout_,                                                             \
		.only = only_,                                                                     \
		.slot = { tpc_##name_##_0, tpc_##name_##_1, tpc_##name_##_2, tpc_##name_##_3 },    \
		.when = when_,                                                                     \
		.needs = needs_,                                                                   \
	};                                                                                         \
	__attribute__((constructor)) static void tpc_reg_##name_(void)                             \
	{                                                                                          \
		tpc_case_add(&tpc_case_##name_);                                                   \
	}                                                                                          \
	static void tpc_body_##name_(const struct ragg_tp_ops *tp)

#define TPC_CASE_T(name_, timeout_, only_) TPC_CASE_X(name_, timeout_, only_, NULL, NULL)
#define TPC_CASE(name_)                    TPC_CASE_T(name_, 30, NULL)
/* Cases that speak one transport's wire format. */
#define TPC_CASE_ONLY(name_, transport_) TPC_CASE_T(name_, 30, transport_)
/* Cases about an optional op: a transport without it gets no instance (and
 * a note on stderr), not a failure or a skip. */
#define TPC_CASE_WHEN(name_, when_, needs_) TPC_CASE_X(name_, 30, NULL, when_, needs_)

uint64_t tpc_now_ms(void);
bool tpc_is(const struct ragg_tp_ops *tp, const char *name);

/* ---- logs: captured so cases can check what the transport said ---- */
void tpc_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
bool tpc_log_has(const char *needle);
void tpc_log_clear(void);

/* ---- devices and events ---- */

/* ev.data points into the world (valid for the next 16 events taken). */
struct tpc_ev {
	int dev;
	struct ragg_tp_event ev;
	uint8_t data[RAGG_TP_MSG_MAX];
};

struct tpc_world {
	const struct ragg_tp_ops *tp;
	int ndev;
	struct ragg_tp_dev *dev[TPC_MAX_DEVS];
	char addr[TPC_MAX_DEVS][RAGG_TP_ADDR_MAX];
	struct tpc_ev *q;
	size_t qlen, qcap;
	int next_wait; /* device wait() sleeps on next when idle */
	/* Data of events taken from the queue, so they can be passed around
	 * by value: the last few stay valid. */
	uint8_t held[16][RAGG_TP_MSG_MAX];
	unsigned nheld;
};

void tpc_params(struct ragg_tp_params *p);
/* Open ndev devices with default params. */
void tpc_world_init(struct tpc_world *w, const struct ragg_tp_ops *tp, int ndev);
/* Open one more device with given params; returns its index. */
int tpc_world_add(struct tpc_world *w, const struct ragg_tp_params *p);
void tpc_world_fini(struct tpc_world *w);
/* Listen on device i at RAGG_VM_ADDR (default 127.0.0.1), port 0. */
const char *tpc_listen(struct tpc_world *w, int i);
/* Poll each device once into the queue; sleep briefly when nothing came. */
int tpc_pump(struct tpc_world *w);
/* First queued event matching (dev, type, ep or NULL for any); pumps until
 * one comes or timeout_ms passes (test fails). */
struct tpc_ev tpc_expect(struct tpc_world *w, int dev, enum ragg_tp_event_type type,
                         struct ragg_tp_ep *ep, int timeout_ms);
/* Like tpc_expect without failing: true when found. */
bool tpc_wait_for(struct tpc_world *w, int dev, enum ragg_tp_event_type type, struct ragg_tp_ep *ep,
                  int timeout_ms, struct tpc_ev *out);
/* Remove a matching event already queued. */
bool tpc_take(struct tpc_world *w, int dev, enum ragg_tp_event_type type, struct ragg_tp_ep *ep,
              struct tpc_ev *out);
/* Count queued events matching. */
size_t tpc_count(const struct tpc_world *w, int dev, enum ragg_tp_event_type type,
                 const struct ragg_tp_ep *ep);

/* Connect device c to device s (which listens if it does not yet), passing
 * private data both ways and checking it arrives intact. */
void tpc_pair(struct tpc_world *w, int s, int c, const void *cpriv, size_t clen, const void *spriv,
              size_t slen, struct ragg_tp_ep **sep, struct ragg_tp_ep **cep);

/* Post a write, polling both sides on -EAGAIN until it is taken. */
void tpc_write(struct tpc_world *w, struct ragg_tp_ep *ep, const void *laddr,
               struct ragg_tp_mr *lmr, const struct ragg_tp_rdesc *rd, uint64_t roff, size_t len,
               uint32_t imm, unsigned flags, uint64_t cookie);

/* ---- memory ---- */

/* A slot of len bytes with guard bytes on both sides inside one
 * allocation; only the slot is registered. */
struct tpc_slot {
	uint8_t *base; /* allocation start */
	uint8_t *addr; /* the slot */
	size_t len, guard;
	struct ragg_tp_mr *mr;
	struct ragg_tp_rdesc rd;
};

#define TPC_GUARD_BYTE 0xA5
void tpc_slot_init(struct tpc_world *w, int dev, struct tpc_slot *s, size_t len);
void tpc_slot_fini(struct tpc_world *w, struct tpc_slot *s);
/* Guards intact, and the slot holds `fill` everywhere (fill < 0: skip). */
void tpc_slot_check_untouched(const struct tpc_slot *s, int fill);
void tpc_fill(uint8_t *buf, size_t len, uint64_t seed);

#endif
