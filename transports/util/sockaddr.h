/*
 * Predicates on IPv4 and IPv6 socket addresses, for transports that decide
 * whether a peer or a host is this machine. Every other family answers
 * false.
 */
#ifndef RAGG_TP_UTIL_SOCKADDR_H
#define RAGG_TP_UTIL_SOCKADDR_H

#include <stdbool.h>
#include <sys/socket.h>

/* Same family and same IP address; ports are not compared. */
bool ragg__tp_sa_same_ip(const struct sockaddr *a, const struct sockaddr *b);
/* INADDR_ANY or in6addr_any. */
bool ragg__tp_sa_is_wildcard(const struct sockaddr *sa);
/* 127.0.0.0/8 or ::1. */
bool ragg__tp_sa_is_loopback(const struct sockaddr *sa);
/* An IPv4-mapped IPv6 address in 127.0.0.0/8 (::ffff:127.x.y.z). */
bool ragg__tp_sa_is_mapped_loopback(const struct sockaddr *sa);

#endif
