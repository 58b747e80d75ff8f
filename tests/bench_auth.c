/* What authenticating a message costs: signs and verifies messages of a
 * few sizes (a control frame to a data frame of megabytes) as a keyed link
 * does (common/wire/auth.h), and prints the CPU time per message and the rate
 * in MB/s of each, measured as this process's CPU time so that other load
 * on the machine does not inflate it. A program that prints figures, not a
 * test.
 *
 *     build/tests/bench_auth [SECONDS_PER_SIZE]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auth.h"

static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    double budget = argc > 1 ? atof(argv[1]) : 1.0;
    struct sila_key key = {.id = 1};
    for (size_t i = 0; i < sizeof key.bytes; i++)
        key.bytes[i] = (uint8_t)(i * 37 + 1);
    static const size_t sizes[] = {256, 4096, 65536, 1u << 20, 4u << 20};
    printf("%10s %14s %12s %14s %12s\n", "bytes", "sign us/msg", "sign MB/s", "verify us/msg",
           "verify MB/s");
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
        size_t len = sizes[s];
        uint8_t *buf = malloc(len + SILA_AUTH_TRAILER);
        if (!buf)
            return 1;
        memset(buf, 0x5a, len);
        struct sila_auth_params ps = {&key, "data-2", false, SILA_AUTH_PAIR, 0, 0};
        struct sila_auth_params pr = {&key, "data-2", true, SILA_AUTH_PAIR, 0, 0};
        struct sila_auth *snd = sila_auth_new(&ps), *rcv = sila_auth_new(&pr);
        long n = 0;
        double sign = 0, verify = 0;
        uint64_t now = sila_auth_now_ms();
        while (sign + verify < budget) {
            double t0 = cpu_s();
            sila_auth_sign(snd, buf, len, now);
            double t1 = cpu_s();
            size_t plen;
            if (sila_auth_verify(rcv, buf, len + SILA_AUTH_TRAILER, now, &plen, NULL)) {
                fprintf(stderr, "bench_auth: a message did not verify\n");
                return 1;
            }
            sign += t1 - t0;
            verify += cpu_s() - t1;
            n++;
        }
        printf("%10zu %14.1f %12.0f %14.1f %12.0f\n", len, 1e6 * sign / n, len * n / sign / 1e6,
               1e6 * verify / n, len * n / verify / 1e6);
        sila_auth_free(snd);
        sila_auth_free(rcv);
        free(buf);
    }
    return 0;
}
