/* Stubs for operations a transport does not provide (stubs.h). */
#include "config.h"

#include <errno.h>

#include "stubs.h"

int ragg__tp_describe_none(char *buf, size_t len)
{
	if (buf && len)
		buf[0] = '\0';
	return -EOPNOTSUPP;
}

int ragg__tp_seal_none(struct ragg_tp_ep *ep, unsigned cipher, const uint8_t *rx_key,
                       const uint8_t *tx_key, size_t key_len)
{
	(void)ep;
	(void)cipher;
	(void)rx_key;
	(void)tx_key;
	(void)key_len;
	return -EOPNOTSUPP;
}
