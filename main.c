/* main.c - wires the core modules together, serves until SIGTERM, drains.
 *
 * Start order: config -> libraries -> metrics, credentials, S3, index,
 * jobs, readiness probe -> HTTP. Stop order is the reverse, after draining:
 * /readyz turns 503, new events get 503 + Retry-After, queued and running
 * jobs get SHUTDOWN_GRACE seconds, then the process exits 0. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <curl/curl.h>

#include "handlers/handlers.h"
#include "server/config.h"
#include "server/creds.h"
#include "server/image.h"
#include "server/log.h"
#include "server/probe.h"
#include "server/reconcile.h"
#include "server/webhooks.h"

extern char **environ;

struct services {
    struct config cfg;
    struct metrics *metrics;
    struct creds_provider *creds;
    struct s3 *s3;
    struct s3 *s3_probe;
    struct s3 *s3_read;
    struct index *index;
    struct jobs *jobs;
    struct health *health;
    struct reconcile *reconcile;
    struct webhooks *webhooks;
    struct http_server *http;
    struct app app;
};

static void usage(FILE *f)
{
    fprintf(f, "resizer %s - makes desktop/tablet/phone variants of images uploaded to S3\n\n"
               "Usage: resizer [--help | --version | --check-health URL]\n\n"
               "  --check-health URL  GET URL; exit 0 on 200, else 1 (container HEALTHCHECK)\n\n",
            RESIZER_VERSION);
    config_print_help(f);
}

/* Each idle ALB or client connection is a descriptor; the soft limit is
 * often 1024 while the hard one is far higher. */
