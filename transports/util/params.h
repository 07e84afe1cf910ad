/*
 * The device parameters a transport keeps: its own full-size copy of what
 * the caller passed, whatever header version the caller was built with.
 */
#ifndef RAGG_TP_UTIL_PARAMS_H
#define RAGG_TP_UTIL_PARAMS_H

#include <ragg/transport.h>

/* Copy the first src->size bytes of src into dst (the caller checked that
 * src reaches at least up to wake_fd) and complete it: a caller built
 * against an older header gets no wake fd (-1), a NULL log becomes one that
 * drops everything, and dst->size is the full size. */
void ragg__tp_params_copy(struct ragg_tp_params *dst, const struct ragg_tp_params *src);

#endif
