/*
 * tt_net.h - network helpers for tests: a free TCP port on 127.0.0.1.
 * The port is free when returned; another process could take it before the
 * caller binds it (tests pick their ports right before starting nodes).
 */
#ifndef DLEDGER_TEST_TT_NET_H
#define DLEDGER_TEST_TT_NET_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <sys/socket.h>
#include <unistd.h>

/* 0 when no port could be had. */
static inline uint16_t tt_free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0)
		return 0;
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sa);
	uint16_t port = 0;
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
		port = ntohs(sa.sin_port);
	close(fd);
	return port;
}

#endif
