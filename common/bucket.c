/* Token buckets (see bucket.h). */
#include "bucket.h"

void sila_bucket_init(struct sila_bucket *b, double rate, double burst, double now)
{
    if (burst < 1)
        burst = 1;
    *b = (struct sila_bucket){
        .rate = rate > 0 ? rate : 0, .burst = burst, .tokens = burst, .at = now};
}

/* The tokens held at now (a clock that went back adds none). */
static double held(const struct sila_bucket *b, double now)
{
    double t = b->tokens + (now > b->at ? (now - b->at) * b->rate : 0);
    return t < b->burst ? t : b->burst;
}

bool sila_bucket_take(struct sila_bucket *b, double now)
{
    if (b->rate == 0)
        return true;
    double t = held(b, now);
    if (now > b->at)
        b->at = now;
    b->tokens = t;
    if (t < 1)
        return false;
    b->tokens = t - 1;
    return true;
}

double sila_bucket_wait(const struct sila_bucket *b, double now)
{
    if (b->rate == 0)
        return 0;
    double t = held(b, now);
    return t >= 1 ? 0 : (1 - t) / b->rate;
}
