/* Winograd F(2x2, 3x3) convolution (see winograd.h). With d a 4x4 input
 * tile, g a 3x3 kernel and m the 4x4 product:
 *   V = Bᵀ d B,  U = G g Gᵀ,  M = Σ_c U ⊙ V,  Y = Aᵀ M A (2x2)
 *   Bᵀ = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]
 *   G  = [1 0 0; ½ ½ ½; ½ -½ ½; 0 0 1]
 *   Aᵀ = [1 1 1 0; 0 1 -1 -1]
 * Tile (ty, tx) covers output rows 2ty, 2ty+1 and columns 2tx, 2tx+1, and
 * reads input rows 2ty-1 .. 2ty+2 (zero outside the image). Scratch: V
 * (16, C, T) then M (16, OC, T), T = tiles of the chunk. */
#include "winograd.h"

#include <cblas.h>

/* Below these channel counts the products are too thin for sgemm. */
#define WINO_MIN_CHANNELS 16
/* Smaller planes lose more to the tiles' half-empty edges and their
 * transforms than the products save (64 channels at 7x7: 6.0 ms forward
 * at batch 128 against 4.5 ms by im2col; at 14x14: 8.9 against 13.1). */
#define WINO_MIN_PLANE 100
/* Tiles per chunk the chunking aims at: enough columns for sgemm, few
 * enough for the caches (196 measured best of 196, 512 and 1024). */
#define WINO_TARGET_TILES 196

bool sila_wino_applies(const struct sila_conv_geom *g)
{
    return g->K == 3 && g->stride == 1 && g->pad == 1 && g->C >= WINO_MIN_CHANNELS &&
           g->OC >= WINO_MIN_CHANNELS && g->H * g->W >= WINO_MIN_PLANE;
}

static int tiles_h(const struct sila_conv_geom *g)
{
    return (g->H + 1) / 2;
}

static int tiles_w(const struct sila_conv_geom *g)
{
    return (g->W + 1) / 2;
}

int sila_wino_chunk_samples(const struct sila_conv_geom *g)
{
    int per = tiles_h(g) * tiles_w(g);
    int nb = WINO_TARGET_TILES / per;
    if (nb < 1)
        nb = 1;
    return nb > g->B ? g->B : nb;
}

size_t sila_wino_thread_floats(const struct sila_conv_geom *g)
{
    size_t T = (size_t)sila_wino_chunk_samples(g) * tiles_h(g) * tiles_w(g);
    return 16 * T * ((size_t)g->C + g->OC);
}

void sila_wino_kernel(float *u, const float *w, int OC, int C)
{
    const size_t plane = (size_t)OC * C;
    for (int oc = 0; oc < OC; oc++)
        for (int c = 0; c < C; c++) {
            const float *k = w + ((size_t)oc * C + c) * 9;
            float t[4][3]; /* G g: 4 rows of 3 */
            for (int j = 0; j < 3; j++) {
                float g0 = k[j], g1 = k[3 + j], g2 = k[6 + j];
                t[0][j] = g0;
                t[1][j] = 0.5f * (g0 + g1 + g2);
                t[2][j] = 0.5f * (g0 - g1 + g2);
                t[3][j] = g2;
            }
            for (int i = 0; i < 4; i++) { /* (G g) Gᵀ */
                float g0 = t[i][0], g1 = t[i][1], g2 = t[i][2];
                float *dst = u + (size_t)oc * C + c;
                dst[(i * 4 + 0) * plane] = g0;
                dst[(i * 4 + 1) * plane] = 0.5f * (g0 + g1 + g2);
                dst[(i * 4 + 2) * plane] = 0.5f * (g0 - g1 + g2);
                dst[(i * 4 + 3) * plane] = g2;
            }
        }
}

