/*
 * Out of descriptors on accept (EMFILE, ENFILE), handled as libuv does: a
 * listener stays readable while connections wait in its backlog, so a
 * level-triggered loop that just retries spins at full speed and logs one
 * line per attempt. Instead the listener gives up a descriptor it keeps in
 * reserve (/dev/null) to accept and close what waits (those peers see the
 * connection closed at once instead of hanging), takes the reserve back,
 * and stays out of its poll set for a pause that doubles from 50 ms to
 * 1 s while the shortage lasts. One warning per 10 s says so, with counts.
 * A successful accept ends the shortage.
 */
#ifndef RAGG_TP_UTIL_ACCEPT_H
#define RAGG_TP_UTIL_ACCEPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ragg__tp_accept_guard {
	int reserve_fd; /* -1 when it could not be (re)opened */
	int pause_ms; /* the current pause, 0 outside a shortage */
	int64_t paused_until; /* listener out of the poll set until then; 0: armed */
	int64_t last_log_ms; /* the last warning; 0: none yet */
	unsigned long shed, shed_logged; /* connections closed unserved: all, at the last warning */
	unsigned long hits, hits_logged; /* accepts that met the shortage: same */
};

#define RAGG_TP_ACCEPT_PAUSE_MIN_MS 50
#define RAGG_TP_ACCEPT_PAUSE_MAX_MS 1000
#define RAGG_TP_ACCEPT_LOG_EVERY_MS 10000

void ragg__tp_accept_guard_init(struct ragg__tp_accept_guard *g);
void ragg__tp_accept_guard_fini(struct ragg__tp_accept_guard *g);

/* accept() on lfd failed with EMFILE or ENFILE at `now` (ms, any clock):
 * shed what waits and start or lengthen the pause (the caller takes the
 * listener out of its poll set until g->paused_until). True when the
 * caller should log a warning now, at most once per
 * RAGG_TP_ACCEPT_LOG_EVERY_MS; *shed and *hits then count since the last
 * one. */
bool ragg__tp_accept_exhausted(struct ragg__tp_accept_guard *g, int lfd, int64_t now,
                               unsigned long *shed, unsigned long *hits);

/* An accept succeeded: the shortage, if any, is over. */
static inline void ragg__tp_accept_ok(struct ragg__tp_accept_guard *g)
{
	g->pause_ms = 0;
}

/* True once when the pause is over at `now`: the caller listens again. */
static inline bool ragg__tp_accept_resume(struct ragg__tp_accept_guard *g, int64_t now)
{
	if (!g->paused_until || now < g->paused_until)
		return false;
	g->paused_until = 0;
	return true;
}

/* For a listener in an epoll set (epfd, its data tag): out of descriptors
 * (err), shed and pause as above and take it out of the set; when it is
 * time to say so, the warning's text (naming `where`) is in msg and the
 * answer is true. */
bool ragg__tp_accept_pause_epoll(struct ragg__tp_accept_guard *g, int epfd, int lfd, uint64_t tag,
                                 int64_t now, const char *where, int err, char *msg,
                                 size_t cap);
/* Its pause over: back into the set. */
void ragg__tp_accept_resume_epoll(struct ragg__tp_accept_guard *g, int epfd, int lfd,
                                  uint64_t tag, int64_t now);

#endif
