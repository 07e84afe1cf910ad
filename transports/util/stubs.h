/*
 * Stubs for operations a transport does not provide. An operation of the
 * table is never NULL where the table is large enough to hold it (as in
 * rdma-core's providers): it is one of these, answering -EOPNOTSUPP.
 */
#ifndef RAGG_TP_UTIL_STUBS_H
#define RAGG_TP_UTIL_STUBS_H

#include <stddef.h>
#include <stdint.h>

/* describe: nothing to list; buf is left empty. */
int ragg__tp_describe_none(char *buf, size_t len);
/* seal: this transport cannot seal (-EOPNOTSUPP). */
struct ragg_tp_ep;
int ragg__tp_seal_none(struct ragg_tp_ep *ep, unsigned cipher, const uint8_t *rx_key,
                       const uint8_t *tx_key, size_t key_len);

#endif
