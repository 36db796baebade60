/* healthcheck.h - the container health check: one GET, no curl binary needed in
 * the image (resizer --check-health http://127.0.0.1:8080/healthz). */
#ifndef RESIZER_HEALTHCHECK_H
#define RESIZER_HEALTHCHECK_H

/* GETs url with a timeout; returns 0 if the answer is 200, 1 otherwise,
 * and writes one line saying what it got to stderr. */
int healthcheck_run(const char *url, long timeout_ms);

#endif
