/*
 * metrics.h - Prometheus metrics of a node, served over HTTP.
 *
 * met_start() serves GET /metrics at "host:port" (metricsAddress) in the
 * Prometheus text exposition format (version 0.0.4) with nng's HTTP server;
 * any other path gets 404, a request body is refused. Each scrape reads
 * the runtime's snapshots (rt_node_status, rt_node_stats, the latency
 * histograms) and /proc/self; it never waits on an actor.
 *
 * Threads: scrapes run on nng's HTTP threads; met_start/met_stop on the
 * caller's. Every metric is listed in docs/OPERATIONS.md, "Metrics".
 *
 * Limits: one scrape's text is at most MET_MAX_TEXT_BYTES (a larger one
 * gets 500 and is logged).
 */
#ifndef DLEDGER_METRICS_H
#define DLEDGER_METRICS_H

#include <stddef.h>

#include "common/dl_err.h"
#include "runtime/runtime.h"

#define MET_MAX_TEXT_BYTES (64u << 20)

struct met_server;

/* Starts serving the metrics of `node` at `addr` ("host:port"; an IPv6
 * host in brackets). `node` is borrowed and must stay running until
 * met_stop(). Fails with DL_EINVAL (a malformed address: err says why),
 * DL_EBUSY (the port is in use), DL_EIO (any other listen error), DL_ENOMEM. */
int met_start(const char *addr, struct rt_node *node, struct met_server **out,
              struct dl_errctx *err);

/* Stops serving; a scrape that is running finishes against the node
 * first, later ones get 503. NULL-safe. */
void met_stop(struct met_server *m);

/* Renders the current metrics of `node`. On success *text (malloc'd, NUL
 * terminated, the caller frees it) and *len. DL_ENOMEM, DL_ETOOBIG. */
int met_render(struct rt_node *node, char **text, size_t *len);

#endif
