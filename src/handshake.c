/*
 * The connection handshake; the transcript, the state machine and why they
 * are what they are: handshake.h.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "core.h"
#include "handshake.h"
#include "log.h"
#include "settings.h"

#define HS_DEAD_MAX 4

enum hs_state {
	HS_IDLE = 0,
	HS_KEYS_SENT, /* ours out, theirs not in yet */
	HS_PROOF_SENT, /* theirs in, our proof out, theirs not checked yet */
	HS_DONE,
};

struct ragg__hs {
	enum hs_state state;
	bool client;
	uint64_t t0_us;
	/* For the info line of a finished handshake: the CPU time this
	 * thread spent in the handshake's own steps, and the thread's
	 * run-queue wait (schedstat) when it began. */
	uint64_t cpu_ns, runq0_ns;
	uint8_t nonce[RAGG_HS_NONCE_BYTES];
	uint8_t pk[crypto_kx_PUBLICKEYBYTES], sk[crypto_kx_SECRETKEYBYTES];
	uint8_t peer_nonce[RAGG_HS_NONCE_BYTES];
	uint8_t peer_pk[crypto_kx_PUBLICKEYBYTES];
	uint8_t flags, peer_flags; /* RAGG_HS_F_* */
	uint8_t transcript[crypto_generichash_BYTES];
	uint8_t rx[RAGG_HS_SESSION_KEY_BYTES], tx[RAGG_HS_SESSION_KEY_BYTES];
	/* The peer's KEYS, come before our transport could send ours (it
	 * reports the connection up later): answered then. */
	bool early;
	uint8_t early_keys[RAGG_HS_KEYS_WIRE];
	/* Connections dropped by a failed handshake, closed by reap. */
	struct ragg_tp_ep *dead[HS_DEAD_MAX];
	struct ragg__tp *dead_tp[HS_DEAD_MAX];
	int ndead;
};

/* CPU time of the calling thread, ns. */
static uint64_t thread_cpu_ns(void)
{
	struct timespec ts;
	if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts))
		return 0;
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* How long the calling thread has waited, runnable, for a CPU (ns; the
 * second field of /proc/thread-self/schedstat), or 0 where the kernel does
 * not say. Read only when the info line will be logged. */
