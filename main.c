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
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "handlers/handlers.h"
#include "server/awshttp.h"
#include "server/config.h"
#include "server/creds.h"
#include "server/dynamodb.h"
#include "server/healthcheck.h"
#include "server/ids.h"
#include "server/image.h"
#include "server/log.h"
#include "server/objstore.h"
#include "server/reconcile.h"
#include "server/sigv4.h"
#include "server/status.h"
#include "server/webhooks.h"
#include "server/store.h"

extern char **environ;

struct services {
    struct config cfg;
    struct metrics *metrics;
    struct creds_provider *creds;
    struct awshttp *aws; /* the one transport of every S3 and DynamoDB call */
    struct s3 *s3;       /* jobs and uploads */
    struct s3 *s3_probe; /* views of s3 with their own policy and abort switch */
    struct s3 *s3_read;
    struct s3 *s3_sweep;      /* the sweep's own, so it can be cut alone */
    struct objstore *objects; /* one object store over each client above */
    struct objstore *objects_probe;
    struct objstore *objects_read;
    struct objstore *objects_sweep;
    struct index *index;
    struct store *store;
    struct status *status;
    char replica[IDS_UUID_LEN + 1];
    struct jobs *jobs;
    struct readiness *readiness;
    struct auth *auth;
    struct reconcile *reconcile;
    struct webhooks *webhooks;
    struct http_server *http;
    struct app app;
};