static void raise_fd_limit(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static enum rz_err start_s3(struct services *s, char *msg, size_t msglen)
{
    const struct config *c = &s->cfg;
    struct creds_source src = {
        c->access_key, c->secret_key, c->session_token, c->container_relative_uri,
        c->container_full_uri, c->container_auth_token, c->container_auth_token_file,
    };
    struct s3_opts o = {
        .endpoint = c->s3_endpoint, .public_endpoint = c->s3_public_endpoint,
        .region = c->region, .force_path_style = c->force_path_style,
        .sse = c->sse == CONFIG_SSE_AES256 ? "AES256" : c->sse == CONFIG_SSE_KMS ? "aws:kms" : NULL,
        .sse_kms_key_id = c->sse_kms_key_id, .timeout_ms = c->s3_timeout * 1000,
        .connect_timeout_ms = 3000,
        .max_attempts = 4, .backoff_base_ms = 200, .metrics = s->metrics,
    };
    enum rz_err err = creds_provider_new(&src, &s->creds, msg, msglen);

    o.creds = s->creds;
    if (err == RZ_OK)
        err = s3_new(&o, &s->s3, msg, msglen);
    /* Probes and status read-through answer people and load balancers
     * waiting on the line: one short attempt, no retries. */
    o.max_attempts = 1;
    o.timeout_ms = 2000;
    o.connect_timeout_ms = 1000;
    if (err == RZ_OK)
        err = s3_new(&o, &s->s3_probe, msg, msglen);
    if (err == RZ_OK)
        err = s3_new(&o, &s->s3_read, msg, msglen);
    return err;
}

/* The sweep needs a source bucket to list; without one it stays off. */
static enum rz_err start_reconcile(struct services *s)
{
    const struct config *c = &s->cfg;
    struct reconcile_opts ro = {c, s->s3, s->index, s->jobs, s->metrics, c->reconcile_interval};

    if (c->reconcile_interval == 0 || !c->src_bucket)
        return RZ_OK;
    return reconcile_start(&ro, &s->reconcile);
}

/* Completion webhooks, when WEBHOOK_URLS is set: their own threads and
 * outbox, handed to the jobs that announce finished images. */
static enum rz_err start_webhooks(struct services *s, char *msg, size_t msglen)
{
    const struct config *c = &s->cfg;
    struct webhooks_opts wo = {
        .urls = c->webhook_urls, .secrets = c->webhook_secret,
        .timeout_ms = c->webhook_timeout * 1000, .retry_base_ms = c->webhook_retry_base_ms,
        .max_attempts = (int)c->webhook_max_attempts,
        .queue_size = (size_t)c->webhook_queue_size, .threads = 4, .metrics = s->metrics,
    };

    if (!c->webhook_urls)
        return RZ_OK;
    return webhooks_new(&wo, &s->webhooks, msg, msglen);
}

static enum rz_err start_services(struct services *s, char *msg, size_t msglen)
{
    const struct config *c = &s->cfg;
    long workers = c->workers ? c->workers : sysconf(_SC_NPROCESSORS_ONLN);
    struct jobs_opts jo;
    struct health_opts ho;
    struct http_server_opts hs;
    enum rz_err err;

    s->metrics = metrics_new();
    s->index = index_new((size_t)c->index_max_entries);
    if (!s->metrics || !s->index)
        return RZ_ENOMEM;
    err = index_metrics_register(s->index, s->metrics);
    if (err == RZ_OK)
        err = start_s3(s, msg, msglen);
    if (err == RZ_OK)
        err = start_webhooks(s, msg, msglen);
    if (err != RZ_OK)
        return err;
    jo = (struct jobs_opts){c, s->s3, s->index, s->metrics, (size_t)(workers > 0 ? workers : 1),
                            (size_t)c->queue_size, s->webhooks};
    err = jobs_new(&jo, &s->jobs);
    ho = (struct health_opts){s->s3_probe, c->src_bucket, c->src_prefix, c->dest_bucket, 2000,
                              6000, s->metrics};
    if (err == RZ_OK)
        err = health_new(&ho, &s->health);
    if (err != RZ_OK)
        return err;
    s->app = (struct app){c, s->metrics, s->s3, s->s3_read, s->index, s->jobs, s->health};
    /* Idle connections close after 75 s: longer than the ALB's 60 s idle
     * timeout, so the ALB never reuses a connection we just closed (502). */
    hs = (struct http_server_opts){c->listen_addr, (int)c->port, (int)c->http_threads, 75,
                                   handlers_routes, handlers_nroutes, &s->app, s->metrics};
    err = http_server_start(&hs, &s->http, msg, msglen);
    if (err == RZ_OK)
        err = start_reconcile(s);
    return err;
}

static void stop_services(struct services *s)
{
    reconcile_stop(s->reconcile);
    http_server_stop(s->http);
    health_free(s->health);
    jobs_free(s->jobs);
    webhooks_free(s->webhooks);
    s3_free(s->s3_read);
    s3_free(s->s3_probe);
    s3_free(s->s3);
    creds_provider_free(s->creds);
    index_free(s->index);
    metrics_free(s->metrics);
}

static int wait_for_signal(const sigset_t *set)
{
    int sig = 0;

    while (sigwait(set, &sig) != 0)
        ;
    return sig;
}

static void drain(struct services *s, int sig)
{
    size_t left;

    log_fields(LOG_INFO, "draining",
               json_pack("{s:s,s:i}", "signal", strsignal(sig), "grace_s",
                         (int)s->cfg.shutdown_grace));
    health_set_draining(s->health);
    reconcile_stop(s->reconcile);
    s->reconcile = NULL;
    left = jobs_drain(s->jobs, s->cfg.shutdown_grace);
    /* The last jobs' notifications get a moment to go out (the memory
     * outbox ends with the process). */
    webhooks_drain(s->webhooks, 2000);
    log_fields(LOG_INFO, "stopped", json_pack("{s:I}", "jobs_left", (json_int_t)left));
}

int main(int argc, char **argv)
{
    static struct services s;
    char msg[512] = "";
    sigset_t set;
    int status = 1;

    if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        usage(stdout);
        return 0;
    }
    if (argc > 1 && strcmp(argv[1], "--version") == 0) {
        printf("resizer %s\n", RESIZER_VERSION);
        return 0;
    }
    if (argc > 2 && strcmp(argv[1], "--check-health") == 0)
        return probe_check_health(argv[2], 3000);
    if (argc > 1) {
        fprintf(stderr, "resizer: unknown argument %s (see --help)\n", argv[1]);
        return 2;
    }
    if (config_load((const char *const *)environ, &s.cfg, msg, sizeof(msg)) != RZ_OK) {
        fprintf(stderr, "resizer: %s\n", msg);
        return 2;
    }
    log_set_level(s.cfg.log_level);
    /* Signals go to sigwait in this thread only: block them before any
     * library starts a thread. */
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    raise_fd_limit();
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (image_init(argv[0]) != RZ_OK) {
        fprintf(stderr, "resizer: cannot start libvips\n");
        goto done;
    }
    if (start_services(&s, msg, sizeof(msg)) != RZ_OK) {
        fprintf(stderr, "resizer: %s\n", msg[0] ? msg : "cannot start");
        goto done;
    }
    log_fields(LOG_INFO, "started",
               json_pack("{s:s,s:s,s:i,s:s,s:s?,s:s}", "version", RESIZER_VERSION, "listen",
                         s.cfg.listen_addr, "port", http_server_port(s.http), "dest_bucket",
                         s.cfg.dest_bucket, "src_bucket", s.cfg.src_bucket, "s3_endpoint",
                         s.cfg.s3_endpoint));
    drain(&s, wait_for_signal(&set));
    status = 0;
done:
    stop_services(&s);
    image_shutdown();
    curl_global_cleanup();
    config_cleanup(&s.cfg);
    return status;
}
