/* fuzz_auth.c - bearer credentials from any client: auth_check on named
 * tokens and JWTs, against a JWKS of one RSA and one EC key (file://).
 * The seeds are tokens those keys really signed (tests/fuzz/seeds), so
 * mutations reach every step: segments, base64url, header, kid, signature
 * length, libcjose, claims. A refusal must leave no caller behind. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>

#include "server/auth.h"
#include "server/log.h"
#include "tests/fuzz/fuzz.h"

/* The keys of the seeds; their private halves were discarded. */
static const char fuzz_jwks[] =
    "{\"keys\":[{\"kty\":\"RSA\",\"kid\":\"fz-rsa\",\"use\":\"sig\",\"alg\":\"RS256\",\"n\":"
    "\"uCR6RQOaSB_TTUWb4VzFp_CeU3aZXhDmX_Cvp6YykbmmjCEAWL-xXFPI3MShRdBuwSqhtd2Y8akfZrRb86kExE"
    "vOouokiJ-icu2HVYBxS1mZxeMUEXYDJum67WIxp0aDki2L-B1eEtfSLVGaipAi0F58iXOrsZPnu7C4QbdPv393cM"
    "4o2JyCs1LueKaOoxZ6Hi2saJVXe3l9_dGiMuWLAlveOyrz_lMZ1yYrbJb0c9wAdaYRKIS_JcS3-bdvGcfYC_1K3A"
    "ZXtw_LFLrNhcSfN9aG1_ZbCoXk8RkPZskADYEhXVsCUI49OyPL0jReaVjQ8s_x6TuMMGyizUGabh9ICQ\",\"e\""
    ":\"AQAB\"},{\"kty\":\"EC\",\"crv\":\"P-256\",\"kid\":\"fz-ec\",\"use\":\"sig\",\"x\":\"E"
    "WGw1GDIT_BNSNL9Q9Lm8eCxid-8yjI3MgXTCCZindI\",\"y\":\"AVGPdXEQQMzqYLqa9BF4Vbf7QS9GpMDh3Lz"
    "RFGuadKM\"}]}";

static struct auth *fuzz_auth;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    static const char *const api[] = {"alice:alice-token-0123456789"};
    char path[] = "/tmp/fuzz_auth_jwks_XXXXXX";
    char url[64];
    char msg[256];
    int fd = mkstemp(path);
    struct auth_opts o = {
        api, 1, NULL, 0, url, "https://idp.fuzz", "resizer", "resizer:admin", 86400, 1000};

    (void)argc;
    (void)argv;
    FUZZ_CHECK(fd >= 0);
    FUZZ_CHECK(write(fd, fuzz_jwks, strlen(fuzz_jwks)) == (ssize_t)strlen(fuzz_jwks));
    close(fd);
    snprintf(url, sizeof(url), "file://%s", path);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    log_set_level(LOG_ERROR);
    /* A fixed clock inside the seeds' validity, and no refetch after this. */
    FUZZ_CHECK(auth_new(&o, 1800000000, &fuzz_auth, msg, sizeof(msg)) == RZ_OK);
    unlink(path);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *cred = malloc(size + 1);
    struct auth_caller who;
    enum auth_refusal why = AUTH_OK;
    enum rz_err err;

    if (!cred)
        return 0;
    memcpy(cred, data, size);
    cred[size] = '\0';
    err = auth_check(fuzz_auth, cred, 1800000000, &who, &why);
    FUZZ_CHECK(err == RZ_OK || err == RZ_EAUTH);
    FUZZ_CHECK((err == RZ_OK) == (why == AUTH_OK));
    if (err == RZ_OK)
        FUZZ_CHECK(who.name[0] && strlen(who.name) <= AUTH_CALLER_MAX);
    else
        FUZZ_CHECK(who.name[0] == '\0' && !who.admin);
    free(cred);
    return 0;
}
