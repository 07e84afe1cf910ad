/*
 * The connection handshake: mutual proof of the job key, bound to one
 * connection, run over the core's control messages right after a transport
 * reports a connection CONNECTED, so it is the same on every transport.
 *
 * The hello in the connection's private data only names the peer (role,
 * rank, job shape, version) and lets an acceptor refuse garbage early; it
 * is a fixed string per (job, role, rank) and proves nothing about the
 * connection it arrives on. Then, on the connection itself:
 *
 *   C = the side that connected (worker to agent, agent to server),
 *   S = the side that accepted.
 *
 *   both:  KEYS  = 0x80 | nonce (32 random bytes) | X25519 ephemeral pk (32)
 *                  | flags (1: RAGG_HS_F_*)
 *   both, once the peer's KEYS is in:
 *          PROOF = 0x81 | crypto_auth(label_self | T, K)
 *
 *   K = BLAKE2b-256(RAGG_JOB_KEY)
 *   T = BLAKE2b-256("ragg handshake" | version | workers | agents | servers
 *                   | C role | C rank | S role | S rank
 *                   | C nonce | C pk | C flags | S nonce | S pk | S flags)
 *   label_self = "client" for C, "server" for S, so one side's proof is
 *   never the other's.
 *
 * Each side checks the peer's PROOF with crypto_auth_verify (constant
 * time). Both nonces are fresh, so a recorded PROOF never verifies on
 * another connection; both ephemeral keys are under the MAC, so a relay
 * without K can neither substitute its own keys nor complete either side.
 *
 * State, per peer: IDLE -> (KEYS sent) -> (peer KEYS in, PROOF sent) ->
 * (peer PROOF verified) DONE. IDLE is left when the transport reports the
 * connection up or when the peer's KEYS arrives, whichever comes first
 * (transports may deliver a message before the CONNECTED event). Only DONE
 * sets peer->connected, and only a connected peer's control messages other
 * than KEYS/PROOF reach the roles or have its queue flushed: DECLARE,
 * GRAD_AT, PARAMS_AT and every other message carrying a region descriptor
 * wait in the queue until then, and a write landing from a peer that is not
 * connected is refused. Anything out of order (PROOF before KEYS, KEYS
 * twice, a handshake message after DONE) fails the handshake.
 *
 * Each side derives the per-direction session keys right after its PROOF
 * is out (the Diffie-Hellman, the dearest step, then runs while the proofs
 * cross) and uses them only on DONE:
 *   crypto_kx_{client,server}_session_keys(ephemeral keys) -> (rx0, tx0)
 *   key C->S = BLAKE2b-256("c2s" | C's tx0 = S's rx0 | T, K),
 *   key S->C = BLAKE2b-256("s2c" | C's rx0 = S's tx0 | T, K)
 * so the session keys depend on the job key and this connection's whole
 * transcript, not on the Diffie-Hellman alone, and one side's tx is the
 * other's rx.
 *
 * Sealing (RAGG_SEAL=on, a job-wide setting): both sides' flags must say
 * the same (else the handshake fails, naming the setting); on DONE the
 * core hands the session keys to the transport's seal() (AES-256-GCM when
 * both sides' flags have RAGG_HS_F_AES, else ChaCha20-Poly1305), so every
 * frame after the proofs is sealed: each side's PROOF is the last frame it
 * sends in the clear, and the peer's PROOF the last it receives so.
 *
 * Deadline: a handshake not DONE within RAGG_HANDSHAKE_MS of its start is
 * failed as any other (ragg__hs_sweep), so a peer that said hello and then
 * stays silent does not hold its place.
 *
 * A failure on the connecting side fails the job (RAGG_ERR_AUTH: a wrong
 * process answers at a published address). A failure on the accepting
 * side drops that connection only, logged, and frees the peer's place so
 * the genuine peer can still connect: a replayed hello costs the job
 * nothing.
 */
#ifndef RAGG_HANDSHAKE_H
#define RAGG_HANDSHAKE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sodium.h>

struct ragg_ctx;
struct ragg__peer;
struct ragg_tp_event;

#define RAGG_HS_KEYS              0x80u
#define RAGG_HS_PROOF             0x81u
#define RAGG_HS_NONCE_BYTES       32
#define RAGG_HS_KEYS_WIRE         (1 + RAGG_HS_NONCE_BYTES + crypto_kx_PUBLICKEYBYTES + 1)
/* The flags byte closing KEYS. */
#define RAGG_HS_F_AES  0x01u /* AES-256-GCM runs here (AES-NI) */
#define RAGG_HS_F_SEAL 0x02u /* this side has RAGG_SEAL=on */
#define RAGG_HS_PROOF_WIRE        (1 + crypto_auth_BYTES)
#define RAGG_HS_SESSION_KEY_BYTES 32

/* True if a control message is a handshake message (its first byte). */
static inline bool ragg__hs_is_msg(const void *data, size_t len)
{
	return len > 0 && (((const uint8_t *)data)[0] & 0x80u);
}

/* The peer's connection is up: send this side's KEYS. We connected when
 * `client`. 0 or a negative error (the handshake failed). */
int ragg__hs_on_connected(struct ragg_ctx *ctx, struct ragg__peer *p, bool client);

/* A handshake message from p. Sets p->connected once both proofs check. */
void ragg__hs_on_msg(struct ragg_ctx *ctx, struct ragg__peer *p, const struct ragg_tp_event *ev);

/* The handshake of p failed with rc: fail the job or drop the connection
 * (see above). */
void ragg__hs_fail(struct ragg_ctx *ctx, struct ragg__peer *p, int rc, const char *why);

/* Close connections dropped by a failed handshake; run between batches of
 * events, never while one is dispatched (its later events name them). */
void ragg__hs_reap(struct ragg_ctx *ctx);

/* This side's session keys with p, once connected; 0 or -EAGAIN. */
int ragg__hs_session_keys(const struct ragg__peer *p, uint8_t rx[RAGG_HS_SESSION_KEY_BYTES],
                          uint8_t tx[RAGG_HS_SESSION_KEY_BYTES]);

/* The deadline of a connection's set-up: RAGG_HANDSHAKE_MS, at most
 * RAGG_TIMEOUT_MS (0: RAGG_TIMEOUT_MS). */
int ragg__hs_deadline_ms(const struct ragg_ctx *ctx);

/* Fail handshakes past their deadline; cheap, call it from the loop. */
void ragg__hs_sweep(struct ragg_ctx *ctx);

/* Forget p's handshake state (wiped). */
void ragg__hs_free(struct ragg__peer *p);

/* True if p's connections are accepted here (p connects to us). */
bool ragg__hs_we_accept(const struct ragg_ctx *ctx, const struct ragg__peer *p);

/* Log once per process that a job without a key is open to anyone. */
void ragg__hs_warn_no_key(const struct ragg_ctx *ctx);

#endif
