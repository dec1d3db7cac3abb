/*
 * libsrtp2 side of benches/compare_libsrtp2.sh: the same protect and
 * unprotect loops as benches/benches/srtp.rs, on the same keys and
 * packets, timed with CLOCK_MONOTONIC.
 *
 *   bench [SECONDS_PER_CASE]
 *
 * Prints one line per case: "<op> <suite> <payload bytes> <ns per packet>",
 * the median of 11 rounds.
 *
 * Per packet, both sides copy the clear (or protected) packet into a
 * buffer and protect (or unprotect) it in place. Unprotect cycles through
 * 1024 packets protected beforehand and forgets the stream after each
 * cycle (replay protection would refuse the second round), as the Rust
 * bench does with Context::reset_streams.
 */
#define _POSIX_C_SOURCE 199309L
#include <arpa/inet.h>
#include <srtp2/srtp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SSRC 0x12345678u
#define RING 1024
#define ROUNDS 11
#define MAX_PACKET (12 + 1200 + SRTP_MAX_TRAILER_LEN)

enum suite { AES_CM_80, GCM_128 };
static const char *suite_name[] = { "AES_CM_128_HMAC_SHA1_80", "AEAD_AES_128_GCM" };

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* Master key 00..0f, salt a0 a1 ... (14 bytes, 12 for GCM): as srtp.rs. */
static srtp_t session(enum suite s, int outbound)
{
    static unsigned char key[SRTP_MAX_KEY_LEN];
    for (int i = 0; i < 16; i++)
        key[i] = (unsigned char)i;
    for (int i = 0; i < 14; i++)
        key[16 + i] = (unsigned char)(0xa0 + i);
    srtp_policy_t policy;
    memset(&policy, 0, sizeof policy);
    if (s == AES_CM_80) {
        srtp_crypto_policy_set_aes_cm_128_hmac_sha1_80(&policy.rtp);
        srtp_crypto_policy_set_aes_cm_128_hmac_sha1_80(&policy.rtcp);
    } else {
        srtp_crypto_policy_set_aes_gcm_128_16_auth(&policy.rtp);
        srtp_crypto_policy_set_aes_gcm_128_16_auth(&policy.rtcp);
    }
    policy.key = key;
    policy.ssrc.type = outbound ? ssrc_any_outbound : ssrc_any_inbound;
    policy.window_size = 128;
    srtp_t ctx;
    srtp_err_status_t status = srtp_create(&ctx, &policy);
    if (status != srtp_err_status_ok) {
        fprintf(stderr, "srtp_create(%s): %d\n", suite_name[s], status);
        exit(1);
    }
    return ctx;
}

/* 12-byte header (PT 0, SSRC 0x12345678, timestamp seq * 160), payload byte i = i * 7 + 1. */
static int packet(unsigned char *out, unsigned seq, int payload)
{
    out[0] = 0x80;
    out[1] = 0;
    out[2] = (unsigned char)(seq >> 8);
    out[3] = (unsigned char)seq;
    uint32_t ts = htonl((uint32_t)(seq * 160u)), ssrc = htonl(SSRC);
    memcpy(out + 4, &ts, 4);
    memcpy(out + 8, &ssrc, 4);
    for (int i = 0; i < payload; i++)
        out[12 + i] = (unsigned char)(i * 7 + 1);
    return 12 + payload;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void check(srtp_err_status_t status, const char *what)
{
    if (status != srtp_err_status_ok) {
        fprintf(stderr, "%s: %d\n", what, status);
        exit(1);
    }
}

/* One protect (or unprotect) of the next packet; *k counts packets. */
static unsigned char clear_pkt[MAX_PACKET], buf[MAX_PACKET];
static int clear_len;
static unsigned char ring[RING][MAX_PACKET];
static int ring_len[RING];

static void protect_one(srtp_t ctx, unsigned long *k)
{
    int len = clear_len;
    memcpy(buf, clear_pkt, (size_t)len);
    buf[2] = (unsigned char)(*k >> 8);
    buf[3] = (unsigned char)*k;
    check(srtp_protect(ctx, buf, &len), "srtp_protect");
    ++*k;
}

static void unprotect_one(srtp_t ctx, unsigned long *k)
{
    unsigned i = (unsigned)(*k % RING);
    if (i == 0 && *k > 0)
        check(srtp_remove_stream(ctx, htonl(SSRC)), "srtp_remove_stream");
    int len = ring_len[i];
    memcpy(buf, ring[i], (size_t)len);
    check(srtp_unprotect(ctx, buf, &len), "srtp_unprotect");
    ++*k;
}

static double bench(void (*one)(srtp_t, unsigned long *), srtp_t ctx, double seconds)
{
    unsigned long k = 0;
    /* Warm up and size the rounds. */
    double t0 = now_ns();
    unsigned long n = 0;
    while (now_ns() - t0 < seconds * 1e9 / 4) {
        for (int j = 0; j < 1000; j++)
            one(ctx, &k);
        n += 1000;
    }
    unsigned long per_round = (unsigned long)((double)n * 3 / ROUNDS) + 1;
    double rounds[ROUNDS];
    for (int r = 0; r < ROUNDS; r++) {
        double start = now_ns();
        for (unsigned long j = 0; j < per_round; j++)
            one(ctx, &k);
        rounds[r] = (now_ns() - start) / (double)per_round;
    }
    qsort(rounds, ROUNDS, sizeof rounds[0], cmp_double);
    return rounds[ROUNDS / 2];
}

int main(int argc, char **argv)
{
    double seconds = argc > 1 ? atof(argv[1]) : 2.0;
    check(srtp_init(), "srtp_init");
    const int sizes[] = { 160, 1200 };
    for (int s = AES_CM_80; s <= GCM_128; s++) {
        for (int z = 0; z < 2; z++) {
            clear_len = packet(clear_pkt, 0, sizes[z]);

            srtp_t tx = session((enum suite)s, 1);
            double protect = bench(protect_one, tx, seconds);
            srtp_dealloc(tx);
            printf("protect %s %d %.1f\n", suite_name[s], sizes[z], protect);

            tx = session((enum suite)s, 1);
            for (int i = 0; i < RING; i++) {
                ring_len[i] = packet(ring[i], (unsigned)i, sizes[z]);
                check(srtp_protect(tx, ring[i], &ring_len[i]), "srtp_protect");
            }
            srtp_dealloc(tx);
            srtp_t rx = session((enum suite)s, 0);
            double unprotect = bench(unprotect_one, rx, seconds);
            srtp_dealloc(rx);
            printf("unprotect %s %d %.1f\n", suite_name[s], sizes[z], unprotect);
            fflush(stdout);
        }
    }
    srtp_shutdown();
    return 0;
}
