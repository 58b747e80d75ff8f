/* How many threads the numerical kernels use. A program calls this once,
 * before it builds any net: the kernels share each batch among OpenMP
 * threads and call sgemm from them, so OpenBLAS is set single-threaded
 * here. Together they never run more than the threads given. */
#ifndef SILA_THREADS_H
#define SILA_THREADS_H

/* Sets the kernel threads to `requested`, or when it is 0 to
 * OPENBLAS_NUM_THREADS or OMP_NUM_THREADS if set, else to the number of
 * cores. Returns the count in force. */
int sila_threads_setup(int requested);

#endif
