/* libFuzzer target: the rendezvous server's request path (line assembly,
 * parsing, the store), fed through a socket pair as a client's bytes would
 * come, in pieces whose sizes the input's first byte chooses. */
#include "bootstrap/kv_server.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct ragg__kv_server srv;
	static struct kv_client client;
	int sv[2];
	char sink[4096];
	if (!size)
		return 0;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv))
		return 0;
	size_t piece = (size_t)data[0] % 64 + 1;
	data++;
	size--;
	memset(&client, 0, sizeof(client));
	client.fd = sv[0];
	for (size_t off = 0; off < size; off += piece) {
		size_t n = size - off < piece ? size - off : piece;
		if (send(sv[1], data + off, n, MSG_NOSIGNAL) != (ssize_t)n)
			break;
		int dropped = kv_client_readable(&srv, &client);
		while (recv(sv[1], sink, sizeof(sink), 0) > 0)
			;
		if (dropped)
			break;
	}
	close(sv[0]);
	close(sv[1]);
	for (size_t i = 0; i < srv.nentries; i++) {
		free(srv.entries[i].key);
		free(srv.entries[i].value);
	}
	free(srv.entries);
	memset(&srv, 0, sizeof(srv));
	return 0;
}
