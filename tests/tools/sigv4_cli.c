/* sigv4_cli.c - runs the signer on cases from stdin, for the botocore oracle.
 *
 * Input: one JSON object per line, e.g.
 *   {"id":1,"op":"presign","method":"GET","scheme":"https","host":"b.s3.amazonaws.com",
 *    "path":"/k","query":[["versionId","x"]],"headers":[["Content-Type","image/jpeg"]],
 *    "payload_hash":"...","region":"us-east-1","service":"s3","double_encode":false,
 *    "normalize":false,"access_key":"AK","secret_key":"SK","session_token":null,
 *    "now":1369353600,"expires":86400}
 * op is "presign", "headers" or "policy" (which reads "policy", the base64).
 * Output: one JSON object per input line, in order: {"id", "err", and for a
 * signed request "url" or "authorization", "signature", "signed_headers",
 * "creq" (canonical request), "sts" (string to sign); for a policy
 * "signature", "credential" and "amz_date"}.
 * Test tool only: it prints canonical requests, never run it on real keys. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "server/sigv4.h"
#include "server/sigv4_internal.h"

#define CLI_MAX_LINE (1024 * 1024)
#define CLI_MAX_PAIRS 64

struct cli_case {
    struct sigv4_request req;
    struct sigv4_creds creds;
    struct sigv4_pair query[CLI_MAX_PAIRS];
    struct sigv4_pair headers[CLI_MAX_PAIRS];
    const char *op;
    const char *policy;
    time_t now;
    long expires;
};

static const char *str_of(json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

/* [[name, value], ...] into pairs; NULL value stays NULL. */
static size_t pairs_of(json_t *o, const char *key, struct sigv4_pair *out)
{
    json_t *arr = json_object_get(o, key);
    size_t i;

    if (!json_is_array(arr))
        return 0;
    for (i = 0; i < json_array_size(arr) && i < CLI_MAX_PAIRS; i++) {
        json_t *p = json_array_get(arr, i);

        out[i].name = json_string_value(json_array_get(p, 0));
        out[i].value = json_string_value(json_array_get(p, 1));
    }
    return i;
}

static void case_from_json(json_t *o, struct cli_case *c)
{
    memset(c, 0, sizeof(*c));
    c->op = str_of(o, "op");
    c->policy = str_of(o, "policy");
    c->now = (time_t)json_integer_value(json_object_get(o, "now"));
    c->expires = (long)json_integer_value(json_object_get(o, "expires"));
    c->req.method = str_of(o, "method");
    c->req.scheme = str_of(o, "scheme");
    c->req.host = str_of(o, "host");
    c->req.path = str_of(o, "path");
    c->req.payload_hash = str_of(o, "payload_hash");
    c->req.region = str_of(o, "region");
    c->req.service = str_of(o, "service");
    c->req.double_encode_path = json_is_true(json_object_get(o, "double_encode"));
    c->req.normalize_path = json_is_true(json_object_get(o, "normalize"));
    c->req.nquery = pairs_of(o, "query", c->query);
    c->req.query = c->query;
    c->req.nheaders = pairs_of(o, "headers", c->headers);
    c->req.headers = c->headers;
    c->creds.access_key = str_of(o, "access_key");
    c->creds.secret_key = str_of(o, "secret_key");
    c->creds.session_token = str_of(o, "session_token");
}

/* The canonical request and string to sign, for the report on a mismatch. */
static void add_parts(const struct cli_case *c, long expires, json_t *out)
{
    struct sigv4_parts p;

    if (sigv4_build(&c->req, &c->creds, c->now, expires, &p) != RZ_OK)
        return;
    json_object_set_new(out, "creq", json_string(p.canonical_request));
    json_object_set_new(out, "sts", json_string(p.string_to_sign));
    json_object_set_new(out, "signed_headers", json_string(p.signed_headers));
    sigv4_parts_cleanup(&p);
}

static enum rz_err run_presign(const struct cli_case *c, json_t *out)
{
    char *url = NULL;
    enum rz_err err = sigv4_presign_url(&c->req, &c->creds, c->now, c->expires, &url);

    if (err == RZ_OK) {
        json_object_set_new(out, "url", json_string(url));
        add_parts(c, c->expires, out);
    }
    free(url);
    return err;
}

static enum rz_err run_headers(const struct cli_case *c, json_t *out)
{
    struct sigv4_signed s;
    enum rz_err err = sigv4_sign_headers(&c->req, &c->creds, c->now, &s);

    if (err == RZ_OK) {
        json_object_set_new(out, "authorization", json_string(s.authorization));
        json_object_set_new(out, "amz_date", json_string(s.amz_date));
        json_object_set_new(out, "signature", json_string(s.signature));
        add_parts(c, 0, out);
    }
    sigv4_signed_cleanup(&s);
    return err;
}

static enum rz_err run_policy(const struct cli_case *c, json_t *out)
{
    char sig[65];
    char date[17];
    char *scope = sigv4_credential_scope(c->creds.access_key, c->req.region, c->req.service,
                                         c->now);
    enum rz_err err = sigv4_sign_policy(c->policy, &c->creds, c->req.region, c->req.service,
                                        c->now, sig);

    sigv4_amz_date(c->now, date);
    if (err == RZ_OK && scope) {
        json_object_set_new(out, "signature", json_string(sig));
        json_object_set_new(out, "credential", json_string(scope));
        json_object_set_new(out, "amz_date", json_string(date));
    }
    free(scope);
    return err;
}

static json_t *run_line(const char *line)
{
    json_error_t jerr;
    json_t *in = json_loads(line, 0, &jerr);
    json_t *out = json_object();
    struct cli_case c;
    enum rz_err err = RZ_EINVAL;

    if (!in || !out)
        goto done;
    json_object_set(out, "id", json_object_get(in, "id"));
    case_from_json(in, &c);
    if (c.op && strcmp(c.op, "presign") == 0)
        err = run_presign(&c, out);
    else if (c.op && strcmp(c.op, "headers") == 0)
        err = run_headers(&c, out);
    else if (c.op && strcmp(c.op, "policy") == 0)
        err = run_policy(&c, out);
done:
    if (out)
        json_object_set_new(out, "err", json_string(rz_err_name(err)));
    json_decref(in);
    return out;
}

int main(void)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int status = 0;

    while ((n = getline(&line, &cap, stdin)) > 0) {
        json_t *out;
        char *text;

        if (n > CLI_MAX_LINE) {
            status = 1;
            break;
        }
        out = run_line(line);
        text = out ? json_dumps(out, JSON_COMPACT) : NULL;
        if (!text) {
            status = 1;
            json_decref(out);
            break;
        }
        puts(text);
        free(text);
        json_decref(out);
    }
    free(line);
    return status;
}
