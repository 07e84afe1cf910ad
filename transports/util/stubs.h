/*
 * Stubs for operations a transport does not provide. An operation of the
 * table is never NULL where the table is large enough to hold it (as in
 * rdma-core's providers): it is one of these, answering -EOPNOTSUPP.
 */
#ifndef RAGG_TP_UTIL_STUBS_H
#define RAGG_TP_UTIL_STUBS_H

#include <stddef.h>

/* describe: nothing to list; buf is left empty. */
int ragg__tp_describe_none(char *buf, size_t len);

#endif
