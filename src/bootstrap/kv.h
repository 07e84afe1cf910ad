/*
 * The rendezvous: a small key-value store at RAGG_ROOT where processes
 * publish their endpoint addresses and look up their peers'. Server 0 serves
 * it from a thread; everybody (server 0 included) is a client.
 *
 * This is the only part of the core that touches sockets: it is the
 * out-of-band channel, not a data transport.
 */
#ifndef RAGG_KV_H
#define RAGG_KV_H

#include <stddef.h>

#define RAGG_KV_VALUE_MAX 256

#define RAGG_KV_CHALLENGE_BYTES 32

/* The MAC of one request line (without its MAC) on a connection whose
 * challenge is chal, under job_key: hex into out (2 * 32 + 1 bytes). */
void ragg__kv_mac(const char *job_key, const unsigned char *chal, const char *line, char *out);

struct ragg__kv_server;
struct ragg__kv;

/* Serve at root ("host:port"), on that address only; a client silent for
 * idle_ms is dropped; requests must carry a MAC under job_key (see
 * kv_server.c). */
int ragg__kv_server_start(const char *root, int idle_ms, const char *job_key,
                          struct ragg__kv_server **server);
/* The same on listen_fd, a listening socket inherited from a launcher
 * (RAGG_ROOT_FD), when it is >= 0: nothing is bound here. */
int ragg__kv_server_start_fd(const char *root, int listen_fd, int idle_ms, const char *job_key,
                             struct ragg__kv_server **out);
void ragg__kv_server_stop(struct ragg__kv_server *server);

/* Connect to root, retrying until the deadline (the server may start later). */
int ragg__kv_connect(const char *root, int timeout_ms, const char *job_key, struct ragg__kv **kv);
void ragg__kv_close(struct ragg__kv *kv);
/* Publish as identity id ("<role>/<rank>"): the first identity to publish a
 * key owns it; only it may publish that key again. */
int ragg__kv_put(struct ragg__kv *kv, const char *id, const char *key, const char *value);
/* Wait until key is published or timeout_ms passes (RAGG_ERR_TIMEOUT). */
int ragg__kv_get(struct ragg__kv *kv, const char *key, char *value, size_t cap, int timeout_ms);
/* This host's address on the route to the root: what peers can reach. */
int ragg__kv_local_host(const struct ragg__kv *kv, char *host, size_t cap);

/* Split "host:port" / "[v6]:port"; 0 or RAGG_ERR_CONFIG. */
int ragg__split_hostport(const char *addr, char *host, size_t host_cap, char *port,
                         size_t port_cap);

#endif
