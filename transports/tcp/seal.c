/*
 * Sealing (RAGG_SEAL=on): every frame after the handshake under an AEAD
 * from libsodium, per-direction keys from the core's handshake, the nonce
 * of each direction a counter the two sides keep in step without sending
 * it.
 *
 * A sealed frame is records, each the ciphertext followed by its 16-byte
 * tag: the 40-byte header, then the payload in segments of at most
 * RAGG__TCP_SEAL_SEG bytes. Every record takes the next nonce of its
 * direction, so a record altered, replayed, reordered or dropped on the way
 * fails to open at the receiver, which drops the connection
 * (RAGG_ERR_AUTH) with a log line. The receiver still reads a payload
 * segment straight into the slot and opens it there, in place; the
 * immediate is reported only after the last segment opened, so the core
 * never sees a write that did not. The sender encrypts into the endpoint's
 * staging buffer, so its caller's memory is free as soon as a frame is
 * encrypted (that is its WRITE_DONE).
 *
 * One core seals or opens about as fast as loopback TCP copies, so records
 * are not sealed one at a time: a fill of the staging buffer (up to eight
 * payload segments) and the segments a receive has read are each a batch,
 * every record's nonce fixed in stream order when it joins, the batch
 * spread over the polling thread and the device's RAGG_TCP_SEAL_THREADS
 * helpers. The bytes on the wire are the same whatever the number of
 * threads. The polling thread takes records from the batch as the helpers
 * do, so it never waits for a record nobody started; it waits only for
 * those a helper is sealing at that moment.
 */
#include "config.h"

#include <endian.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "tcp.h"

/* One record to seal (out, in) or open (out in place), under nonce n. */
struct job {
	uint8_t *out;
	const uint8_t *in;
	size_t len;
	uint8_t *tag;
	uint64_t n;
	int rc;
};

/* Records per batch: a staging fill's segments and headers; the segments
 * a receive reads before it opens them. */
#define TX_JOBS 64
#define RX_JOBS 8

struct ragg__tcp_seal {
	crypto_aead_aes256gcm_state rx_st, tx_st; /* AES-256-GCM: expanded keys */
	uint8_t rx_key[RAGG_TP_SEAL_KEY_BYTES], tx_key[RAGG_TP_SEAL_KEY_BYTES];
	uint64_t rx_n, tx_n;
	unsigned cipher;
	struct ragg__tcp_seal_pool *pool; /* the device's, or NULL */
	bool pool_tried; /* pool: asked for at the first batch */
	int ntx, nrx;
	struct job tx_jobs[TX_JOBS], rx_jobs[RX_JOBS];
	uint8_t rx_tags[RX_JOBS][RAGG__TCP_SEAL_TAG];
	size_t stage_len, stage_off; /* [stage_off, stage_len) still to send */
	/* RAGG__TCP_SEAL_STAGE bytes, malloc()ed: its pages are touched
	 * when data first flows, not during the handshake. */
	uint8_t *stage;
};

/* A device's helpers. One batch at a time: the device is polled by one
 * thread. A helper joins a batch under mu (busy++), takes records by the
 * atomic `next` until none are left, and leaves under mu; the polling
 * thread takes records the same way, then waits for busy to reach 0, so a
 * batch's records are all done, and no helper still reads them, when
 * run() returns. */
struct ragg__tcp_seal_pool {
	pthread_mutex_t mu;
	pthread_cond_t go, idle;
	uint64_t gen; /* batch number */
	const struct ragg__tcp_seal *s;
	struct job *jobs;
	int njobs;
	bool open, stop;
	int busy;
	atomic_int next;
	int nthreads;
	pthread_t th[];
};

static void nonce(uint64_t n, uint8_t out[12])
{
	uint64_t le = htole64(n);
	memcpy(out, &le, 8);
	memset(out + 8, 0, 4);
}

static void job_run(const struct ragg__tcp_seal *s, bool open, struct job *j)
{
	uint8_t n[12];
	unsigned long long tlen;
	nonce(j->n, n);
	if (open)
		j->rc = s->cipher == RAGG_TP_SEAL_AES256GCM
		            ? crypto_aead_aes256gcm_decrypt_detached_afternm(
		                  j->out, NULL, j->out, j->len, j->tag, NULL, 0, n, &s->rx_st)
		            : crypto_aead_chacha20poly1305_ietf_decrypt_detached(
		                  j->out, NULL, j->out, j->len, j->tag, NULL, 0, n, s->rx_key);
	else if (s->cipher == RAGG_TP_SEAL_AES256GCM)
		crypto_aead_aes256gcm_encrypt_detached_afternm(j->out, j->tag, &tlen, j->in, j->len,
		                                               NULL, 0, NULL, n, &s->tx_st);
	else
		crypto_aead_chacha20poly1305_ietf_encrypt_detached(j->out, j->tag, &tlen, j->in,
		                                                   j->len, NULL, 0, NULL, n, s->tx_key);
}

