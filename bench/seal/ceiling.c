/*
 * ragg-seal-ceiling: what one core can seal and open, the bound on
 * RAGG_SEAL=on's bandwidth. The AEADs of transports/tcp/seal.c as the
 * transport runs them: records of RAGG__TCP_SEAL_SEG (64 KiB) taken from a
 * 16 MiB buffer and sealed into a staging buffer of eight records, then
 * opened in place; beside them memcpy over the same buffers. Rates are of
 * the calling thread's CPU time (CLOCK_THREAD_CPUTIME_ID), so another
 * process's load does not lower them; the best of the repetitions; MB =
 * 1e6 bytes, as ragg-perf counts. Prints one line:
 *
 *   seal-ceiling: aes256gcm=yes|no aes256gcm_seal_MBps=A aes256gcm_open_MBps=B
 *     chacha20poly1305_seal_MBps=C chacha20poly1305_open_MBps=D memcpy_MBps=E
 *
 * (one line; the AES figures are 0 without AES-NI).
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#define SEG   ((size_t)64 << 10)
#define TOTAL ((size_t)16 << 20)
#define NSEG  (TOTAL / SEG)
#define STAGE 8
#define TAG   16
#define REPS  5

enum op { AES_SEAL, AES_OPEN, CHACHA_SEAL, CHACHA_OPEN, COPY, NOPS };

static double cpu_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void nonce(uint64_t n, uint8_t out[12])
{
	memset(out, 0, 12);
	memcpy(out, &n, 8);
}

int main(void)
{
	static crypto_aead_aes256gcm_state st __attribute__((aligned(64)));
	uint8_t key[32], n[12];
	uint8_t *buf = malloc(TOTAL), *stage = malloc(STAGE * (SEG + TAG)),
	        *tags = malloc(NSEG * TAG);
	double best[NOPS] = { 0 };
	unsigned long long tl;
	bool aes;
	int bad = 0;

	if (sodium_init() < 0 || !buf || !stage || !tags) {
		fprintf(stderr, "ragg-seal-ceiling: libsodium does not start or out of memory\n");
		return 1;
	}
	aes = crypto_aead_aes256gcm_is_available();
	randombytes_buf(key, sizeof(key));
	randombytes_buf(buf, TOTAL);
	memset(stage, 0, STAGE * (SEG + TAG));
	if (aes)
		crypto_aead_aes256gcm_beforenm(&st, key);
	for (int r = 0; r < REPS; r++) {
		for (int op = 0; op < NOPS; op++) {
			if (!aes && (op == AES_SEAL || op == AES_OPEN))
				continue;
			double t = cpu_s();
			for (size_t i = 0; i < NSEG; i++) {
				uint8_t *in = buf + i * SEG, *out = stage + (i % STAGE) * (SEG + TAG);
				nonce(i, n);
				switch (op) {
				case AES_SEAL:
					crypto_aead_aes256gcm_encrypt_detached_afternm(
					    out, out + SEG, &tl, in, SEG, NULL, 0, NULL, n, &st);
					break;
				case CHACHA_SEAL:
					crypto_aead_chacha20poly1305_ietf_encrypt_detached(
					    out, out + SEG, &tl, in, SEG, NULL, 0, NULL, n, key);
					break;
				case COPY:
					memcpy(out, in, SEG);
					break;
				case AES_OPEN:
				case CHACHA_OPEN:
					/* Sealed in place (outside the clock), opened
					 * in place: the receiver's work. */
					break;
				}
			}
			if (op == AES_OPEN || op == CHACHA_OPEN) {
				for (size_t i = 0; i < NSEG; i++) {
					uint8_t *p = buf + i * SEG;
					nonce(i, n);
					if (op == AES_OPEN)
						crypto_aead_aes256gcm_encrypt_detached_afternm(
						    p, tags + i * TAG, &tl, p, SEG, NULL, 0, NULL, n, &st);
					else
						crypto_aead_chacha20poly1305_ietf_encrypt_detached(
						    p, tags + i * TAG, &tl, p, SEG, NULL, 0, NULL, n, key);
				}
				t = cpu_s();
				for (size_t i = 0; i < NSEG; i++) {
					uint8_t *p = buf + i * SEG;
					nonce(i, n);
					bad |= op == AES_OPEN
					           ? crypto_aead_aes256gcm_decrypt_detached_afternm(
					                 p, NULL, p, SEG, tags + i * TAG, NULL, 0, n, &st)
					           : crypto_aead_chacha20poly1305_ietf_decrypt_detached(
					                 p, NULL, p, SEG, tags + i * TAG, NULL, 0, n, key);
				}
			}
			double s = cpu_s() - t;
			double mbps = s > 0 ? (double)TOTAL / s / 1e6 : 0;
			if (mbps > best[op])
				best[op] = mbps;
		}
	}
	if (bad) {
		fprintf(stderr, "ragg-seal-ceiling: a record did not open\n");
		return 1;
	}
	printf("seal-ceiling: aes256gcm=%s aes256gcm_seal_MBps=%.0f aes256gcm_open_MBps=%.0f "
	       "chacha20poly1305_seal_MBps=%.0f chacha20poly1305_open_MBps=%.0f memcpy_MBps=%.0f\n",
	       aes ? "yes" : "no", best[AES_SEAL], best[AES_OPEN], best[CHACHA_SEAL],
	       best[CHACHA_OPEN], best[COPY]);
	free(buf);
	free(stage);
	free(tags);
	return 0;
}
