/* s3_addr.h - where an S3 request goes: endpoint, bucket, key -> host and path.
 *
 * Virtual-hosted style (bucket.host/key) is S3's default; path style
 * (host/bucket/key) is used when asked for, for IP and localhost endpoints
 * (no subdomains there), and for dotted bucket names over TLS (the
 * wildcard certificate covers one label only). The endpoint's syntax is
 * awshttp_endpoint_parse's, the one parser every AWS client here uses. */
#ifndef RESIZER_S3_ADDR_H
#define RESIZER_S3_ADDR_H

#include <stddef.h>

#include "awshttp.h"
#include "buf.h"
#include "err.h"

struct s3_addr {
    struct awshttp_endpoint ep;
    int is_ip; /* an IP address or localhost: buckets cannot be subdomains */
    int force_path_style;
};

/* Parses url (scheme://host[:port], no path) into *a. RZ_EINVAL with msg
 * when it is not one, RZ_ENOMEM. Release with s3_addr_cleanup, also after
 * an error. */
enum rz_err s3_addr_init(struct s3_addr *a, const char *url, int force_path_style, char *msg,
                         size_t msglen);

/* Frees the strings; safe on a zeroed or partly filled struct. */
void s3_addr_cleanup(struct s3_addr *a);

/* 1 when bucket is addressed as host/bucket/key, 0 for bucket.host/key. */
int s3_addr_path_style(const struct s3_addr *a, const char *bucket);

/* Appends to host and path (both empty, owned by the caller) the host and
 * the raw, unencoded path of bucket/key (key NULL: the bucket itself),
 * as they are signed; awshttp_url_build encodes the path once. */
enum rz_err s3_addr_resolve(const struct s3_addr *a, const char *bucket, const char *key,
                            struct buf *host, struct buf *path);

#endif