static void take_jobs(struct ragg__tcp_seal_pool *p, const struct ragg__tcp_seal *s,
                      struct job *jobs, int njobs, bool open)
{
	int i;
	while ((i = atomic_fetch_add_explicit(&p->next, 1, memory_order_relaxed)) < njobs)
		job_run(s, open, &jobs[i]);
}

static void *helper(void *arg)
{
	struct ragg__tcp_seal_pool *p = arg;
	uint64_t seen = 0;

	pthread_mutex_lock(&p->mu);
	for (;;) {
		while (!p->stop && p->gen == seen)
			pthread_cond_wait(&p->go, &p->mu);
		if (p->stop)
			break;
		seen = p->gen;
		/* Woken too late: that batch is over. */
		if (!p->njobs)
			continue;
		const struct ragg__tcp_seal *s = p->s;
		struct job *jobs = p->jobs;
		int njobs = p->njobs;
		bool open = p->open;
		p->busy++;
		pthread_mutex_unlock(&p->mu);
		take_jobs(p, s, jobs, njobs, open);
		pthread_mutex_lock(&p->mu);
		if (!--p->busy)
			pthread_cond_signal(&p->idle);
	}
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

static struct ragg__tcp_seal_pool *pool_get(struct ragg__tcp_dev *dev);

/* Seal or open jobs[0..n), with the helpers if there are any. 0, or
 * RAGG_ERR_AUTH when a record did not open. */
static int run(struct ragg__tcp_ep *ep, struct job *jobs, int n, bool open)
{
	struct ragg__tcp_seal *s = ep->seal;
	int rc = 0;

	if (!n)
		return 0;
	/* Started by the first batch, not by seal(): the handshake does
	 * not wait for threads to start. */
	if (!s->pool_tried && n > 1) {
		s->pool_tried = true;
		s->pool = pool_get(ep->dev);
	}
	struct ragg__tcp_seal_pool *p = s->pool;
	if (!p || n == 1) {
		for (int i = 0; i < n; i++)
			job_run(s, open, &jobs[i]);
	} else {
		pthread_mutex_lock(&p->mu);
		p->s = s;
		p->jobs = jobs;
		p->njobs = n;
		p->open = open;
		atomic_store_explicit(&p->next, 0, memory_order_relaxed);
		p->gen++;
		pthread_cond_broadcast(&p->go);
		pthread_mutex_unlock(&p->mu);
		take_jobs(p, s, jobs, n, open);
		pthread_mutex_lock(&p->mu);
		while (p->busy)
			pthread_cond_wait(&p->idle, &p->mu);
		/* A helper that wakes later finds none left and this batch's
		 * records no longer in reach. */
		p->njobs = 0;
		pthread_mutex_unlock(&p->mu);
	}
	for (int i = 0; open && i < n; i++)
		if (jobs[i].rc)
			rc = RAGG_ERR_AUTH;
	return rc;
}

void ragg__tcp_seal_pool_free(struct ragg__tcp_dev *dev)
{
	struct ragg__tcp_seal_pool *p = dev->seal_pool;
	if (!p)
		return;
	pthread_mutex_lock(&p->mu);
	p->stop = true;
	pthread_cond_broadcast(&p->go);
	pthread_mutex_unlock(&p->mu);
	for (int i = 0; i < p->nthreads; i++)
		pthread_join(p->th[i], NULL);
	pthread_mutex_destroy(&p->mu);
	pthread_cond_destroy(&p->go);
	pthread_cond_destroy(&p->idle);
	free(p);
	dev->seal_pool = NULL;
}

/* The device's helpers, started with its first sealed endpoint; NULL when
 * there are to be none or they cannot start (the polling thread then seals
 * alone, which is slower, not wrong). */
static struct ragg__tcp_seal_pool *pool_get(struct ragg__tcp_dev *dev)
{
	struct ragg__tcp_seal_pool *p = dev->seal_pool;
	size_t want = dev->cfg.seal_threads;
	if (p || !want)
		return p;
	if (!(p = calloc(1, sizeof(*p) + want * sizeof(p->th[0]))))
		return NULL;
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->go, NULL);
	pthread_cond_init(&p->idle, NULL);
	dev->seal_pool = p;
	for (size_t i = 0; i < want; i++) {
		int rc = pthread_create(&p->th[i], NULL, helper, p);
		if (rc) {
			ragg__tcp_warn(dev, "sealing helper thread: %s; %d of %zu started",
			               strerror(rc), p->nthreads, want);
			break;
		}
		p->nthreads++;
	}
	if (!p->nthreads) {
		ragg__tcp_seal_pool_free(dev);
		return NULL;
	}
	return p;
}

