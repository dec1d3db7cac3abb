/*
 * srtp_peer: libsrtp2 as the other side of the conformance test
 * (tests/libsrtp2.rs).
 *
 *   srtp_peer SUITE KEY_AND_SALT_HEX MODE [MKI_HEX]
 *
 * SUITE is AES_CM_128_HMAC_SHA1_80, AES_CM_128_HMAC_SHA1_32,
 * AEAD_AES_128_GCM, AES_256_CM_HMAC_SHA1_80, AES_256_CM_HMAC_SHA1_32 or
 * AEAD_AES_256_GCM; MODE is protect, unprotect, protect_rtcp or
 * unprotect_rtcp. Reads one hex packet per line on stdin and writes one
 * line per packet on stdout: the result in hex, or "ERR <status>". One
 * libsrtp session handles every line, so sequence numbers, rollover
 * counters and SRTCP indices run on as they would on the wire.
 *
 * Exit status: 0 done, 2 usage or I/O error, 3 libsrtp refused the suite
 * (e.g. a build without AES-GCM), with "UNSUPPORTED <status>" on stderr.
 */
#include <srtp2/srtp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_PACKET 4096

static int unhex(const char *s, size_t n, unsigned char *out, size_t cap)
{
    if (n % 2 != 0 || n / 2 > cap)
        return -1;
    for (size_t i = 0; i < n / 2; i++) {
        unsigned int b;
        if (sscanf(s + 2 * i, "%2x", &b) != 1)
            return -1;
        out[i] = (unsigned char)b;
    }
    return (int)(n / 2);
}

static void puthex(const unsigned char *b, int n)
{
    for (int i = 0; i < n; i++)
        printf("%02x", b[i]);
    putchar('\n');
}

