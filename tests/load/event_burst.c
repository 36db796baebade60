/* event_burst.c - delivers S3 "Object Created" events to POST /v1/events at a
 * fixed rate, the way EventBridge's API destination does, and redelivers the
 * ones refused with 429/503 after their Retry-After, until every one is taken.
 *
 * Usage: event_burst --url URL --api-key KEY --bucket NAME --keys FILE
 *                    [--rate N] [--seconds S] [--max-inflight N] [--give-up S]
 *
 * Delivery i names key i mod (number of keys), so with more deliveries than
 * keys every key is delivered several times (duplicates, as EventBridge may
 * do). Each request is a new connection with EventBridge's headers and its
 * 5 s timeout. Prints one JSON object with what happened (see burst_report)
 * and exits 0 when every response was 202, 429 or 503 (nothing timed out or
 * failed otherwise) and every delivery was finally taken; 1 otherwise; 2 on
 * bad usage. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <jansson.h>

#define BURST_TIMEOUT_MS 5000 /* EventBridge gives up on a target after 5 s */
#define BURST_MAX_KEY 1024
#define BURST_RESP_MAX 1024

struct burst_opts {
    const char *url;
    const char *api_key;
    const char *bucket;
    const char *keys_path;
    double rate;    /* first deliveries per second */
    double seconds; /* of first deliveries */
    long max_inflight;
    double give_up; /* seconds after the burst to stop redelivering */
};

/* One delivery waiting for its (re)send time. */
struct burst_due {
    size_t delivery;
    double at;
    unsigned attempt;
};

/* One request on the wire. */
struct burst_req {
    CURL *easy;
    size_t delivery;
    unsigned attempt;
    char *body;
    char resp[BURST_RESP_MAX];
    size_t resp_len;
    double started;
};

struct burst_stats {
    long first[4];         /* first attempts: 202, 429, 503, other status */
    long retried[4];       /* redeliveries, same columns */
    long transport_errors; /* timeouts and connection failures ("dropped") */
    long accepted;         /* sum of "accepted" in 202 bodies */
    long duplicates;
    long unaccepted; /* deliveries never taken before giving up */
    unsigned max_attempts;
    double *latency; /* seconds, every response */
    size_t nlatency;
    size_t cap_latency;
};

struct burst {
    struct burst_opts o;
    char **keys;
    size_t nkeys;
    size_t total;          /* first deliveries */
    size_t next;           /* next first delivery to send */
    struct burst_due *due; /* redeliveries waiting */
    size_t ndue;
    long inflight;
    long late; /* first deliveries sent after their slot (inflight cap) */
    double t0;
    double burst_end; /* when the last first delivery went out */
    struct curl_slist *headers;
    CURLM *multi;
    struct burst_stats s;
};

static double burst_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void burst_usage(void)
{
    fprintf(stderr, "usage: event_burst --url URL --api-key KEY --bucket NAME --keys FILE "
                    "[--rate N] [--seconds S] [--max-inflight N] [--give-up S]\n");
}