int ragg__tcp_seal(struct ragg_tp_ep *e, unsigned cipher, const uint8_t *rx_key,
                   const uint8_t *tx_key, size_t key_len)
{
	struct ragg__tcp_ep *ep = ragg__tcp_ep(e);
	struct ragg__tcp_seal *s;

	if (key_len != RAGG_TP_SEAL_KEY_BYTES || !rx_key || !tx_key ||
	    (cipher != RAGG_TP_SEAL_AES256GCM && cipher != RAGG_TP_SEAL_CHACHA20POLY1305))
		return -EINVAL;
	if (ep->state != RAGG__TCP_EP_CONNECTED)
		return ep->state == RAGG__TCP_EP_FAILED && ep->status ? ep->status : -ENOTCONN;
	if (ep->seal)
		return -EALREADY;
	if (sodium_init() < 0)
		return -ENOMEM;
	if (cipher == RAGG_TP_SEAL_AES256GCM && !crypto_aead_aes256gcm_is_available())
		return -EOPNOTSUPP;
	/* The AES state wants 16-byte alignment. */
	size_t size = (sizeof(*s) + 63) & ~(size_t)63;
	if (!(s = aligned_alloc(64, size)))
		return -ENOMEM;
	memset(s, 0, sizeof(*s));
	if (!(s->stage = malloc(RAGG__TCP_SEAL_STAGE))) {
		free(s);
		return -ENOMEM;
	}
	s->cipher = cipher;
	memcpy(s->rx_key, rx_key, key_len);
	memcpy(s->tx_key, tx_key, key_len);
	if (cipher == RAGG_TP_SEAL_AES256GCM) {
		crypto_aead_aes256gcm_beforenm(&s->rx_st, s->rx_key);
		crypto_aead_aes256gcm_beforenm(&s->tx_st, s->tx_key);
	}
	ep->seal = s;
	ragg__tcp_info(ep->dev, "%s: sealed with %s", ep->base.peer,
	               cipher == RAGG_TP_SEAL_AES256GCM ? "AES-256-GCM" : "ChaCha20-Poly1305");
	return 0;
}

void ragg__tcp_seal_free(struct ragg__tcp_ep *ep)
{
	if (ep->seal) {
		free(ep->seal->stage);
		sodium_memzero(ep->seal, sizeof(*ep->seal));
		free(ep->seal);
		ep->seal = NULL;
	}
}

void ragg__tcp_seal_record(struct ragg__tcp_seal *s, uint8_t *out, const void *in, size_t len,
                           uint8_t tag[RAGG__TCP_SEAL_TAG])
{
	struct job j = { .out = out, .in = in, .len = len, .tag = tag, .n = s->tx_n++ };
	job_run(s, false, &j);
}

int ragg__tcp_seal_open(struct ragg__tcp_seal *s, uint8_t *buf, size_t len,
                        const uint8_t tag[RAGG__TCP_SEAL_TAG])
{
	struct job j = { .out = buf, .len = len, .tag = (uint8_t *)tag, .n = s->rx_n++ };
	job_run(s, true, &j);
	return j.rc ? RAGG_ERR_AUTH : 0;
}

int ragg__tcp_seal_open_queued(struct ragg__tcp_ep *ep)
{
	struct ragg__tcp_seal *s = ep->seal;
	int n = s->nrx;
	s->nrx = 0;
	return run(ep, s->rx_jobs, n, true);
}

int ragg__tcp_seal_open_later(struct ragg__tcp_ep *ep, uint8_t *buf, size_t len,
                              const uint8_t tag[RAGG__TCP_SEAL_TAG])
{
	struct ragg__tcp_seal *s = ep->seal;
	memcpy(s->rx_tags[s->nrx], tag, RAGG__TCP_SEAL_TAG);
	s->rx_jobs[s->nrx] = (struct job){
		.out = buf, .len = len, .tag = s->rx_tags[s->nrx], .n = s->rx_n++
	};
	if (++s->nrx < RX_JOBS)
		return 0;
	return ragg__tcp_seal_open_queued(ep);
}

bool ragg__tcp_seal_queued(const struct ragg__tcp_ep *ep)
{
	return ep->seal && ep->seal->nrx;
}

/* A record of the staging fill: its nonce now, sealed with the fill's
 * others when the fill ends (or the batch is full). */
static void seal_later(struct ragg__tcp_ep *ep, uint8_t *out, const void *in, size_t len,
                       uint8_t *tag)
{
	struct ragg__tcp_seal *s = ep->seal;
	if (s->ntx == TX_JOBS) {
		run(ep, s->tx_jobs, s->ntx, false);
		s->ntx = 0;
	}
	s->tx_jobs[s->ntx++] =
	    (struct job){ .out = out, .in = in, .len = len, .tag = tag, .n = s->tx_n++ };
}