int main(int argc, char **argv)
{
    if (argc != 4 && argc != 5) {
        fprintf(stderr, "usage: %s SUITE KEY_AND_SALT_HEX protect|unprotect|protect_rtcp|unprotect_rtcp [MKI_HEX]\n",
                argv[0]);
        return 2;
    }
    const char *suite = argv[1];
    const char *mode = argv[3];
    int outbound = strcmp(mode, "protect") == 0 || strcmp(mode, "protect_rtcp") == 0;
    int rtcp = strcmp(mode, "protect_rtcp") == 0 || strcmp(mode, "unprotect_rtcp") == 0;
    if (!outbound && strcmp(mode, "unprotect") != 0 && strcmp(mode, "unprotect_rtcp") != 0) {
        fprintf(stderr, "unknown mode %s\n", mode);
        return 2;
    }

    srtp_policy_t policy;
    memset(&policy, 0, sizeof policy);
    size_t key_len;
    if (strcmp(suite, "AES_CM_128_HMAC_SHA1_80") == 0) {
        srtp_crypto_policy_set_aes_cm_128_hmac_sha1_80(&policy.rtp);
        srtp_crypto_policy_set_aes_cm_128_hmac_sha1_80(&policy.rtcp);
        key_len = SRTP_AES_ICM_128_KEY_LEN_WSALT;
    } else if (strcmp(suite, "AES_CM_128_HMAC_SHA1_32") == 0) {
        /* RFC 4568: the 32-bit tag is for SRTP only; SRTCP keeps 80 bits. */
        srtp_crypto_policy_set_aes_cm_128_hmac_sha1_32(&policy.rtp);
        srtp_crypto_policy_set_aes_cm_128_hmac_sha1_80(&policy.rtcp);
        key_len = SRTP_AES_ICM_128_KEY_LEN_WSALT;
    } else if (strcmp(suite, "AEAD_AES_128_GCM") == 0) {
        srtp_crypto_policy_set_aes_gcm_128_16_auth(&policy.rtp);
        srtp_crypto_policy_set_aes_gcm_128_16_auth(&policy.rtcp);
        key_len = SRTP_AES_GCM_128_KEY_LEN_WSALT;
    } else if (strcmp(suite, "AES_256_CM_HMAC_SHA1_80") == 0) {
        srtp_crypto_policy_set_aes_cm_256_hmac_sha1_80(&policy.rtp);
        srtp_crypto_policy_set_aes_cm_256_hmac_sha1_80(&policy.rtcp);
        key_len = SRTP_AES_ICM_256_KEY_LEN_WSALT;
    } else if (strcmp(suite, "AES_256_CM_HMAC_SHA1_32") == 0) {
        srtp_crypto_policy_set_aes_cm_256_hmac_sha1_32(&policy.rtp);
        srtp_crypto_policy_set_aes_cm_256_hmac_sha1_80(&policy.rtcp);
        key_len = SRTP_AES_ICM_256_KEY_LEN_WSALT;
    } else if (strcmp(suite, "AEAD_AES_256_GCM") == 0) {
        srtp_crypto_policy_set_aes_gcm_256_16_auth(&policy.rtp);
        srtp_crypto_policy_set_aes_gcm_256_16_auth(&policy.rtcp);
        key_len = SRTP_AES_GCM_256_KEY_LEN_WSALT;
    } else {
        fprintf(stderr, "unknown suite %s\n", suite);
        return 2;
    }

    unsigned char key[SRTP_MAX_KEY_LEN];
    if (unhex(argv[2], strlen(argv[2]), key, sizeof key) != (int)key_len) {
        fprintf(stderr, "%s needs %zu bytes of key and salt\n", suite, key_len);
        return 2;
    }
    unsigned char mki[SRTP_MAX_MKI_LEN];
    int mki_len = 0;
    srtp_master_key_t master = { 0 };
    srtp_master_key_t *masters[1] = { &master };
    if (argc == 5) {
        mki_len = unhex(argv[4], strlen(argv[4]), mki, sizeof mki);
        if (mki_len <= 0) {
            fprintf(stderr, "bad MKI\n");
            return 2;
        }
        master.key = key;
        master.mki_id = mki;
        master.mki_size = (unsigned int)mki_len;
        policy.keys = masters;
        policy.num_master_keys = 1;
    } else {
        policy.key = key;
    }
    policy.ssrc.type = outbound ? ssrc_any_outbound : ssrc_any_inbound;
    policy.window_size = 128;
    policy.allow_repeat_tx = 0;

    srtp_err_status_t status = srtp_init();
    if (status != srtp_err_status_ok) {
        fprintf(stderr, "srtp_init: %d\n", status);
        return 2;
    }
    srtp_t session;
    status = srtp_create(&session, &policy);
    if (status != srtp_err_status_ok) {
        fprintf(stderr, "UNSUPPORTED %d\n", status);
        return 3;
    }

    static char line[2 * MAX_PACKET + 16];
    static unsigned char pkt[MAX_PACKET + SRTP_MAX_TRAILER_LEN];
    unsigned int use_mki = mki_len > 0;
    while (fgets(line, sizeof line, stdin) != NULL) {
        size_t n = strcspn(line, "\r\n");
        if (n == 0)
            continue;
        int len = unhex(line, n, pkt, MAX_PACKET);
        if (len < 0) {
            fprintf(stderr, "bad hex line\n");
            return 2;
        }
        if (!outbound && !rtcp)
            status = srtp_unprotect_mki(session, pkt, &len, use_mki);
        else if (!outbound)
            status = srtp_unprotect_rtcp_mki(session, pkt, &len, use_mki);
        else if (!rtcp)
            status = srtp_protect_mki(session, pkt, &len, use_mki, 0);
        else
            status = srtp_protect_rtcp_mki(session, pkt, &len, use_mki, 0);
        if (status == srtp_err_status_ok)
            puthex(pkt, len);
        else
            printf("ERR %d\n", status);
        fflush(stdout);
    }
    srtp_dealloc(session);
    srtp_shutdown();
    return 0;
}
