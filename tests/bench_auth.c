/* What authenticating or sealing a message costs: MACs and verifies, then
 * seals and opens (--encrypt), messages of a few sizes as a keyed link
 * does (common/wire/auth.h): a control frame, 64 KiB to 4 MiB, and the
 * training frame entering each module of the jobs named, at their batch.
 * Prints the CPU time per message and the rate in MB/s of each, measured
 * as this process's CPU time (one thread: the rate of one core) so that
 * other load on the machine does not inflate it. A program that prints
 * figures, not a test.
 *
 *     build/tests/bench_auth [SECONDS_PER_SIZE [JOB...]]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auth.h"
#include "frame.h"
#include "job.h"
#include "plan.h"

static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* CPU seconds of the sends and of the receives of n messages. */
struct cost {
    double send, recv;
    long n;
};

/* Sends and receives a message of len bytes in buf (with room for the
 * trailer) from one end of a link to the other, sealed or MAC'd, until
 * budget seconds are spent. */
static int measure(const struct sila_key *key, bool seal, uint8_t *buf, size_t len, double budget,
                   struct cost *ret)
{
    struct sila_auth_params ps = {key, "data-2", false, SILA_AUTH_PAIR, 0, 0, seal};
    struct sila_auth_params pr = {key, "data-2", true, SILA_AUTH_PAIR, 0, 0, seal};
    struct sila_auth *snd = sila_auth_new(&ps), *rcv = sila_auth_new(&pr);
    struct cost c = {0};
    uint64_t now = sila_auth_now_ms();
    int r = snd && rcv ? 0 : -1;
    while (r == 0 && c.send + c.recv < budget) {
        double t0 = cpu_s();
        sila_auth_sign(snd, buf, len, now);
        double t1 = cpu_s();
        size_t plen;
        r = sila_auth_verify(rcv, buf, len + SILA_AUTH_TRAILER, now, &plen, NULL);
        c.send += t1 - t0;
        c.recv += cpu_s() - t1;
        c.n++;
    }
    sila_auth_free(snd);
    sila_auth_free(rcv);
    *ret = c;
    return r;
}

static int bench(const struct sila_key *key, const char *what, size_t len, double budget)
{
    uint8_t *buf = malloc(len + SILA_AUTH_TRAILER);
    if (!buf)
        return 1;
    for (size_t i = 0; i < len; i++)
        buf[i] = (uint8_t)(i * 7 + 3);
    struct cost mac, seal;
    if (measure(key, false, buf, len, budget / 2, &mac) ||
        measure(key, true, buf, len, budget / 2, &seal) ||
        buf[len / 2] != (uint8_t)(len / 2 * 7 + 3)) {
        fprintf(stderr, "bench_auth: a message of %zu bytes did not verify\n", len);
        free(buf);
        return 1;
    }
    free(buf);
    printf("%-24s %10zu", what, len);
    const double *s[4] = {&mac.send, &mac.recv, &seal.send, &seal.recv};
    for (int i = 0; i < 4; i++) {
        long n = i < 2 ? mac.n : seal.n;
        printf(" %9.1f %6.0f", 1e6 * *s[i] / n, len * n / *s[i] / 1e6);
    }
    printf("\n");
    return 0;
}

/* The training frames entering each module of the job at path. */
static int bench_job(const struct sila_key *key, const char *path, double budget)
{
    struct sila_job job;
    struct sila_err err = {""};
    if (sila_job_load(&job, path, NULL, 0, &err)) {
        fprintf(stderr, "bench_auth: %s\n", err.msg);
        return 1;
    }
    int r = 0;
    for (int k = 0; k < job.nmodules && r == 0; k++) {
        struct sila_shape s;
        if ((r = sila_plan_edge_shape(&job, k, &s, &err))) {
            fprintf(stderr, "bench_auth: %s\n", err.msg);
            break;
        }
        struct sila_frame_hdr h = {.phase = SILA_PHASE_LOCAL,
                                   .n = (uint32_t)job.batch,
                                   .c = (uint32_t)s.c,
                                   .h = (uint32_t)s.h,
                                   .w = (uint32_t)s.w,
                                   .nlabels = (uint32_t)job.batch,
                                   .image_size = sila_plan_edge_image(&job, k),
                                   .dtype = sila_plan_edge_dtype(&job, k)};
        char what[64];
        snprintf(what, sizeof what, "%.16s into %d", job.name, k + 1);
        r = bench(key, what, sila_frame_size(&h), budget);
    }
    sila_job_fini(&job);
    return r;
}

int main(int argc, char **argv)
{
    double budget = argc > 1 ? atof(argv[1]) : 1.0;
    struct sila_key key = {.id = 1};
    for (size_t i = 0; i < sizeof key.bytes; i++)
        key.bytes[i] = (uint8_t)(i * 37 + 1);
    printf("%-24s %10s %16s %16s %16s %16s\n", "", "", "MAC sign", "MAC verify", "seal", "open");
    printf("%-24s %10s", "message", "bytes");
    for (int i = 0; i < 4; i++)
        printf(" %9s %6s", "us/msg", "MB/s");
    printf("\n");
    static const size_t sizes[] = {256, 65536, 1u << 20, 4u << 20};
    static const char *const names[] = {"control", "64 KiB", "1 MiB", "4 MiB"};
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++)
        if (bench(&key, names[s], sizes[s], budget))
            return 1;
    for (int i = 2; i < argc; i++)
        if (bench_job(&key, argv[i], budget))
            return 1;
    return 0;
}