static int burst_number(const char *s, double lo, double hi, double *out)
{
    char *end = NULL;
    double v;

    errno = 0;
    v = strtod(s, &end);
    if (errno || end == s || *end != '\0' || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

static int burst_parse_args(int argc, char **argv, struct burst_opts *o)
{
    static const struct option longopts[] = {
        {"url", required_argument, NULL, 'u'},
        {"api-key", required_argument, NULL, 'k'},
        {"bucket", required_argument, NULL, 'b'},
        {"keys", required_argument, NULL, 'f'},
        {"rate", required_argument, NULL, 'r'},
        {"seconds", required_argument, NULL, 's'},
        {"max-inflight", required_argument, NULL, 'm'},
        {"give-up", required_argument, NULL, 'g'},
        {NULL, 0, NULL, 0},
    };
    double inflight = 512;
    int c;

    *o = (struct burst_opts){.rate = 200, .seconds = 5, .give_up = 120};
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        int bad = 0;

        switch (c) {
        case 'u': o->url = optarg; break;
        case 'k': o->api_key = optarg; break;
        case 'b': o->bucket = optarg; break;
        case 'f': o->keys_path = optarg; break;
        case 'r': bad = burst_number(optarg, 1, 100000, &o->rate); break;
        case 's': bad = burst_number(optarg, 0.1, 3600, &o->seconds); break;
        case 'm': bad = burst_number(optarg, 1, 10000, &inflight); break;
        case 'g': bad = burst_number(optarg, 0, 3600, &o->give_up); break;
        default: bad = 1; break;
        }
        if (bad)
            return -1;
    }
    o->max_inflight = (long)inflight;
    return o->url && o->api_key && o->bucket && o->keys_path && optind == argc ? 0 : -1;
}

/* Reads one key a line (no empty lines, each under BURST_MAX_KEY bytes). */
static int burst_read_keys(struct burst *b)
{
    FILE *f = fopen(b->o.keys_path, "r");
    char line[BURST_MAX_KEY + 2];
    size_t cap = 0;
    int rc = -1;

    if (!f)
        return -1;
    while (fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (line[0] == '\0')
            goto done;
        if (b->nkeys == cap) {
            char **grown = realloc(b->keys, (cap ? cap * 2 : 64) * sizeof(*grown));

            if (!grown)
                goto done;
            b->keys = grown;
            cap = cap ? cap * 2 : 64;
        }
        b->keys[b->nkeys] = strdup(line);
        if (!b->keys[b->nkeys])
            goto done;
        b->nkeys++;
    }
    rc = b->nkeys > 0 ? 0 : -1;
done:
    fclose(f);
    return rc;
}

/* The EventBridge "Object Created" event of delivery i; caller frees. A
 * redelivery carries the same event id, as EventBridge's does. */
static char *burst_event(const struct burst *b, size_t delivery)
{
    const char *key = b->keys[delivery % b->nkeys];
    char id[64];
    char arn[128];
    json_t *ev;
    char *text;

    snprintf(id, sizeof(id), "burst-%zu", delivery);
    snprintf(arn, sizeof(arn), "arn:aws:s3:::%s", b->o.bucket);
    ev = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:[s],s:{s:s,s:{s:s},s:{s:s,s:i},s:s}}",
                   "version", "0", "id", id, "detail-type", "Object Created", "source", "aws.s3",
                   "account", "111122223333", "time", "2024-01-01T00:00:00Z", "region",
                   "us-east-1", "resources", arn, "detail", "version", "0", "bucket", "name",
                   b->o.bucket, "object", "key", key, "size", 1, "reason", "PutObject");
    text = ev ? json_dumps(ev, JSON_COMPACT) : NULL;
    json_decref(ev);
    return text;
}

static size_t burst_on_body(char *data, size_t size, size_t n, void *arg)
{
    struct burst_req *r = arg;
    size_t len = size * n;
    size_t room = sizeof(r->resp) - 1 - r->resp_len;

    memcpy(r->resp + r->resp_len, data, len < room ? len : room);
    r->resp_len += len < room ? len : room;
    r->resp[r->resp_len] = '\0';
    return len;
}

