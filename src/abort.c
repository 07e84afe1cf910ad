/*
 * ragg_abort: a process stops the whole job on purpose and says why. The
 * reason travels as RAGG_MSG_ABORT to every peer, which logs it naming the
 * process that aborted, fails with RAGG_ERR_ABORTED and passes it on to its
 * own peers (a worker's abort reaches the servers through its agent, and
 * the other agents' workers through the servers), once.
 */
#include <errno.h>
#include <string.h>

#include "clock.h"
#include "compiler.h"
#include "core.h"
#include "log.h"

/* How long teardown lets the news leave: the peers learn it "at once", and
 * a peer that is gone or stuck does not hold the caller up for longer. */
#define RAGG_ABORT_FLUSH_MS 1000

/* Text from the wire or the caller, fit for one log line: printable ASCII,
 * anything else as '?'. */
static size_t clean_reason(char *dst, const char *src, size_t len)
{
	if (len > RAGG_ABORT_REASON_MAX)
		len = RAGG_ABORT_REASON_MAX;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)src[i];
		dst[i] = c >= 0x20 && c < 0x7f ? (char)c : '?';
	}
	return len;
}

void ragg__abort_job(struct ragg_ctx *ctx, const struct ragg__peer *from, int role, int rank,
                     const char *reason, size_t len)
{
	if (ctx->aborting)
		return;
	ctx->aborting = true;
	ctx->abort_len = (uint8_t)clean_reason(ctx->abort_reason, reason, len);
	ragg__fail(ctx, RAGG_ERR_ABORTED);
	/* The peers close once told: that is expected now, not a loss. */
	ctx->leaving = true;
	struct ragg__msg m = {
		.type = RAGG_MSG_ABORT,
		.tensor = (uint8_t)role,
		.status = RAGG_ERR_ABORTED,
		.count = (uint64_t)rank,
		.text = ctx->abort_reason,
		.text_len = ctx->abort_len,
	};
	for (int i = 0; i < ctx->npeers; i++) {
		struct ragg__peer *q = &ctx->peers[i];
		if (q == from || q->gone || q->said_bye)
			continue;
		/* Work not yet handed to the transport is moot: the abort goes
		 * next, not behind a round's writes. */
		q->qlen = 0;
		q->qhead = 0;
		ragg__post_msg(q, &m);
	}
}

void ragg__abort_on_msg(struct ragg_ctx *ctx, struct ragg__peer *p, const struct ragg__msg *m)
{
	char why[RAGG_ABORT_REASON_MAX];
	size_t n = clean_reason(why, m->text, m->text_len);
	int role = m->tensor, rank = (int)m->count;

	if (!p->said_bye)
		ctx->byes++;
	p->said_bye = true;
	if (ctx->aborting)
		return;
	if (role == (int)p->role && rank == p->rank)
		ragg__error("%s %d (%s) aborted the job: %.*s", ragg__role_name(role), rank,
		            p->ep->peer, (int)n, why);
	else
		ragg__error("%s %d aborted the job (news from %s %d, %s): %.*s",
		            ragg__role_name(role), rank, ragg__role_name(p->role), p->rank,
		            p->ep->peer, (int)n, why);
	ragg__abort_job(ctx, p, role, rank, why, n);
}

/* The news surely left once every peer told has closed its end: what is
 * queued in ragg is not all, a transport may hold a message behind writes
 * of its own (shm's queue waits for ring room) and drop it at close. */
static bool news_left(void *arg)
{
	struct ragg_ctx *ctx = arg;
	if (!ragg__queues_drained(ctx))
		return false;
	for (int i = 0; i < ctx->npeers; i++) {
		const struct ragg__peer *q = &ctx->peers[i];
		if (q->connected && !q->gone && !q->said_bye)
			return false;
	}
	return true;
}

void ragg__abort_flush(struct ragg_ctx *ctx)
{
	if (!ctx->aborting && !ctx->told_failure)
		return;
	/* Not ragg__wait: it returns at once on a failed job, and this one
	 * failed on purpose. Progress still sends what is queued. */
	uint64_t end = ragg__now_us() + RAGG_ABORT_FLUSH_MS * 1000u;
	while (!news_left(ctx) && ragg__now_us() < end) {
		ragg__progress(ctx);
		if (!news_left(ctx))
			ragg__transports_wait(ctx, 5);
	}
}

RAGG_EXPORT int ragg_abort(ragg_ctx_t *ctx, const char *reason)
{
	char why[RAGG_ABORT_REASON_MAX];
	if (!ctx)
		return -EINVAL;
	if (!reason)
		reason = "";
	size_t n = clean_reason(why, reason, strnlen(reason, RAGG_ABORT_REASON_MAX));
	if (!ctx->aborting)
		ragg__error("%s %d aborts the job: %.*s", ragg__role_name(ctx->opts.role),
		            ctx->opts.rank, (int)n, why);
	ragg__abort_job(ctx, NULL, ctx->opts.role, ctx->opts.rank, why, n);
	/* Sends what is queued (the abort first), then releases everything. */
	ragg_finalize(ctx);
	return 0;
}
