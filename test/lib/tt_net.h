/*
 * tt_net.h - network helpers for tests: a free TCP port on 127.0.0.1.
 * The port is free when returned; another process could take it before the
 * caller binds it (tests pick their ports right before starting nodes).
 */
#ifndef DLEDGER_TEST_TT_NET_H
#define DLEDGER_TEST_TT_NET_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/socket.h>
#include <unistd.h>

#include "test/lib/tt.h"

/* 0 when no port could be had. A port this process was handed before is
 * never handed out again (the kernel may offer a just-released port twice,
 * which gave two members of one test cluster the same address). */
static inline uint16_t tt_free_port(void)
{
	static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
	static uint8_t given[65536 / 8];
	uint16_t port = 0;
	pthread_mutex_lock(&mu);
	for (int attempt = 0; attempt < 1000 && port == 0; attempt++) {
		int fd = socket(AF_INET, SOCK_STREAM, 0);
		if (fd < 0)
			break;
		struct sockaddr_in sa = {.sin_family = AF_INET,
					 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
		socklen_t len = sizeof(sa);
		if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
		    getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
			port = ntohs(sa.sin_port);
		close(fd);
		if (port != 0 && (given[port / 8] & (1u << (port % 8))) != 0)
			port = 0; /* handed out before: ask again */
	}
	if (port != 0)
		given[port / 8] |= (uint8_t)(1u << (port % 8));
	pthread_mutex_unlock(&mu);
	return port;
}
/* tt_free_port(), or the test fails. */
static inline uint16_t tt_port(void)
{
	uint16_t port = tt_free_port();
	tt_assert(port != 0, "no free port");
	return port;
}

#endif
