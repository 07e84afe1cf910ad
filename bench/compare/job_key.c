/*
 * A fresh RAGG_JOB_KEY for a job started by hand (scripts/bench compare's
 * two emulated nodes): 32 random bytes from libsodium, printed in hex.
 */
#include <stdint.h>
#include <stdio.h>

#include <sodium.h>

int main(void)
{
	uint8_t raw[32];
	char hex[2 * sizeof(raw) + 1];
	if (sodium_init() < 0)
		return 1;
	randombytes_buf(raw, sizeof(raw));
	sodium_bin2hex(hex, sizeof(hex), raw, sizeof(raw));
	sodium_memzero(raw, sizeof(raw));
	puts(hex);
	return 0;
}