static void usage(FILE *f)
{
    fprintf(f,
            "resizer %s - makes desktop/tablet/phone variants of images uploaded to S3\n\n"
            "Usage: resizer [--help | --version | --check-health URL | --create-table]\n\n"
            "  --check-health URL  GET URL; exit 0 on 200, else 1 (container HEALTHCHECK)\n"
            "  --create-table      create DYNAMODB_TABLE with its indexes (on-demand, TTL on),\n"
            "                      wait until it is active, exit (STATE_STORE=dynamodb)\n\n",
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

/* Probes and status read-through answer people and load balancers
 * waiting on the line: one short attempt, no retries. */
static const struct awshttp_policy policy_quick = {2000, 1000, 1, 200, 5000};

/* Jobs and the sweep can wait: four tries within S3_TIMEOUT each. */
static struct awshttp_policy policy_work(const struct config *c)
{
    return (struct awshttp_policy){c->s3_timeout * 1000, 3000, 4, 200, 5000};
}

/* Credentials, the transport over them, and the S3 client with one view
 * per policy. */
static enum rz_err start_s3(struct services *s, char *msg, size_t msglen)
{
    const struct config *c = &s->cfg;
    struct creds_source src = {
        c->access_key,
        c->secret_key,
        c->session_token,
        c->container_relative_uri,
        c->container_full_uri,
        c->container_auth_token,
        c->container_auth_token_file,
    };
    struct awshttp_policy work = policy_work(c);
    struct s3_opts o = {
        .endpoint = c->s3_endpoint,
        .public_endpoint = c->s3_public_endpoint,
        .region = c->region,
        .force_path_style = c->force_path_style,
        .sse = c->sse == CONFIG_SSE_AES256 ? "AES256"
               : c->sse == CONFIG_SSE_KMS  ? "aws:kms"
                                           : NULL,
        .sse_kms_key_id = c->sse_kms_key_id,
        .timeout_ms = work.timeout_ms,
        .connect_timeout_ms = work.connect_timeout_ms,
        .max_attempts = work.max_attempts,
        .backoff_base_ms = work.backoff_base_ms,
    };
    enum rz_err err = creds_provider_new(&src, &s->creds, msg, msglen);

    if (err == RZ_OK)
        err = awshttp_new(&(struct awshttp_opts){s->creds, s->metrics}, &s->aws);
    o.transport = s->aws;
    if (err == RZ_OK)
        err = s3_new(&o, &s->s3, msg, msglen);
    if (err == RZ_OK)
        err = s3_view_new(s->s3, &policy_quick, &s->s3_probe);
    if (err == RZ_OK)
        err = s3_view_new(s->s3, &policy_quick, &s->s3_read);
    if (err == RZ_OK)
        err = s3_view_new(s->s3, &work, &s->s3_sweep);
    return err;
}

/* The core reads and writes objects through the object store, one over
 * each S3 client (each with its own retry policy). */
static enum rz_err start_objstores(struct services *s)
{
    enum rz_err err = objstore_s3_new(s->s3, &s->objects);

    if (err == RZ_OK)
        err = objstore_s3_new(s->s3_probe, &s->objects_probe);
    if (err == RZ_OK)
        err = objstore_s3_new(s->s3_read, &s->objects_read);
    if (err == RZ_OK)
        err = objstore_s3_new(s->s3_sweep, &s->objects_sweep);
    return err;
}

/* The sweep needs a source bucket to list; without one it stays off. */
static enum rz_err start_reconcile(struct services *s)
{
    const struct config *c = &s->cfg;
    struct reconcile_opts ro = {c,          s->objects_sweep,     s->index, s->status, s->jobs,
                                s->metrics, c->reconcile_interval};

    if (c->reconcile_interval == 0 || !c->src_bucket)
        return RZ_OK;
    return reconcile_start(&ro, &s->reconcile);
}

/* Callers: named tokens and, with JWT_JWKS_URL, JWTs (the first JWKS fetch
 * happens here; if it fails, it is retried when a JWT arrives). */
static enum rz_err start_auth(struct services *s, char *msg, size_t msglen)
{
    const struct config *c = &s->cfg;
    struct auth_opts o = {
        .api_tokens = (const char *const *)c->api_tokens,
        .napi_tokens = c->napi_tokens,
        .admin_tokens = (const char *const *)c->admin_tokens,
        .nadmin_tokens = c->nadmin_tokens,
        .jwks_url = c->jwt_jwks_url,
        .issuer = c->jwt_issuer,
        .audience = c->jwt_audience,
        .admin_scope = c->jwt_admin_scope,
        .jwks_refresh_min = c->jwt_jwks_refresh_min,
        .fetch_timeout_ms = 2000,
    };

    return auth_new(&o, time(NULL), &s->auth, msg, msglen);
}

/* Store calls answer events and clients waiting on the line: short
 * timeouts, few retries (the store is then "unreachable": 503). */
static struct ddb_opts ddb_options(const struct config *c, struct creds_provider *creds,
                                   struct metrics *m, struct awshttp *aws)
{
    return (struct ddb_opts){c->dynamodb_endpoint, c->region, creds, 2000, 1000, 3, 50, m, aws};
}

static enum rz_err start_store(struct services *s, char *msg, size_t msglen)
{
    struct ddb_opts o = ddb_options(&s->cfg, s->creds, s->metrics, s->aws);

    if (s->cfg.state_store == CONFIG_STORE_MEMORY)
        return store_memory_new(s->index, &s->store);
    return store_dynamodb_new(&o, s->cfg.dynamodb_table, &s->store, msg, msglen);
}

/* resizer --create-table: the table and its indexes, then exit. */
static int create_table(void)
{
    static struct services s;
    char msg[512] = "";
    struct ddb_opts o;
    struct creds_source src;
    enum rz_err err;

    if (config_load_for_table((const char *const *)environ, &s.cfg, msg, sizeof(msg)) != RZ_OK) {
        fprintf(stderr, "resizer: %s\n", msg);
        return 2;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    src = (struct creds_source){s.cfg.access_key,
                                s.cfg.secret_key,
                                s.cfg.session_token,
                                s.cfg.container_relative_uri,
                                s.cfg.container_full_uri,
                                s.cfg.container_auth_token,
                                s.cfg.container_auth_token_file};
    err = creds_provider_new(&src, &s.creds, msg, sizeof(msg));
    o = ddb_options(&s.cfg, s.creds, NULL, NULL);
    o.timeout_ms = 10000;
    if (err == RZ_OK)
        err = store_dynamodb_create_table(&o, s.cfg.dynamodb_table, msg, sizeof(msg));
    if (err == RZ_OK)
        printf("table %s is ready\n", s.cfg.dynamodb_table);
    else
        fprintf(stderr, "resizer: cannot create table %s: %s\n", s.cfg.dynamodb_table, msg);
    creds_provider_free(s.creds);
    curl_global_cleanup();
    config_cleanup(&s.cfg);
    return err == RZ_OK ? 0 : 1;
}

/* The store (memory: the index itself) and the status module over it. */
static enum rz_err start_status(struct services *s, char *msg, size_t msglen)
{
    const struct config *c = &s->cfg;
    struct status_opts so = {
        .cfg = c,
        .index = s->index,
        .s3_read = s->objects_read,
        .metrics = s->metrics,
        .owner = s->replica,
        .lease_ms = c->lease_seconds * 1000,
        .max_attempts = (int)c->job_attempts,
        .backoff_base_ms = 1000,
    };
    enum rz_err err = start_store(s, msg, msglen);

    so.store = s->store;
    so.cache = s->store && s->store->shared ? s->index : NULL;
    if (err == RZ_OK)
        err = status_new(&so, &s->status);
    return err;
}

static void notify_webhooks(void *arg, const struct index_entry *e)
{
    webhooks_notify(arg, e);
}

/* Completion webhooks, when WEBHOOK_URLS is set: their own threads and
 * outbox, told of every record that ends done or failed. */
static enum rz_err start_webhooks(struct services *s, char *msg, size_t msglen)
{
    const struct config *c = &s->cfg;
    struct webhooks_opts wo = {
        .urls = c->webhook_urls,
        .secrets = c->webhook_secret,
        .timeout_ms = c->webhook_timeout * 1000,
        .retry_base_ms = c->webhook_retry_base_ms,
        .max_attempts = (int)c->webhook_max_attempts,
        .queue_size = (size_t)c->webhook_queue_size,
        .threads = 4,
        .metrics = s->metrics,
    };
    struct ddb_opts o = ddb_options(c, s->creds, s->metrics, s->aws);
    enum rz_err err = RZ_OK;

    if (!c->webhook_urls)
        return RZ_OK;
    /* With the shared store, deliveries wait in its table: a replica that
     * dies leaves them to the others once its lease on them ends (longer
     * than one attempt can take). */
    if (c->state_store == CONFIG_STORE_DYNAMODB)
        err = outbox_dynamodb_new(&o, c->dynamodb_table, c->webhook_timeout * 2000 + 10000,
                                  &wo.outbox, msg, msglen);
    if (err == RZ_OK)
        err = webhooks_new(&wo, &s->webhooks, msg, msglen);
    if (err == RZ_OK)
        err = status_on_finished(s->status, notify_webhooks, s->webhooks);
    return err;
}

/* A format this libvips cannot write (AVIF without libheif's encoder) is a
 * configuration error at start, not a failure of every job. */
static int outputs_writable(const struct config *c)
{
    for (size_t i = 0; i < c->noutputs; i++) {
        if (!image_output_writable(c->outputs[i])) {
            fprintf(stderr, "resizer: OUTPUT_FORMATS: this libvips cannot write %s\n",
                    image_format_name(image_output_format(c->outputs[i], IMAGE_FORMAT_UNKNOWN)));
            return 0;
        }
    }
    return 1;
}

static enum rz_err start_services(struct services *s, char *msg, size_t msglen)
{
    const struct config *c = &s->cfg;
    long workers = c->workers ? c->workers : sysconf(_SC_NPROCESSORS_ONLN);
    struct jobs_opts jo;
    struct readiness_opts ho;
    struct http_server_opts hs;
    enum rz_err err;

    ids_new_uuid(s->replica);
    s->metrics = metrics_new();
    s->index = index_new((size_t)c->index_max_entries);
    if (!s->metrics || !s->index)
        return RZ_ENOMEM;
    err = index_metrics_register(s->index, s->metrics);
    if (err == RZ_OK)
        err = start_s3(s, msg, msglen);
    if (err == RZ_OK)
        err = start_objstores(s);
    if (err == RZ_OK)
        err = start_status(s, msg, msglen);
    if (err == RZ_OK)
        err = start_webhooks(s, msg, msglen);
    if (err != RZ_OK)
        return err;
    jo = (struct jobs_opts){c,
                            s->objects,
                            s->status,
                            s->metrics,
                            (size_t)(workers > 0 ? workers : 1),
                            (size_t)c->queue_size};
    err = jobs_new(&jo, &s->jobs);
    if (err == RZ_OK) {
        struct status_queue q = jobs_queue(s->jobs);

        err = status_start(s->status, &q);
    }
    ho = (struct readiness_opts){s->objects_probe, c->src_bucket, c->src_prefix,
                                 c->dest_bucket,   2000,          6000,
                                 s->metrics};
    if (err == RZ_OK)
        err = readiness_new(&ho, &s->readiness);
    if (err == RZ_OK)
        err = start_auth(s, msg, msglen);
    if (err != RZ_OK)
        return err;
    s->app = (struct app){c, s->metrics, s->s3, s->status, s->jobs, s->readiness, s->auth};
    /* Idle connections close after 75 s: longer than the ALB's 60 s idle
     * timeout, so the ALB never reuses a connection we just closed (502). */
    /* Browsers cache a CORS preflight 600 s (Chromium caps it at 2 h): a
     * changed CORS_ALLOWED_ORIGINS reaches them within 10 minutes. */
    hs = (struct http_server_opts){.listen_addr = c->listen_addr,
                                   .port = (int)c->port,
                                   .threads = (int)c->http_threads,
                                   .connection_timeout = 75,
                                   .max_connections = c->http_max_connections,
                                   .connection_memory = (size_t)c->http_connection_memory,
                                   .body_budget = c->http_body_budget,
                                   .request_timeout = (unsigned)c->http_request_timeout,
                                   .routes = handlers_routes,
                                   .nroutes = handlers_nroutes,
                                   .ctx = &s->app,
                                   .metrics = s->metrics,
                                   .cors = {(const char *const *)c->cors_origins,
                                            c->ncors_origins, 600}};
    err = http_server_start(&hs, &s->http, msg, msglen);
    if (err == RZ_OK)
        err = start_reconcile(s);
    return err;
}

static void stop_services(struct services *s)
{
    reconcile_stop(s->reconcile);
    /* Suspended status requests are resumed (answered) first. */
    status_stop_lookups(s->status);
    http_server_stop(s->http);
    auth_free(s->auth);
    readiness_free(s->readiness);
    status_stop(s->status); /* its keeper feeds the queue: stopped first */
    jobs_free(s->jobs);
    webhooks_free(s->webhooks);
    status_free(s->status);
    store_free(s->store);
    objstore_free(s->objects_read);
    objstore_free(s->objects_sweep);
    objstore_free(s->objects_probe);
    objstore_free(s->objects);
    s3_free(s->s3_read);
    s3_free(s->s3_sweep);
    s3_free(s->s3_probe);
    s3_free(s->s3);
    awshttp_free(s->aws);
    creds_provider_free(s->creds);
    sigv4_key_cache_clear(); /* the signing keys derived from them */
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
    readiness_set_draining(s->readiness);
    /* Jobs get the whole grace period, even if a sweep is stuck on a
     * stalled S3: it is only asked to stop here, and cut after. */
    reconcile_halt(s->reconcile);
    left = jobs_drain(s->jobs, s->cfg.shutdown_grace);
    /* Then everything else that may wait on S3 is cut at once, not one
     * after the other. */
    s3_abort(s->s3_sweep);
    s3_abort(s->s3_probe); /* /readyz says draining anyway */
    status_stop_lookups(s->status);
    /* The last jobs' notifications get a moment to go out (the memory
     * outbox ends with the process). */
    webhooks_drain(s->webhooks, 2000);
    reconcile_stop(s->reconcile);
    s->reconcile = NULL;
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
        return healthcheck_run(argv[2], 3000);
    if (argc == 2 && strcmp(argv[1], "--create-table") == 0)
        return create_table();
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
    if (!outputs_writable(&s.cfg)) {
        status = 2;
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
