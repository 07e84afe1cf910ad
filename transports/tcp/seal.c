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
 */
#include "config.h"

#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "tcp.h"

struct ragg__tcp_seal {
	crypto_aead_aes256gcm_state rx_st, tx_st; /* AES-256-GCM: expanded keys */
	uint8_t rx_key[RAGG_TP_SEAL_KEY_BYTES], tx_key[RAGG_TP_SEAL_KEY_BYTES];
	uint64_t rx_n, tx_n;
	unsigned cipher;
	size_t stage_len, stage_off; /* [stage_off, stage_len) still to send */
	uint8_t stage[RAGG__TCP_SEAL_STAGE];
};

static void nonce(uint64_t n, uint8_t out[12])
{
	uint64_t le = htole64(n);
	memcpy(out, &le, 8);
	memset(out + 8, 0, 4);
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
		sodium_memzero(ep->seal, offsetof(struct ragg__tcp_seal, stage));
		free(ep->seal);
		ep->seal = NULL;
	}
}

void ragg__tcp_seal_record(struct ragg__tcp_seal *s, uint8_t *out, const void *in, size_t len,
                           uint8_t tag[RAGG__TCP_SEAL_TAG])
{
	uint8_t n[12];
	unsigned long long tlen;
	nonce(s->tx_n++, n);
	if (s->cipher == RAGG_TP_SEAL_AES256GCM)
		crypto_aead_aes256gcm_encrypt_detached_afternm(out, tag, &tlen, in, len, NULL, 0,
		                                               NULL, n, &s->tx_st);
	else
		crypto_aead_chacha20poly1305_ietf_encrypt_detached(out, tag, &tlen, in, len, NULL,
		                                                   0, NULL, n, s->tx_key);
}

int ragg__tcp_seal_open(struct ragg__tcp_seal *s, uint8_t *buf, size_t len,
                        const uint8_t tag[RAGG__TCP_SEAL_TAG])
{
	uint8_t n[12];
	int rc;
	nonce(s->rx_n++, n);
	if (s->cipher == RAGG_TP_SEAL_AES256GCM)
		rc = crypto_aead_aes256gcm_decrypt_detached_afternm(buf, NULL, buf, len, tag, NULL,
		                                                    0, n, &s->rx_st);
	else
		rc = crypto_aead_chacha20poly1305_ietf_decrypt_detached(buf, NULL, buf, len, tag,
		                                                        NULL, 0, n, s->rx_key);
	return rc ? RAGG_ERR_AUTH : 0;
}

bool ragg__tcp_seal_staged(const struct ragg__tcp_ep *ep)
{
	return ep->seal && ep->seal->stage_off < ep->seal->stage_len;
}

/* Move queued frames into the staging buffer, sealed (or as they are,
 * for frames queued before seal()), as far as they fit. An entry is sent
 * (tx_send passes it) once all of it is staged. */
static void stage_fill(struct ragg__tcp_ep *ep)
{
	struct ragg__tcp_seal *s = ep->seal;
	const size_t cap = sizeof(s->stage);

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
				ragg__tcp_seal_record(s, o, e->hdr, RAGG__TCP_HDR_SIZE,
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
				ragg__tcp_seal_record(s, o, (const uint8_t *)e->buf + done, seg,
				                      o + seg);
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
