/*
 * IPv4/IPv6 address predicates (see sockaddr.h).
 */
#include "config.h"

#include <netinet/in.h>
#include <string.h>

#include "sockaddr.h"

/* A struct sockaddr is read as the family's own struct through void *:
 * the caller's storage is that struct or a sockaddr_storage. */
static const struct sockaddr_in *sa_in(const struct sockaddr *sa)
{
	return (const void *)sa;
}

static const struct sockaddr_in6 *sa_in6(const struct sockaddr *sa)
{
	return (const void *)sa;
}

bool ragg__tp_sa_same_ip(const struct sockaddr *a, const struct sockaddr *b)
{
	if (a->sa_family != b->sa_family)
		return false;
	if (a->sa_family == AF_INET)
		return sa_in(a)->sin_addr.s_addr == sa_in(b)->sin_addr.s_addr;
	if (a->sa_family == AF_INET6)
		return memcmp(&sa_in6(a)->sin6_addr, &sa_in6(b)->sin6_addr,
		              sizeof(struct in6_addr)) == 0;
	return false;
}

bool ragg__tp_sa_is_wildcard(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		return sa_in(sa)->sin_addr.s_addr == htonl(INADDR_ANY);
	if (sa->sa_family == AF_INET6)
		return IN6_IS_ADDR_UNSPECIFIED(&sa_in6(sa)->sin6_addr);
	return false;
}

bool ragg__tp_sa_is_loopback(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		return ntohl(sa_in(sa)->sin_addr.s_addr) >> 24 == 127;
	if (sa->sa_family == AF_INET6)
		return IN6_IS_ADDR_LOOPBACK(&sa_in6(sa)->sin6_addr);
	return false;
}

bool ragg__tp_sa_is_mapped_loopback(const struct sockaddr *sa)
{
	if (sa->sa_family != AF_INET6)
		return false;
	const struct in6_addr *a = &sa_in6(sa)->sin6_addr;
	return IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127;
}
