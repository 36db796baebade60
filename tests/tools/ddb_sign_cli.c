/* ddb_sign_cli.c - the headers the DynamoDB client would send, for the
 * botocore oracle (tests/integration/test_dynamodb_sign.py).
 *
 * Input: one JSON object per line, e.g.
 *   {"id":1,"endpoint":"https://dynamodb.eu-west-1.amazonaws.com","region":"eu-west-1",
 *    "op":"PutItem","body":"{...}","access_key":"AK","secret_key":"SK",
 *    "session_token":null,"now":1369353600}
 * Output: one JSON object per line, in order: {"id", "err", "url",
 * "headers": ["Name: value", ...]} exactly as handed to libcurl.
 * Test tool only: it prints signatures, never run it on real keys. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <jansson.h>

#include "server/creds.h"
#include "server/dynamodb.h"
#include "server/dynamodb_internal.h"

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
        struct ddb_opts o = {.endpoint = str_of(in, "endpoint"), .region = str_of(in, "region"),
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
    curl_slist_free_all(l);
    ddb_free(d);
    creds_provider_free(p);
    return err;
}

int main(void)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int status = 0;

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
        json_object_set_new(out, "err", json_string(rz_err_name(sign_case(in, out))));
        text = json_dumps(out, JSON_COMPACT);
        if (text)
            puts(text);
        status |= text == NULL;
        free(text);
        json_decref(in);
        json_decref(out);
    }
    free(line);
    return status;
}
