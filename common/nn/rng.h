/* The one random number generator of sila: xoshiro256** seeded through
 * splitmix64. Every random choice (initial weights, data order, augmentation,
 * dropout masks) draws from a sila_rng derived from the job's seed, so the same
 * seed gives the same run. The state is plain data: copying it forks the
 * stream, saving it in a checkpoint saves the stream's position. */
#ifndef SILA_RNG_H
#define SILA_RNG_H

#include <stdint.h>

struct sila_rng {
    uint64_t s[4];
};

/* Seeds r from (seed, stream): distinct streams of one seed are independent. */
void sila_rng_seed(struct sila_rng *r, uint64_t seed, uint64_t stream);
uint64_t sila_rng_u64(struct sila_rng *r);
/* Uniform integer in [0, n), n > 0, without modulo bias. */
uint32_t sila_rng_below(struct sila_rng *r, uint32_t n);
/* Uniform float in [0, 1). */
float sila_rng_uniform(struct sila_rng *r);
/* Standard normal (Box-Muller, one value per call). */
float sila_rng_normal(struct sila_rng *r);
/* Fisher-Yates shuffle of perm[0..n). */
void sila_rng_shuffle(struct sila_rng *r, uint32_t *perm, uint32_t n);

/* One round of a 32-bit integer hash (Wellons' "lowbias32"): a bijection. */
static inline uint32_t sila_hash32(uint32_t x)
{
    x ^= x >> 16;
    x *= 0x7feb352du;
    x ^= x >> 15;
    x *= 0x846ca68bu;
    x ^= x >> 16;
    return x;
}

/* Uniform float in [0, 1) that is a function of (key, i) alone: draw i of a
 * mask drawn in parallel, in any order, by any number of threads (the key
 * comes from one sila_rng_u64 per mask). Distinct i < 2^32 give distinct
 * hashes under one key (two keyed rounds of a bijection). Inline so that
 * a loop over i vectorises. */
static inline float sila_counter_uniform(uint64_t key, uint32_t i)
{
    uint32_t h = sila_hash32(sila_hash32(i + (uint32_t)key) ^ (uint32_t)(key >> 32));
    return (float)(h >> 8) * 0x1.0p-24f;
}

#endif