static int burst_send(struct burst *b, size_t delivery, unsigned attempt)
{
    struct burst_req *r = calloc(1, sizeof(*r));

    if (!r)
        return -1;
    r->delivery = delivery;
    r->attempt = attempt;
    r->body = burst_event(b, delivery);
    r->easy = curl_easy_init();
    if (!r->body || !r->easy)
        goto fail;
    curl_easy_setopt(r->easy, CURLOPT_URL, b->o.url);
    curl_easy_setopt(r->easy, CURLOPT_HTTPHEADER, b->headers);
    curl_easy_setopt(r->easy, CURLOPT_POSTFIELDS, r->body);
    curl_easy_setopt(r->easy, CURLOPT_USERAGENT, "Amazon/EventBridge/ApiDestinations");
    curl_easy_setopt(r->easy, CURLOPT_TIMEOUT_MS, (long)BURST_TIMEOUT_MS);
    curl_easy_setopt(r->easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(r->easy, CURLOPT_WRITEFUNCTION, burst_on_body);
    curl_easy_setopt(r->easy, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(r->easy, CURLOPT_PRIVATE, r);
    r->started = burst_now();
    if (curl_multi_add_handle(b->multi, r->easy) != CURLM_OK)
        goto fail;
    b->inflight++;
    return 0;
fail:
    curl_easy_cleanup(r->easy);
    free(r->body);
    free(r);
    return -1;
}

static void burst_latency(struct burst_stats *s, double secs)
{
    if (s->nlatency == s->cap_latency) {
        size_t cap = s->cap_latency ? s->cap_latency * 2 : 4096;
        double *grown = realloc(s->latency, cap * sizeof(*grown));

        if (!grown)
            return;
        s->latency = grown;
        s->cap_latency = cap;
    }
    s->latency[s->nlatency++] = secs;
}

static long burst_body_count(const char *body, const char *name)
{
    json_t *j = json_loads(body, 0, NULL);
    long n = (long)json_integer_value(json_object_get(j, name));

    json_decref(j);
    return n;
}

static int burst_queue_again(struct burst *b, size_t delivery, double at, unsigned attempt)
{
    struct burst_due *grown = realloc(b->due, (b->ndue + 1) * sizeof(*grown));

    if (!grown)
        return -1;
    b->due = grown;
    b->due[b->ndue++] = (struct burst_due){delivery, at, attempt};
    return 0;
}

/* Records one finished request and queues its redelivery if it was refused. */
static void burst_done(struct burst *b, struct burst_req *r, CURLcode rc)
{
    long status = 0;
    curl_off_t retry_after = 0;
    int column;

    b->inflight--;
    if (r->attempt > b->s.max_attempts)
        b->s.max_attempts = r->attempt;
    if (rc != CURLE_OK) {
        b->s.transport_errors++;
        return;
    }
    curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(r->easy, CURLINFO_RETRY_AFTER, &retry_after);
    burst_latency(&b->s, burst_now() - r->started);
    column = status == 202 ? 0 : status == 429 ? 1 : status == 503 ? 2 : 3;
    (r->attempt == 1 ? b->s.first : b->s.retried)[column]++;
    if (status == 202) {
        b->s.accepted += burst_body_count(r->resp, "accepted");
        b->s.duplicates += burst_body_count(r->resp, "duplicates");
    } else if (column == 1 || column == 2) {
        /* EventBridge honours Retry-After; without one, try again in a second. */
        double delay = retry_after > 0 ? (double)retry_after : 1.0;

        if (burst_queue_again(b, r->delivery, burst_now() + delay, r->attempt + 1) != 0)
            b->s.unaccepted++;
    }
}

static void burst_reap(struct burst *b)
{
    CURLMsg *msg;
    int left;

    for (;;) {
        struct burst_req *r = NULL;

        msg = curl_multi_info_read(b->multi, &left);
        if (!msg)
            break;
        if (msg->msg != CURLMSG_DONE)
            continue;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&r);
        burst_done(b, r, msg->data.result);
        curl_multi_remove_handle(b->multi, r->easy);
        curl_easy_cleanup(r->easy);
        free(r->body);
        free(r);
    }
}

/* Sends what is due now: first deliveries on the rate's schedule, then
 * redeliveries whose Retry-After has passed. Returns the seconds until the
 * next one is due (capped), for the poll. */
static double burst_launch(struct burst *b, double now)
{
    double wait = 0.05;

    while (b->next < b->total && b->inflight < b->o.max_inflight &&
           b->t0 + (double)b->next / b->o.rate <= now) {
        if (now - (b->t0 + (double)b->next / b->o.rate) > 0.1)
            b->late++;
        if (burst_send(b, b->next, 1) != 0)
            b->s.transport_errors++;
        b->next++;
        if (b->next == b->total)
            b->burst_end = now;
    }
    if (b->next < b->total)
        wait = b->t0 + (double)b->next / b->o.rate - now;
    for (size_t i = 0; i < b->ndue && b->inflight < b->o.max_inflight;) {
        if (b->due[i].at > now) {
            if (b->due[i].at - now < wait)
                wait = b->due[i].at - now;
            i++;
            continue;
        }
        if (burst_send(b, b->due[i].delivery, b->due[i].attempt) != 0)
            b->s.transport_errors++;
        b->due[i] = b->due[--b->ndue];
    }
    return wait < 0 ? 0 : wait;
}

static int burst_cmp(const void *a, const void *b)
{
    double x = *(const double *)a;
    double y = *(const double *)b;

    return (x > y) - (x < y);
}

static double burst_pct(const struct burst_stats *s, double p)
{
    size_t rank;

    if (s->nlatency == 0)
        return 0;
    rank = (size_t)(p / 100.0 * (double)s->nlatency + 0.5);
    if (rank < 1)
        rank = 1;
    if (rank > s->nlatency)
        rank = s->nlatency;
    return s->latency[rank - 1] * 1000.0;
}

static void burst_report(struct burst *b, double end)
{
    struct burst_stats *s = &b->s;
    double span = b->burst_end > b->t0 ? b->burst_end - b->t0 : end - b->t0;

    qsort(s->latency, s->nlatency, sizeof(*s->latency), burst_cmp);
    printf("{\"keys\":%zu,\"deliveries\":%zu,\"rate_target\":%.1f,\"rate_achieved\":%.1f,"
           "\"late\":%ld,\"first\":{\"202\":%ld,\"429\":%ld,\"503\":%ld,\"other\":%ld},"
           "\"redelivered\":{\"202\":%ld,\"429\":%ld,\"503\":%ld,\"other\":%ld},"
           "\"transport_errors\":%ld,\"accepted\":%ld,\"duplicates\":%ld,\"unaccepted\":%ld,"
           "\"max_attempts\":%u,"
           "\"latency_ms\":{\"p50\":%.2f,\"p99\":%.2f,\"max\":%.2f},\"seconds\":%.2f}\n",
           b->nkeys, b->total, b->o.rate, span > 0 ? (double)b->total / span : 0.0, b->late,
           s->first[0], s->first[1], s->first[2], s->first[3], s->retried[0], s->retried[1],
           s->retried[2], s->retried[3], s->transport_errors, s->accepted, s->duplicates,
           s->unaccepted + (long)b->ndue, s->max_attempts, burst_pct(s, 50), burst_pct(s, 99),
           burst_pct(s, 100), end - b->t0);
}

static int burst_run(struct burst *b)
{
    double now = burst_now();

    b->t0 = now;
    while (b->next < b->total || b->inflight > 0 || b->ndue > 0) {
        double wait;
        int running;

        if (b->next == b->total && b->burst_end > 0 && now - b->burst_end > b->o.give_up &&
            b->inflight == 0)
            break; /* what is still in b->due counts as unaccepted */
        wait = burst_launch(b, now);
        curl_multi_perform(b->multi, &running);
        burst_reap(b);
        curl_multi_poll(b->multi, NULL, 0, (int)(wait * 1000) + 1, NULL);
        curl_multi_perform(b->multi, &running);
        burst_reap(b);
        now = burst_now();
    }
    burst_report(b, burst_now());
    return b->s.first[3] || b->s.retried[3] || b->s.transport_errors || b->s.unaccepted ||
           b->ndue;
}

static struct curl_slist *burst_headers(const char *api_key)
{
    char auth[512];
    struct curl_slist *h = NULL;
    struct curl_slist *t;
    const char *lines[] = {"Content-Type: application/json; charset=utf-8", "Connection: close",
                           "Expect:", auth};

    snprintf(auth, sizeof(auth), "x-api-key: %s", api_key);
    for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
        t = curl_slist_append(h, lines[i]);
        if (!t) {
            curl_slist_free_all(h);
            return NULL;
        }
        h = t;
    }
    return h;
}

static void burst_cleanup(struct burst *b)
{
    for (size_t i = 0; i < b->nkeys; i++)
        free(b->keys[i]);
    free(b->keys);
    free(b->due);
    free(b->s.latency);
    curl_slist_free_all(b->headers);
    if (b->multi)
        curl_multi_cleanup(b->multi);
}

int main(int argc, char **argv)
{
    static struct burst b;
    int rc = 2;

    if (burst_parse_args(argc, argv, &b.o) != 0) {
        burst_usage();
        return 2;
    }
    if (burst_read_keys(&b) != 0) {
        fprintf(stderr, "event_burst: cannot read keys from %s\n", b.o.keys_path);
        goto done;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    b.total = (size_t)(b.o.rate * b.o.seconds + 0.5);
    b.headers = burst_headers(b.o.api_key);
    b.multi = curl_multi_init();
    if (!b.headers || !b.multi) {
        fprintf(stderr, "event_burst: out of memory\n");
        goto done;
    }
    curl_multi_setopt(b.multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, b.o.max_inflight);
    rc = burst_run(&b);
done:
    burst_cleanup(&b);
    curl_global_cleanup();
    return rc;
}
