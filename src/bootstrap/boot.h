/*
 * The bootstrap: where agents and servers publish their endpoint addresses
 * and their peers look them up. Two kinds behind one interface:
 *  - the rendezvous (kv.h), a key-value store at RAGG_ROOT served by
 *    server 0: for ragg-run and processes started by hand;
 *  - PMIx (pmix.c), the launcher's own exchange under mpirun or
 *    srun --mpi=pmix: PMIx_Put and PMIx_Commit, one PMIx_Fence of every
 *    process of the launcher's job, then PMIx_Get; no address to set.
 * RAGG_BOOTSTRAP chooses (see ragg(7)).
 */
#ifndef RAGG_BOOT_H
#define RAGG_BOOT_H

#include <stdbool.h>
#include <stddef.h>

#include <ragg/ragg.h>

struct ragg__kv;
struct ragg__pmix;
struct ragg__kv_server;

struct ragg__boot {
	struct ragg__kv *kv; /* the rendezvous, or NULL */
	struct ragg__pmix *pmix; /* PMIx, or NULL */
	int timeout_ms;
};

/* "pmix" or "rendezvous": what RAGG_BOOTSTRAP in o selects for this
 * process (auto resolved); NULL, logged, when it names PMIx and PMIx is
 * not at hand. */
const char *ragg__boot_kind(const struct ragg_opts *o);

/* Open the kind ragg__boot_kind names (the rendezvous: server 0 serves it
 * first, into *server). */
int ragg__boot_open(const struct ragg_opts *o, struct ragg__boot *b,
                    struct ragg__kv_server **server);
void ragg__boot_close(struct ragg__boot *b);

/* Publish value under key ("<role>/<rank>", which is also the identity). */
int ragg__boot_put(struct ragg__boot *b, const char *key, const char *value);
/* After every process of the job published what it publishes: PMIx's
 * fence, which every process of the launcher's job must reach; nothing
 * for the rendezvous, where gets wait. */
int ragg__boot_exchange(struct ragg__boot *b);
/* The value of key, published by the process of launcher rank `hint` if
 * the launch follows the rank mapping (any process's otherwise). */
int ragg__boot_get(struct ragg__boot *b, long hint, const char *key, char *value, size_t cap);
/* The host to listen on when RAGG_LISTEN_HOST is empty. */
int ragg__boot_listen_host(const struct ragg__boot *b, char *host, size_t cap);

/* PMIx itself (pmix.c); without PMIx built, every call fails with
 * -ENOSYS and ragg__pmix_client is false. */
bool ragg__pmix_built(void);
bool ragg__pmix_client(void);
int ragg__pmix_open(int timeout_ms, struct ragg__pmix **out);
void ragg__pmix_close(struct ragg__pmix *p);
int ragg__pmix_put(struct ragg__pmix *p, const char *key, const char *value);
int ragg__pmix_fence(struct ragg__pmix *p);
int ragg__pmix_get(struct ragg__pmix *p, long hint, const char *key, char *value, size_t cap);

#endif
