/*
 * dl_log.h - one line per event, to stderr by default:
 *   2026-11-25T17:01:02.123Z INFO  g0/n0 role leader term 3
 * Thread-safe (one write(2) per line). dl_log() and dl_log_set_level() are
 * part of the installed API (include/dledger/dledger_log.h).
 */
#ifndef DLEDGER_DL_LOG_H
#define DLEDGER_DL_LOG_H

#include "dledger/dledger_log.h"

/* Parses "debug", "info", "warn", "error"; -1 if none. */
int dl_log_level_parse(const char *s);

#endif
