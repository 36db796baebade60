/* awshttp.h - small pieces shared by the AWS clients over libcurl.
 *
 * The endpoint form, the retry wait and the clock every AWS call needs,
 * kept in one place so the DynamoDB client does not copy them from s3.c
 * (which keeps its own copies until it moves onto a shared transport). */
#ifndef RESIZER_AWSHTTP_H
#define RESIZER_AWSHTTP_H

#include <stddef.h>

#include "err.h"

/* scheme://host[:port] of a service, as signed and sent. */
struct awshttp_endpoint {
    char *scheme; /* "http" or "https" */
    char *host;   /* host[:port], the port only when not the scheme's default */
};

/* Parses an http(s) URL with no path ("/" allowed). RZ_EINVAL with msg
 * when it is not one; RZ_ENOMEM. Release with awshttp_endpoint_cleanup. */
enum rz_err awshttp_endpoint_parse(const char *url, struct awshttp_endpoint *ep, char *msg,
                                   size_t msglen);

/* Frees the strings; safe on a zeroed or partly filled struct. */
void awshttp_endpoint_cleanup(struct awshttp_endpoint *ep);

/* The wait before retry number attempt (1, 2, ...): uniform in
 * [0, min(base_ms * 2^attempt, cap_ms)] (full jitter), so replicas retrying
 * the same outage spread out instead of stampeding. */
long awshttp_backoff_ms(long base_ms, long cap_ms, int attempt);

/* Sleeps ms milliseconds, resuming after signals. */
void awshttp_sleep_ms(long ms);

/* Monotonic seconds, for latency metrics and deadlines. */
double awshttp_now_secs(void);

#endif
