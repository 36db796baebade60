/* ddb_cli.c - drives the DynamoDB client for the integration tests.
 *
 * `ddb_cli sign`: the headers the client would send, for the botocore
 * oracle (tests/integration/test_dynamodb_sign.py). Input: one JSON object
 * per line, e.g.
 *   {"id":1,"endpoint":"https://dynamodb.eu-west-1.amazonaws.com","region":"eu-west-1",
 *    "op":"PutItem","body":"{...}","access_key":"AK","secret_key":"SK",
 *    "session_token":null,"now":1369353600}
 * Output: one JSON object per line, in order: {"id", "err", "url",
 * "headers": ["Name: value", ...]} exactly as handed to libcurl.
 *
 * `ddb_cli call ENDPOINT REGION MAX_ATTEMPTS BACKOFF_MS TIMEOUT_MS`: real
 * calls with ddb_call, keys from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY
 * (tests/integration/test_dynamodb.py). Input: {"id", "op", "request"} per
 * line, or {"id", "op": "metrics"} for the metrics text. Output: {"id",
 * "err", "msg", "response" (null unless set), "seconds"} per line, flushed.
 *
 * Test tool only: it prints signatures, never run it on real keys. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <jansson.h>

#include "server/creds.h"
#include "server/dynamodb.h"
#include "server/awshttp.h"
#include "server/dynamodb_internal.h"
#include "server/metrics.h"

#define CLI_MAX_LINE (8 * 1024 * 1024)

static const char *str_of(json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

/* ddb_new wants a provider; the signature uses the case's keys. */
static enum rz_err sign_case(json_t *in, json_t *out)
{
    struct creds_source src = {.access_key = "unused", .secret_key = "unused"};
    struct creds_provider *p = NULL;
    struct ddb *d = NULL;
    struct curl_slist *l = NULL;
    struct sigv4_creds c = {str_of(in, "access_key"), str_of(in, "secret_key"),
                            str_of(in, "session_token")};
    const char *body = str_of(in, "body");
    json_t *lines = json_array();
    char msg[256];
    enum rz_err err = creds_provider_new(&src, &p, msg, sizeof(msg));

    if (err == RZ_OK) {
        struct ddb_opts o = {.endpoint = str_of(in, "endpoint"),
                             .region = str_of(in, "region"),
                             .creds = p};

        err = ddb_new(&o, &d, msg, sizeof(msg));
    }
    if (err == RZ_OK && (!body || !ddb_op_valid(str_of(in, "op"))))
        err = RZ_EINVAL;
    if (err == RZ_OK)
        l = ddb_sign(d, str_of(in, "op"), body, strlen(body), &c,
                     (time_t)json_integer_value(json_object_get(in, "now")), &err);
    for (struct curl_slist *i = l; i; i = i->next)
        json_array_append_new(lines, json_string(i->data));
    if (err == RZ_OK)
        json_object_set_new(out, "url", json_string(ddb_url(d)));
    json_object_set_new(out, "headers", lines);
    awshttp_headers_free(l);
    ddb_free(d);
    creds_provider_free(p);
    return err;
}

/* The client of `call` mode, built once. */
struct cli_client {
    struct creds_provider *creds;
    struct metrics *metrics;
    struct ddb *ddb;
};

static int client_open(char **argv, struct cli_client *c)
{
    struct creds_source src = {.access_key = getenv("AWS_ACCESS_KEY_ID"),
                               .secret_key = getenv("AWS_SECRET_ACCESS_KEY"),
                               .session_token = getenv("AWS_SESSION_TOKEN")};
    struct ddb_opts o = {.endpoint = argv[2],
                         .region = argv[3],
                         .max_attempts = (int)strtol(argv[4], NULL, 10),
                         .backoff_base_ms = strtol(argv[5], NULL, 10),
                         .timeout_ms = strtol(argv[6], NULL, 10)};
    char msg[256];

    memset(c, 0, sizeof(*c));
    c->metrics = metrics_new();
    if (!c->metrics || creds_provider_new(&src, &c->creds, msg, sizeof(msg)) != RZ_OK)
        return 0;
    o.creds = c->creds;
    o.metrics = c->metrics;
    if (ddb_new(&o, &c->ddb, msg, sizeof(msg)) != RZ_OK) {
        fprintf(stderr, "ddb_new: %s\n", msg);
        return 0;
    }
    return 1;
}

static void client_close(struct cli_client *c)
{
    ddb_free(c->ddb);
    creds_provider_free(c->creds);
    metrics_free(c->metrics);
}

static enum rz_err call_case(struct cli_client *c, json_t *in, json_t *out)
{
    const char *op = str_of(in, "op");
    json_t *resp = NULL;
    char msg[512] = "";
    double start = awshttp_now_secs();
    enum rz_err err;

    if (op && strcmp(op, "metrics") == 0) {
        char *text = metrics_render(c->metrics);

        json_object_set_new(out, "metrics", json_string(text ? text : ""));
        free(text);
        return RZ_OK;
    }
    err = ddb_call(c->ddb, op, json_object_get(in, "request"), &resp, msg, sizeof(msg));
    json_object_set_new(out, "msg", json_string(msg));
    json_object_set_new(out, "response", resp ? resp : json_null());
    json_object_set_new(out, "seconds", json_real(awshttp_now_secs() - start));
    return err;
}

int main(int argc, char **argv)
{
    struct cli_client client = {0};
    int call = argc == 7 && strcmp(argv[1], "call") == 0;
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int status = 0;

    if (!call && !(argc == 2 && strcmp(argv[1], "sign") == 0)) {
        fprintf(stderr, "usage: ddb_cli sign | ddb_cli call ENDPOINT REGION MAX_ATTEMPTS "
                        "BACKOFF_MS TIMEOUT_MS\n");
        return 2;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (call && !client_open(argv, &client)) {
        client_close(&client);
        return 1;
    }
    while ((n = getline(&line, &cap, stdin)) > 0) {
        json_error_t jerr;
        json_t *in = n <= CLI_MAX_LINE ? json_loads(line, 0, &jerr) : NULL;
        json_t *out = json_object();
        char *text;

        if (!in || !out) {
            status = 1;
            json_decref(in);
            json_decref(out);
            break;
        }
        json_object_set(out, "id", json_object_get(in, "id"));
        json_object_set_new(out, "err",
                            json_string(rz_err_name(call ? call_case(&client, in, out)
                                                         : sign_case(in, out))));
        text = json_dumps(out, JSON_COMPACT);
        if (text) {
            puts(text);
            fflush(stdout);
        }
        status |= text == NULL;
        free(text);
        json_decref(in);
        json_decref(out);
    }
    free(line);
    client_close(&client);
    curl_global_cleanup();
    return status;
}
