/* awshttp.c - endpoint parsing, retry waits and the clock for AWS calls. */
#include "awshttp.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static enum rz_err awshttp_strip_default_port(struct awshttp_endpoint *ep)
{
    /* curl leaves a default port out of Host:, and the signature must match. */
    const char *dflt = strcmp(ep->scheme, "https") == 0 ? ":443" : ":80";
    size_t len = strlen(ep->host);
    size_t dlen = strlen(dflt);

    if (len > dlen && strcmp(ep->host + len - dlen, dflt) == 0)
        ep->host[len - dlen] = '\0';
    return RZ_OK;
}

enum rz_err awshttp_endpoint_parse(const char *url, struct awshttp_endpoint *ep, char *msg,
                                   size_t msglen)
{
    const char *rest;
    size_t hostlen;

    memset(ep, 0, sizeof(*ep));
    if (strncmp(url, "https://", 8) == 0) {
        ep->scheme = strdup("https");
        rest = url + 8;
    } else if (strncmp(url, "http://", 7) == 0) {
        ep->scheme = strdup("http");
        rest = url + 7;
    } else {
        snprintf(msg, msglen, "endpoint %.200s is not an http(s) URL", url);
        return RZ_EINVAL;
    }
    hostlen = strcspn(rest, "/?#@ ");
    if (hostlen == 0 || (rest[hostlen] != '\0' && strcmp(rest + hostlen, "/") != 0)) {
        snprintf(msg, msglen, "endpoint %.200s must be scheme://host[:port] with no path", url);
        awshttp_endpoint_cleanup(ep);
        return RZ_EINVAL;
    }
    ep->host = strndup(rest, hostlen);
    if (!ep->scheme || !ep->host) {
        awshttp_endpoint_cleanup(ep);
        return RZ_ENOMEM;
    }
    return awshttp_strip_default_port(ep);
}

void awshttp_endpoint_cleanup(struct awshttp_endpoint *ep)
{
    free(ep->scheme);
    free(ep->host);
    ep->scheme = NULL;
    ep->host = NULL;
}

long awshttp_backoff_ms(long base_ms, long cap_ms, int attempt)
{
    long cap = base_ms > 0 ? base_ms : 1;

    for (int i = 0; i < attempt && cap < cap_ms; i++)
        cap *= 2;
    if (cap > cap_ms)
        cap = cap_ms;
    return (long)arc4random_uniform((uint32_t)cap + 1);
}

void awshttp_sleep_ms(long ms)
{
    struct timespec ts;

    if (ms <= 0)
        return;
    ts.tv_sec = ms / 1000;
    ts.tv_nsec = (ms % 1000) * 1000000L;
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

double awshttp_now_secs(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}