static uint64_t thread_runq_ns(void)
{
	char buf[96];
	unsigned long long run = 0, wait = 0;
	int fd = open("/proc/thread-self/schedstat", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = 0;
	return sscanf(buf, "%llu %llu", &run, &wait) == 2 ? (uint64_t)wait : 0;
}

static void job_mac_key(const struct ragg_ctx *ctx, uint8_t k[crypto_auth_KEYBYTES])
{
	const char *key = ctx->opts.job_key;
	crypto_generichash(k, crypto_auth_KEYBYTES, (const uint8_t *)key, strlen(key), NULL, 0);
}

static void put_u16(crypto_generichash_state *st, uint16_t v)
{
	v = htole16(v);
	crypto_generichash_update(st, (const uint8_t *)&v, 2);
}

static void put_id(crypto_generichash_state *st, int role, int rank)
{
	uint8_t r = (uint8_t)role;
	uint32_t n = htole32((uint32_t)rank);
	crypto_generichash_update(st, &r, 1);
	crypto_generichash_update(st, (const uint8_t *)&n, 4);
}

/* T of handshake.h: client fields first, whichever side we are. */
static void transcript(const struct ragg_ctx *ctx, const struct ragg__peer *p, struct ragg__hs *hs)
{
	static const char label[] = "ragg handshake";
	const struct ragg_opts *o = &ctx->opts;
	crypto_generichash_state st;

	crypto_generichash_init(&st, NULL, 0, sizeof(hs->transcript));
	crypto_generichash_update(&st, (const uint8_t *)label, sizeof(label) - 1);
	put_u16(&st, RAGG_PROTO_VERSION);
	put_u16(&st, (uint16_t)o->workers);
	put_u16(&st, (uint16_t)o->agents);
	put_u16(&st, (uint16_t)o->servers);
	if (hs->client) {
		put_id(&st, o->role, o->rank);
		put_id(&st, p->role, p->rank);
		crypto_generichash_update(&st, hs->nonce, sizeof(hs->nonce));
		crypto_generichash_update(&st, hs->pk, sizeof(hs->pk));
		crypto_generichash_update(&st, &hs->flags, 1);
		crypto_generichash_update(&st, hs->peer_nonce, sizeof(hs->peer_nonce));
		crypto_generichash_update(&st, hs->peer_pk, sizeof(hs->peer_pk));
		crypto_generichash_update(&st, &hs->peer_flags, 1);
	} else {
		put_id(&st, p->role, p->rank);
		put_id(&st, o->role, o->rank);
		crypto_generichash_update(&st, hs->peer_nonce, sizeof(hs->peer_nonce));
		crypto_generichash_update(&st, hs->peer_pk, sizeof(hs->peer_pk));
		crypto_generichash_update(&st, &hs->peer_flags, 1);
		crypto_generichash_update(&st, hs->nonce, sizeof(hs->nonce));
		crypto_generichash_update(&st, hs->pk, sizeof(hs->pk));
		crypto_generichash_update(&st, &hs->flags, 1);
	}
	crypto_generichash_final(&st, hs->transcript, sizeof(hs->transcript));
}

/* The proof of the client (client=true) or of the server over T. */
static void proof(const struct ragg_ctx *ctx, const struct ragg__hs *hs, bool client,
                  uint8_t out[crypto_auth_BYTES])
{
	uint8_t k[crypto_auth_KEYBYTES], m[6 + sizeof(hs->transcript)];
	memcpy(m, client ? "client" : "server", 6);
	memcpy(m + 6, hs->transcript, sizeof(hs->transcript));
	job_mac_key(ctx, k);
	crypto_auth(out, m, sizeof(m), k);
	sodium_memzero(k, sizeof(k));
}

static int proof_check(const struct ragg_ctx *ctx, const struct ragg__hs *hs, bool client,
                       const uint8_t *got)
{
	uint8_t k[crypto_auth_KEYBYTES], m[6 + sizeof(hs->transcript)];
	memcpy(m, client ? "client" : "server", 6);
	memcpy(m + 6, hs->transcript, sizeof(hs->transcript));
	job_mac_key(ctx, k);
	int rc = crypto_auth_verify(got, m, sizeof(m), k);
	sodium_memzero(k, sizeof(k));
	return rc ? RAGG_ERR_AUTH : 0;
}

static int session_keys(const struct ragg_ctx *ctx, struct ragg__hs *hs)
{
	uint8_t rx0[crypto_kx_SESSIONKEYBYTES], tx0[crypto_kx_SESSIONKEYBYTES];
	uint8_t k[crypto_auth_KEYBYTES];
	int rc = hs->client ? crypto_kx_client_session_keys(rx0, tx0, hs->pk, hs->sk, hs->peer_pk)
	                    : crypto_kx_server_session_keys(rx0, tx0, hs->pk, hs->sk, hs->peer_pk);
	sodium_memzero(hs->sk, sizeof(hs->sk));
	if (rc)
		return RAGG_ERR_AUTH; /* a weak public key */
	job_mac_key(ctx, k);
	/* Named by direction, not by side: the client's tx is the server's
	 * rx. */
	const char *rx_label = hs->client ? "s2c" : "c2s", *tx_label = hs->client ? "c2s" : "s2c";
	crypto_generichash_state st;
	crypto_generichash_init(&st, k, sizeof(k), sizeof(hs->rx));
	crypto_generichash_update(&st, (const uint8_t *)rx_label, 3);
	crypto_generichash_update(&st, rx0, sizeof(rx0));
	crypto_generichash_update(&st, hs->transcript, sizeof(hs->transcript));
	crypto_generichash_final(&st, hs->rx, sizeof(hs->rx));
	crypto_generichash_init(&st, k, sizeof(k), sizeof(hs->tx));
	crypto_generichash_update(&st, (const uint8_t *)tx_label, 3);
	crypto_generichash_update(&st, tx0, sizeof(tx0));
	crypto_generichash_update(&st, hs->transcript, sizeof(hs->transcript));
	crypto_generichash_final(&st, hs->tx, sizeof(hs->tx));
	sodium_memzero(k, sizeof(k));
	sodium_memzero(rx0, sizeof(rx0));
	sodium_memzero(tx0, sizeof(tx0));
	return 0;
}

static struct ragg__hs *hs_get(struct ragg__peer *p)
{
	if (!p->hs) {
		p->hs = calloc(1, sizeof(*p->hs));
	}
	return p->hs;
}

/* Fresh randomness and ephemeral key for a new connection. */
static void hs_reset(struct ragg__hs *hs, bool client)
{
	struct ragg_tp_ep *dead[HS_DEAD_MAX];
	struct ragg__tp *dead_tp[HS_DEAD_MAX];
	int ndead = hs->ndead;
	memcpy(dead, hs->dead, sizeof(dead));
	memcpy(dead_tp, hs->dead_tp, sizeof(dead_tp));
	sodium_memzero(hs, sizeof(*hs));
	memcpy(hs->dead, dead, sizeof(dead));
	memcpy(hs->dead_tp, dead_tp, sizeof(dead_tp));
	hs->ndead = ndead;
	hs->client = client;
	hs->t0_us = ragg__now_us();
	randombytes_buf(hs->nonce, sizeof(hs->nonce));
	crypto_kx_keypair(hs->pk, hs->sk);
}

static int send_keys(struct ragg__peer *p, struct ragg__hs *hs)
{
	uint8_t m[RAGG_HS_KEYS_WIRE];
	m[0] = RAGG_HS_KEYS;
	memcpy(m + 1, hs->nonce, sizeof(hs->nonce));
	memcpy(m + 1 + sizeof(hs->nonce), hs->pk, sizeof(hs->pk));
	m[RAGG_HS_KEYS_WIRE - 1] = hs->flags;
	int rc = p->tp->ops->send(p->ep, m, sizeof(m));
	if (!rc)
		hs->state = HS_KEYS_SENT;
	return rc == -EAGAIN ? -ENOBUFS : rc;
}

static void on_keys(struct ragg_ctx *ctx, struct ragg__peer *p, struct ragg__hs *hs,
                    const uint8_t *m, size_t len);

int ragg__hs_on_connected(struct ragg_ctx *ctx, struct ragg__peer *p, bool client)
{
	struct ragg__hs *hs = hs_get(p);
	uint8_t early_keys[RAGG_HS_KEYS_WIRE];
	bool early;
	int rc;
	if (!hs)
		return -ENOMEM;
	/* Started already: the peer's KEYS overtook the transport's
	 * CONNECTED event (see ragg__hs_on_msg). */
	if (hs->state != HS_IDLE)
		return 0;
	/* Read outside the CPU time counted. */
	uint64_t runq0 = ragg__log_get() >= RAGG_LOG_INFO ? thread_runq_ns() : 0;
	uint64_t cpu0 = thread_cpu_ns();
	early = hs->early;
	memcpy(early_keys, hs->early_keys, sizeof(early_keys));
	hs_reset(hs, client);
	hs->runq0_ns = runq0;
	hs->flags = (uint8_t)((crypto_aead_aes256gcm_is_available() ? RAGG_HS_F_AES : 0) |
	                      (ragg__opt_long(&ctx->opts, "RAGG_SEAL") ? RAGG_HS_F_SEAL : 0));
	rc = send_keys(p, hs);
	hs->cpu_ns += thread_cpu_ns() - cpu0;
	if (rc)
		return rc;
	/* Their keys came first and waited for ours to leave. */
	if (early)
		on_keys(ctx, p, hs, early_keys, sizeof(early_keys));
	return 0;
}

void ragg__hs_fail(struct ragg_ctx *ctx, struct ragg__peer *p, int rc, const char *why)
{
	struct ragg__hs *hs = p->hs;
	bool client = hs ? hs->client : true;

	ctx->stats.peers_dropped++;
	ragg__error("handshake with %s %d (%s) failed: %s: %s", ragg__role_name(p->role), p->rank,
	            p->ep ? p->ep->peer : "?", why, ragg_strerror(rc));
	if (client || !hs || !p->ep) {
		ragg__fail(ctx, rc);
		return;
	}
	/* An acceptor keeps going: the connection goes, the place stays for
	 * the genuine peer. Its close waits for the end of this batch. */
	if (hs->ndead < HS_DEAD_MAX) {
		hs->dead[hs->ndead] = p->ep;
		hs->dead_tp[hs->ndead] = p->tp;
		hs->ndead++;
		ctx->hs_dead++;
	} else {
		ragg__warn("too many failed handshakes from %s %d at once; leaking one connection",
		           ragg__role_name(p->role), p->rank);
	}
	hs_reset(hs, false);
	hs->state = HS_IDLE;
	p->ep = NULL;
	p->tp = NULL;
	p->connected = false;
}

void ragg__hs_reap(struct ragg_ctx *ctx)
{
	for (int i = 0; i < ctx->npeers && ctx->hs_dead; i++) {
		struct ragg__hs *hs = ctx->peers[i].hs;
		if (!hs)
			continue;
		for (int j = 0; j < hs->ndead; j++) {
			hs->dead_tp[j]->ops->ep_close(hs->dead[j]);
			ctx->hs_dead--;
		}
		hs->ndead = 0;
	}
}

static void on_keys(struct ragg_ctx *ctx, struct ragg__peer *p, struct ragg__hs *hs,
                    const uint8_t *m, size_t len)
{
	uint64_t cpu0 = thread_cpu_ns();
	int rc;
	if (len != RAGG_HS_KEYS_WIRE || hs->state != HS_KEYS_SENT) {
		ragg__hs_fail(ctx, p, RAGG_ERR_PROTO, "unexpected key message");
		return;
	}
	memcpy(hs->peer_nonce, m + 1, sizeof(hs->peer_nonce));
	memcpy(hs->peer_pk, m + 1 + sizeof(hs->peer_nonce), sizeof(hs->peer_pk));
	hs->peer_flags = m[RAGG_HS_KEYS_WIRE - 1];
	if ((hs->peer_flags ^ hs->flags) & RAGG_HS_F_SEAL) {
		ragg__hs_fail(ctx, p, RAGG_ERR_CONFIG,
		              hs->flags & RAGG_HS_F_SEAL ? "RAGG_SEAL differs: on here, off there"
		                                         : "RAGG_SEAL differs: off here, on there");
		return;
	}
	transcript(ctx, p, hs);
	uint8_t out[RAGG_HS_PROOF_WIRE];
	out[0] = RAGG_HS_PROOF;
	proof(ctx, hs, hs->client, out + 1);
	if ((rc = p->tp->ops->send(p->ep, out, sizeof(out)))) {
		ragg__hs_fail(ctx, p, rc == -EAGAIN ? -ENOBUFS : rc, "sending the proof");
		return;
	}
	hs->state = HS_PROOF_SENT;
	/* The session keys now, while our proof travels and the peer checks
	 * it: the Diffie-Hellman is the dearest step, and the peer's proof
	 * cannot come back sooner. They stay unused, and the state short of
	 * DONE, until that proof checks (on_proof). */
	if ((rc = session_keys(ctx, hs))) {
		ragg__hs_fail(ctx, p, rc, "its ephemeral key is unusable");
		return;
	}
	hs->cpu_ns += thread_cpu_ns() - cpu0;
}

static void on_proof(struct ragg_ctx *ctx, struct ragg__peer *p, struct ragg__hs *hs,
                     const uint8_t *m, size_t len)
{
	uint64_t cpu0 = thread_cpu_ns();
	int rc;
	if (len != RAGG_HS_PROOF_WIRE || hs->state != HS_PROOF_SENT) {
		ragg__hs_fail(ctx, p, RAGG_ERR_PROTO, "unexpected proof message");
		return;
	}
	if ((rc = proof_check(ctx, hs, !hs->client, m + 1))) {
		ragg__hs_fail(ctx, p, rc, "its proof of the job key does not check");
		return;
	}
	if (hs->flags & RAGG_HS_F_SEAL) {
		unsigned cipher = hs->flags & hs->peer_flags & RAGG_HS_F_AES
		                      ? RAGG_TP_SEAL_AES256GCM
		                      : RAGG_TP_SEAL_CHACHA20POLY1305;
		rc = RAGG_TP_HAS_OP(p->tp->ops, seal)
		         ? p->tp->ops->seal(p->ep, cipher, hs->rx, hs->tx, sizeof(hs->rx))
		         : -EOPNOTSUPP;
		if (rc) {
			ragg__hs_fail(ctx, p, rc, "its transport cannot seal the connection");
			return;
		}
	}
	hs->state = HS_DONE;
	p->connected = true;
	hs->cpu_ns += thread_cpu_ns() - cpu0;
	/* The wall time from our KEYS out to their PROOF checked; of it, our
	 * own steps' CPU time and the time this thread sat runnable without
	 * a CPU (a busy host: the peer's wait for one is in the wall time
	 * too, not here). */
	if (ragg__log_get() >= RAGG_LOG_INFO) {
		uint64_t runq = thread_runq_ns();
		ragg__info("handshake with %s %d (%s) done in %llu us (cpu %llu us, runnable "
		           "without a cpu %llu us)",
		           ragg__role_name(p->role), p->rank, p->ep->peer,
		           (unsigned long long)(ragg__now_us() - hs->t0_us),
		           (unsigned long long)(hs->cpu_ns / 1000u),
		           (unsigned long long)(runq >= hs->runq0_ns && hs->runq0_ns
		                                    ? (runq - hs->runq0_ns) / 1000u
		                                    : 0));
	}
}

void ragg__hs_on_msg(struct ragg_ctx *ctx, struct ragg__peer *p, const struct ragg_tp_event *ev)
{
	const uint8_t *m = ev->data;
	struct ragg__hs *hs = p->hs;
	int rc;
	/* A transport may deliver the peer's first message before it reports
	 * the connection up (a receive completion polled before rdma_cm's
	 * ESTABLISHED): start our side now. */
	if (m[0] == RAGG_HS_KEYS && (!hs || hs->state == HS_IDLE) && !p->connected) {
		rc = ragg__hs_on_connected(ctx, p, !ragg__hs_we_accept(ctx, p));
		if ((rc == -ENOTCONN || rc == -ENOBUFS) && ev->len == RAGG_HS_KEYS_WIRE &&
		    (hs = p->hs) && !hs->early) {
			/* Our side cannot send before the transport reports the
			 * connection up (shm's connecting side): keep their keys
			 * and answer them then (ragg__hs_on_connected). */
			memcpy(hs->early_keys, m, RAGG_HS_KEYS_WIRE);
			hs->early = true;
			hs->state = HS_IDLE;
			return;
		}
		if (rc) {
			ragg__hs_fail(ctx, p, rc, "sending its first message");
			return;
		}
		hs = p->hs;
	}
	if (!hs || hs->state == HS_IDLE || hs->state == HS_DONE) {
		ragg__hs_fail(ctx, p, RAGG_ERR_PROTO, "handshake message out of place");
		return;
	}
	if (m[0] == RAGG_HS_KEYS)
		on_keys(ctx, p, hs, m, ev->len);
	else if (m[0] == RAGG_HS_PROOF)
		on_proof(ctx, p, hs, m, ev->len);
	else
		ragg__hs_fail(ctx, p, RAGG_ERR_PROTO, "unknown handshake message");
}

int ragg__hs_session_keys(const struct ragg__peer *p, uint8_t rx[RAGG_HS_SESSION_KEY_BYTES],
                          uint8_t tx[RAGG_HS_SESSION_KEY_BYTES])
{
	if (!p->hs || p->hs->state != HS_DONE)
		return -EAGAIN;
	memcpy(rx, p->hs->rx, RAGG_HS_SESSION_KEY_BYTES);
	memcpy(tx, p->hs->tx, RAGG_HS_SESSION_KEY_BYTES);
	return 0;
}

int ragg__hs_deadline_ms(const struct ragg_ctx *ctx)
{
	long hm = ragg__opt_long(&ctx->opts, "RAGG_HANDSHAKE_MS");
	return hm > 0 && hm < ctx->opts.timeout_ms ? (int)hm : ctx->opts.timeout_ms;
}

void ragg__hs_sweep(struct ragg_ctx *ctx)
{
	uint64_t now = ragg__now_us();
	if (now < ctx->hs_next_sweep_us)
		return;
	ctx->hs_next_sweep_us = now + 100000;
	int ms = ragg__hs_deadline_ms(ctx);
	uint64_t limit = (uint64_t)ms * 1000u;
	for (int i = 0; i < ctx->npeers && !ctx->failed; i++) {
		struct ragg__peer *p = &ctx->peers[i];
		struct ragg__hs *hs = p->hs;
		if (!hs || !p->ep || (hs->state != HS_KEYS_SENT && hs->state != HS_PROOF_SENT))
			continue;
		if (now - hs->t0_us < limit)
			continue;
		char why[96];
		snprintf(why, sizeof(why), "no answer within %d ms (RAGG_HANDSHAKE_MS)", ms);
		ragg__hs_fail(ctx, p, RAGG_ERR_TIMEOUT, why);
	}
}

void ragg__hs_free(struct ragg__peer *p)
{
	if (p->hs) {
		for (int j = 0; j < p->hs->ndead; j++)
			p->hs->dead_tp[j]->ops->ep_close(p->hs->dead[j]);
		sodium_memzero(p->hs, sizeof(*p->hs));
		free(p->hs);
		p->hs = NULL;
	}
}

bool ragg__hs_we_accept(const struct ragg_ctx *ctx, const struct ragg__peer *p)
{
	return (ctx->opts.role == RAGG_ROLE_AGENT && p->role == RAGG_ROLE_WORKER) ||
	       (ctx->opts.role == RAGG_ROLE_SERVER && p->role == RAGG_ROLE_AGENT);
}

void ragg__hs_warn_no_key(const struct ragg_ctx *ctx)
{
	static int warned;
	if (ctx->opts.job_key[0] || __atomic_exchange_n(&warned, 1, __ATOMIC_RELAXED))
		return;
	/* Said even when the log is silent by default: only an explicit
	 * RAGG_LOG=none or error hides it. */
	const char *lvl = getenv("RAGG_LOG");
	if (ragg__log_get() >= RAGG_LOG_WARN || !lvl || !*lvl)
		ragg__log(RAGG_LOG_WARN, "RAGG_JOB_KEY is not set: this job is open to anyone "
		                         "who can reach its ports and its rendezvous");
}
