/* script_srv.c - see script_srv.h. */
#include "script_srv.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct script_req {
    char body[sizeof(((struct script_srv *)0)->body)];
    size_t len;
};

static void script_record(struct script_srv *s, struct MHD_Connection *c,
                          const struct script_req *r)
{
    for (size_t i = 0; i < SCRIPT_SRV_HEADERS && s->record[i]; i++) {
        const char *v = MHD_lookup_connection_value(c, MHD_HEADER_KIND, s->record[i]);

        snprintf(s->value[i], sizeof(s->value[i]), "%s", v ? v : "");
    }
    snprintf(s->body, sizeof(s->body), "%.*s", (int)r->len, r->body);
    s->hits++;
}

static enum MHD_Result script_handle(void *cls, struct MHD_Connection *c, const char *url,
                                     const char *method, const char *version,
                                     const char *upload_data, size_t *upload_data_size,
                                     void **req_cls)
{
    struct script_srv *s = cls;
    struct script_req *r = *req_cls;
    struct MHD_Response *resp;
    unsigned status = 200;
    enum MHD_Result ret;

    (void)url;
    (void)version;
    if (!r) {
        *req_cls = calloc(1, sizeof(*r));
        return *req_cls ? MHD_YES : MHD_NO;
    }
    if (*upload_data_size) {
        size_t n = *upload_data_size;

        if (n > sizeof(r->body) - 1 - r->len)
            n = sizeof(r->body) - 1 - r->len;
        memcpy(r->body + r->len, upload_data, n);
        r->len += n;
        *upload_data_size = 0;
        return MHD_YES;
    }
    pthread_mutex_lock(&s->lock);
    script_record(s, c, r);
    if (s->fail_first > 0) {
        s->fail_first--;
        status = s->fail_status;
        resp = MHD_create_response_from_buffer(strlen(s->fail_body), (void *)s->fail_body,
                                               MHD_RESPMEM_PERSISTENT);
    } else {
        resp = s->answer(s, method);
    }
    pthread_mutex_unlock(&s->lock);
    ret = MHD_queue_response(c, status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static void script_done(void *cls, struct MHD_Connection *c, void **req_cls,
                        enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)c;
    (void)toe;
    free(*req_cls);
    *req_cls = NULL;
}

int script_srv_start(struct script_srv *s)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};

    pthread_mutex_init(&s->lock, NULL);
    s->fail_body = "";
    s->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION, 0,
                            NULL, NULL, script_handle, s, MHD_OPTION_SOCK_ADDR, &sin,
                            MHD_OPTION_NOTIFY_COMPLETED, script_done, NULL, MHD_OPTION_END);
    if (!s->d)
        return -1;
    s->port = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT)->port;
    return 0;
}

void script_srv_stop(struct script_srv *s)
{
    MHD_stop_daemon(s->d);
    pthread_mutex_destroy(&s->lock);
}

void script_srv_script(struct script_srv *s, int fail_first, unsigned status, const char *body)
{
    pthread_mutex_lock(&s->lock);
    s->hits = 0;
    s->fail_first = fail_first;
    s->fail_status = status;
    s->fail_body = body ? body : "";
    pthread_mutex_unlock(&s->lock);
}

const char *script_srv_value(const struct script_srv *s, const char *name)
{
    for (size_t i = 0; i < SCRIPT_SRV_HEADERS && s->record[i]; i++) {
        if (strcasecmp(s->record[i], name) == 0)
            return s->value[i];
    }
    return "";
}
