/* healthcheck.c - resizer --check-health URL. */
#include "healthcheck.h"

#include <stdio.h>
#include <string.h>

#include <curl/curl.h>

static size_t healthcheck_discard(char *data, size_t size, size_t nmemb, void *arg)
{
    (void)data;
    (void)arg;
    return size * nmemb;
}

int healthcheck_run(const char *url, long timeout_ms)
{
    CURL *h;
    CURLcode rc;
    long status = 0;

    if (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0) {
        fprintf(stderr, "resizer: --check-health needs an http(s) URL\n");
        return 1;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    h = curl_easy_init();
    if (!h)
        return 1;
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, healthcheck_discard);
    rc = curl_easy_perform(h);
    if (rc == CURLE_OK)
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(h);
    curl_global_cleanup();
    if (rc != CURLE_OK) {
        fprintf(stderr, "resizer: %s: %s\n", url, curl_easy_strerror(rc));
        return 1;
    }
    fprintf(stderr, "resizer: %s answered %ld\n", url, status);
    return status == 200 ? 0 : 1;
}
