/*
 * The one list of the built-in transports (registry.c), for the library's
 * internals and ragg-info: each transport's table of functions, the
 * prefix of its variables (RAGG_<PREFIX>_*) and its settings table, in
 * the order RAGG_TRANSPORT=auto tries them. Adding a transport is one line
 * there; auto's order, ragg_transport_list(), the settings that ragg-info
 * prints and ragg(7) documents all follow from it.
 */
#ifndef RAGG_TP_REGISTRY_H
#define RAGG_TP_REGISTRY_H

#include <ragg/transport.h>

#include "util/settings.h"

struct ragg__tp_entry {
	const struct ragg_tp_ops *ops; /* NULL ends the list */
	const char *prefix; /* the <PREFIX> of its variables */
	const struct ragg__tp_setting *settings;
};

/* NULL-terminated, in auto's order. */
extern const struct ragg__tp_entry ragg__tp_registry[];

#endif
