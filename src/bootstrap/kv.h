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

struct ragg__kv_server;
struct ragg__kv;

/* Serve at root ("host:port"), on that address only; a client silent for
 * idle_ms is dropped. */
int ragg__kv_server_start(const char *root, int idle_ms, struct ragg__kv_server **server);
void ragg__kv_server_stop(struct ragg__kv_server *server);

/* Connect to root, retrying until the deadline (the server may start later). */
int ragg__kv_connect(const char *root, int timeout_ms, struct ragg__kv **kv);
void ragg__kv_close(struct ragg__kv *kv);
int ragg__kv_put(struct ragg__kv *kv, const char *key, const char *value);
/* Wait until key is published or timeout_ms passes (RAGG_ERR_TIMEOUT). */
int ragg__kv_get(struct ragg__kv *kv, const char *key, char *value, size_t cap, int timeout_ms);
/* This host's address on the route to the root: what peers can reach. */
int ragg__kv_local_host(const struct ragg__kv *kv, char *host, size_t cap);

/* Split "host:port" / "[v6]:port"; 0 or RAGG_ERR_CONFIG. */
int ragg__split_hostport(const char *addr, char *host, size_t host_cap, char *port,
                         size_t port_cap);

#endif
