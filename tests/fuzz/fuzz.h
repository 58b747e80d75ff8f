/* The fuzz targets' one entry point (libFuzzer's): each target feeds one
 * input to a decoder of outside data and must neither crash nor leak. Built
 * with -Dfuzz=true under clang they are libFuzzer programs; otherwise
 * fuzz_replay.c runs them over their corpus as ordinary tests. */
#ifndef SILA_FUZZ_H
#define SILA_FUZZ_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif
