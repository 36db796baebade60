/* script_srv.h - a scripted HTTP server on loopback (libmicrohttpd) for
 * the unit tests of the AWS clients: the first fail_first requests get
 * the scripted status and body, the others the test's own answer; the
 * last request's body and chosen headers are kept for the test to check. */
#ifndef RESIZER_TESTS_SCRIPT_SRV_H
#define RESIZER_TESTS_SCRIPT_SRV_H

#include <microhttpd.h>
#include <pthread.h>
#include <stddef.h>

#define SCRIPT_SRV_HEADERS 4

struct script_srv {
    /* Set by the test before script_srv_start: */
    const char *record[SCRIPT_SRV_HEADERS]; /* header names to keep (NULL ends) */
    /* The answer after the scripted failures, called with lock held. */
    struct MHD_Response *(*answer)(struct script_srv *s, const char *method);
    void *arg; /* the test's, for answer */

    struct MHD_Daemon *d;
    pthread_mutex_t lock;
    unsigned port;
    int hits;       /* requests answered since the last script */
    int fail_first; /* this many answers are fail_status/fail_body */
    unsigned fail_status;
    const char *fail_body;
    char value[SCRIPT_SRV_HEADERS][512]; /* the last request's record[i] ... */
    char body[4096];                     /* ... and its body (cut at 4095 bytes) */
};

/* Starts s on a free loopback port; 0, or -1 if it cannot. */
int script_srv_start(struct script_srv *s);
void script_srv_stop(struct script_srv *s);

/* From now on: fail_first answers of status with body (NULL: empty),
 * then the test's answer; the hit count starts again. */
void script_srv_script(struct script_srv *s, int fail_first, unsigned status, const char *body);

/* The last request's value of header name (one of record), "" if absent. */
const char *script_srv_value(const struct script_srv *s, const char *name);

#endif
