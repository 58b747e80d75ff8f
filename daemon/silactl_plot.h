/* silactl plot METRICS_LOG -o FILE.png|FILE.svg: the loss of every module
 * and the test accuracy of every head over the steps of a run, drawn with
 * gnuplot from the run's metrics.jsonl. */
#ifndef SILA_SILACTL_PLOT_H
#define SILA_SILACTL_PLOT_H

/* argv[0] is "plot". Returns the exit status. */
int silactl_plot(int argc, char **argv);

#endif
