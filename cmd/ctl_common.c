/*
 * ctl_common.c - what every dledger-ctl subcommand shares: messages and
 * exit codes, the common options, opening the C client (ctl.h).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/ctl.h"

const char *g_cmd = "dledger-ctl";

void fail_msg(const char *fmt, ...)
{
	va_list ap;
	fflush(stdout); /* keep the order of output and errors on a terminal */
	fprintf(stderr, "dledger-ctl: %s: ", g_cmd);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

int usage_error(const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "dledger-ctl: %s: ", g_cmd);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry 'dledger-ctl %s --help'.\n", g_cmd);
	return EXIT_USAGE;
}

int op_error(int rc, const struct dl_errctx *err)
{
	fail_msg("%s", err->msg[0] ? err->msg : dl_strerror(rc));
	return EXIT_OP;
}

/* ---- common options --------------------------------------------------------------- */


bool parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	if (s == NULL || *s == '\0' || *s == '-' || *s == '+')
		return false;
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < min || v > max)
		return false;
	*out = v;
	return true;
}

bool parse_u32(const char *s, uint32_t min, uint32_t max, uint32_t *out)
{
	uint64_t v;
	if (!parse_u64(s, min, max, &v))
		return false;
	*out = (uint32_t)v;
	return true;
}


/* Handles the options every subcommand shares. Returns 1 if taken, 0 if
 * not one of them, or EXIT_USAGE (negated) on a bad value. */
static int common_opt(struct common *co, int id, const char *arg)
{
	switch (id) {
	case OPT_PEERS: co->peers = arg; return 1;
	case OPT_GROUP: co->group = arg; return 1;
	case OPT_MEMBER: co->member = arg; return 1;
	case OPT_JSON: co->json = true; return 1;
	case OPT_TLS_CERT: co->tls_cert = arg; return 1;
	case OPT_TLS_KEY: co->tls_key = arg; return 1;
	case OPT_TLS_CA: co->tls_ca = arg; return 1;
	case OPT_HELP: co->help = true; return 1;
	case OPT_TIMEOUT:
		if (!parse_u32(arg, 1, 3600u * 1000u, &co->timeout_ms))
			return -usage_error("--timeout: expected milliseconds 1..3600000, got '%s'",
					    arg);
		return 1;
	case OPT_HOPS:
		if (!parse_u32(arg, 1, DL_CLIENT_MAX_HOPS, &co->max_hops))
			return -usage_error("--max-hops: expected 1..%u, got '%s'",
					    DL_CLIENT_MAX_HOPS, arg);
		return 1;
	default: return 0;
	}
}

int parse_opts(int argc, char **argv, const struct option *opts, struct common *co,
		      own_opt_fn own, void *ctx)
{
	opterr = 0;
	optind = 1;
	for (;;) {
		int id = getopt_long(argc, argv, ":h", opts, NULL);
		if (id == -1)
			break;
		if (id == 'h')
			id = OPT_HELP;
		if (id == '?')
			return usage_error("unknown option '%s'", argv[optind - 1]);
		if (id == ':')
			return usage_error("option '%s' needs a value", argv[optind - 1]);
		int rc = common_opt(co, id, optarg);
		if (rc < 0)
			return -rc;
		if (rc == 0 && own != NULL) {
			rc = own(ctx, id, optarg);
			if (rc != 0)
				return rc;
		}
	}
	if (optind < argc)
		return usage_error("unexpected argument '%s'", argv[optind]);
	return 0;
}

int open_client(const struct common *co, const char *group, uint32_t inflight,
		       struct dl_client **c)
{
	struct dl_client_opts o = {.timeout_ms = co->timeout_ms,
				   .max_hops = co->max_hops,
				   .max_inflight = inflight,
				   .get_wait_ms = co->get_wait_ms,
				   .retry_busy = true,
				   .tls_cert_file = co->tls_cert,
				   .tls_key_file = co->tls_key,
				   .tls_ca_file = co->tls_ca};
	if ((co->tls_cert || co->tls_key || co->tls_ca) &&
	    !(co->tls_cert && co->tls_key && co->tls_ca))
		return usage_error("--tls-cert, --tls-key and --tls-ca go together");
	struct dl_errctx err = {{0}};
	int rc = dl_client_open(co->peers, group, &o, c, &err);
	/* A bad peers string, or a TLS file that cannot be read or does not
	 * check out: the message names the member or the file. */
	if (rc == DL_ECONFIG || rc == DL_EINVAL)
		return usage_error("%s%s", co->tls_cert != NULL ? "" : "--peers: ", err.msg);
	if (rc != 0)
		return op_error(rc, &err);
	return 0;
}
