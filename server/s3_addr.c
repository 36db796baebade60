/* s3_addr.c - S3 addressing: path style or virtual-hosted style. */
#include "s3_addr.h"

#include <ctype.h>
#include <string.h>

static int s3_addr_host_is_ip(const char *host)
{
    if (host[0] == '[')
        return 1;
    for (const char *p = host; *p && *p != ':'; p++) {
        if (!isdigit((unsigned char)*p) && *p != '.')
            return 0;
    }
    return 1;
}

enum rz_err s3_addr_init(struct s3_addr *a, const char *url, int force_path_style, char *msg,
                         size_t msglen)
{
    enum rz_err err;

    memset(a, 0, sizeof(*a));
    err = awshttp_endpoint_parse(url, &a->ep, msg, msglen);
    if (err != RZ_OK)
        return err;
    a->is_ip = s3_addr_host_is_ip(a->ep.host) || strncmp(a->ep.host, "localhost", 9) == 0;
    a->force_path_style = force_path_style;
    return RZ_OK;
}

void s3_addr_cleanup(struct s3_addr *a)
{
    awshttp_endpoint_cleanup(&a->ep);
}

int s3_addr_path_style(const struct s3_addr *a, const char *bucket)
{
    if (a->force_path_style || a->is_ip)
        return 1;
    return strchr(bucket, '.') && strcmp(a->ep.scheme, "https") == 0;
}

enum rz_err s3_addr_resolve(const struct s3_addr *a, const char *bucket, const char *key,
                            struct buf *host, struct buf *path)
{
    enum rz_err err;

    if (s3_addr_path_style(a, bucket)) {
        err = buf_appends(host, a->ep.host);
        if (err == RZ_OK)
            err = buf_printf(path, "/%s%s%s", bucket, key ? "/" : "", key ? key : "");
        return err;
    }
    err = buf_printf(host, "%s.%s", bucket, a->ep.host);
    if (err == RZ_OK)
        err = buf_printf(path, "/%s", key ? key : "");
    return err;
}