/* The 4x4 input tile at (ty, tx) of one plane, zero outside it. */
static void load_tile(float d[4][4], const float *plane, int H, int W, int ty, int tx)
{
    for (int i = 0; i < 4; i++) {
        int y = 2 * ty - 1 + i;
        for (int j = 0; j < 4; j++) {
            int x = 2 * tx - 1 + j;
            d[i][j] = y >= 0 && y < H && x >= 0 && x < W ? plane[y * W + x] : 0.0f;
        }
    }
}

/* V[ξ] (stride vs between positions) <- Bᵀ d B. */
static void input_transform(float *v, size_t vs, float d[4][4])
{
    float t[4][4];
    for (int j = 0; j < 4; j++) {
        t[0][j] = d[0][j] - d[2][j];
        t[1][j] = d[1][j] + d[2][j];
        t[2][j] = d[2][j] - d[1][j];
        t[3][j] = d[1][j] - d[3][j];
    }
    for (int i = 0; i < 4; i++) {
        v[(i * 4 + 0) * vs] = t[i][0] - t[i][2];
        v[(i * 4 + 1) * vs] = t[i][1] + t[i][2];
        v[(i * 4 + 2) * vs] = t[i][2] - t[i][1];
        v[(i * 4 + 3) * vs] = t[i][1] - t[i][3];
    }
}

/* y (2x2) <- Aᵀ m A, m read at stride ms between positions. */
static void output_transform(float y[2][2], const float *m, size_t ms)
{
    float t[2][4];
    for (int j = 0; j < 4; j++) {
        float m0 = m[(0 * 4 + j) * ms], m1 = m[(1 * 4 + j) * ms];
        float m2 = m[(2 * 4 + j) * ms], m3 = m[(3 * 4 + j) * ms];
        t[0][j] = m0 + m1 + m2;
        t[1][j] = m1 - m2 - m3;
    }
    for (int i = 0; i < 2; i++) {
        y[i][0] = t[i][0] + t[i][1] + t[i][2];
        y[i][1] = t[i][1] - t[i][2] - t[i][3];
    }
}

void sila_wino_chunk(float *out, const float *in, const float *u, const float *b,
                     const struct sila_conv_geom *g, float *scratch, int b0, int nb)
{
    const int th = tiles_h(g), tw = tiles_w(g), per = th * tw;
    const size_t T = (size_t)nb * per, C = (size_t)g->C, OC = (size_t)g->OC;
    const size_t hw = (size_t)g->H * g->W;
    float *v = scratch, *m = scratch + 16 * C * T;
    for (int i = 0; i < nb; i++)
        for (size_t c = 0; c < C; c++) {
            const float *plane = in + ((size_t)(b0 + i) * C + c) * hw;
            for (int ty = 0; ty < th; ty++)
                for (int tx = 0; tx < tw; tx++) {
                    float d[4][4];
                    load_tile(d, plane, g->H, g->W, ty, tx);
                    input_transform(v + c * T + (size_t)i * per + ty * tw + tx, C * T, d);
                }
        }
    /* M[ξ] (OC, T) = U[ξ] (OC, C) · V[ξ] (C, T) */
    for (int xi = 0; xi < 16; xi++)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)OC, (int)T, (int)C, 1.0f,
                    u + xi * OC * C, (int)C, v + xi * C * T, (int)T, 0.0f, m + xi * OC * T,
                    (int)T);
    for (int i = 0; i < nb; i++)
        for (size_t oc = 0; oc < OC; oc++) {
            float *plane = out + ((size_t)(b0 + i) * OC + oc) * hw;
            const float bias = b ? b[oc] : 0.0f;
            for (int ty = 0; ty < th; ty++)
                for (int tx = 0; tx < tw; tx++) {
                    float y[2][2];
                    output_transform(y, m + oc * T + (size_t)i * per + ty * tw + tx, OC * T);
                    for (int r = 0; r < 2 && 2 * ty + r < g->H; r++)
                        for (int s = 0; s < 2 && 2 * tx + s < g->W; s++)
                            plane[(2 * ty + r) * g->W + 2 * tx + s] = y[r][s] + bias;
                }
        }
}