bool ragg__tcp_seal_staged(const struct ragg__tcp_ep *ep)
{
	return ep->seal && ep->seal->stage_off < ep->seal->stage_len;
}

/* Move queued frames into the staging buffer, sealed (or as they are,
 * for frames queued before seal()), as far as they fit. An entry is sent
 * (tx_send passes it) once all of it is staged; its records are sealed
 * by stage_fill(), before the entry is reported. */
static void stage_plan(struct ragg__tcp_ep *ep)
{
	struct ragg__tcp_seal *s = ep->seal;
	const size_t cap = RAGG__TCP_SEAL_STAGE;

	while (ep->tx_send != ep->tx_tail) {
		struct ragg__tcp_txe *e = &ep->tx[ep->tx_send & ep->tx_mask];
		if (!e->sealed) {
			size_t total = RAGG__TCP_HDR_SIZE + e->len, take = total - ep->tx_off;
			if (take > cap - s->stage_len)
				take = cap - s->stage_len;
			if (!take)
				return;
			for (size_t k = 0; k < take; k++) {
				size_t at = ep->tx_off + k;
				s->stage[s->stage_len + k] =
				    at < RAGG__TCP_HDR_SIZE
				        ? e->hdr[at]
				        : ((const uint8_t *)e->buf)[at - RAGG__TCP_HDR_SIZE];
			}
			s->stage_len += take;
			ep->tx_off += take;
		} else {
			if (ep->tx_off == 0) {
				if (cap - s->stage_len < RAGG__TCP_SEALED_HDR)
					return;
				uint8_t *o = s->stage + s->stage_len;
				seal_later(ep, o, e->hdr, RAGG__TCP_HDR_SIZE,
				           o + RAGG__TCP_HDR_SIZE);
				s->stage_len += RAGG__TCP_SEALED_HDR;
				ep->tx_off = RAGG__TCP_HDR_SIZE;
			}
			while (ep->tx_off < RAGG__TCP_HDR_SIZE + e->len) {
				size_t done = ep->tx_off - RAGG__TCP_HDR_SIZE, seg = e->len - done;
				if (seg > RAGG__TCP_SEAL_SEG)
					seg = RAGG__TCP_SEAL_SEG;
				if (cap - s->stage_len < seg + RAGG__TCP_SEAL_TAG)
					return;
				uint8_t *o = s->stage + s->stage_len;
				seal_later(ep, o, (const uint8_t *)e->buf + done, seg, o + seg);
				s->stage_len += seg + RAGG__TCP_SEAL_TAG;
				ep->tx_off += seg;
			}
		}
		if (ep->tx_off < RAGG__TCP_HDR_SIZE + e->len)
			return;
		ep->tx_off = 0;
		ep->tx_send++;
	}
}

static void stage_fill(struct ragg__tcp_ep *ep)
{
	struct ragg__tcp_seal *s = ep->seal;
	stage_plan(ep);
	run(ep, s->tx_jobs, s->ntx, false);
	s->ntx = 0;
}

/* The sealed flush: stage, send the staging buffer, repeat while the
 * socket takes it. 0, or a negative errno from send(). */
int ragg__tcp_seal_flush(struct ragg__tcp_ep *ep)
{
	struct ragg__tcp_seal *s = ep->seal;

	for (;;) {
		if (s->stage_off == s->stage_len) {
			s->stage_off = s->stage_len = 0;
			stage_fill(ep);
			if (!s->stage_len)
				return 0;
		}
		ssize_t w = send(ep->fd, s->stage + s->stage_off, s->stage_len - s->stage_off,
		                 MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return 0;
			return -errno;
		}
		s->stage_off += (size_t)w;
		if (s->stage_off < s->stage_len)
			return 0; /* the socket is full */
	}
}

/* A sealed ERR frame for refuse(), best effort: only when nothing of ours
 * is half sent. */
void ragg__tcp_seal_err(struct ragg__tcp_ep *ep, const uint8_t hdr[RAGG__TCP_HDR_SIZE])
{
	struct ragg__tcp_seal *s = ep->seal;
	uint8_t rec[RAGG__TCP_SEALED_HDR];
	if (s->stage_off != s->stage_len || ep->tx_off)
		return;
	ragg__tcp_seal_record(s, rec, hdr, RAGG__TCP_HDR_SIZE, rec + RAGG__TCP_HDR_SIZE);
	ssize_t w = send(ep->fd, rec, sizeof(rec), MSG_NOSIGNAL | MSG_DONTWAIT);
	(void)w;
}
