/* silactl plot: loss and per-head accuracy curves of a run's metrics.jsonl,
 * drawn by gnuplot (see silactl_plot.h). */
#include "silactl_plot.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "job.h"

#define MAX_LINE 65536

/* The number after "key": in line, or NAN when absent or malformed. */
static double number_after(const char *line, const char *key)
{
    const char *p = strstr(line, key);
    if (!p)
        return NAN;
    char *end;
    double v = strtod(p + strlen(key), &end);
    return end == p + strlen(key) ? NAN : v;
}

/* The list after "key":[ ... ] into v (null -> NaN); returns its length or -1. */
static int list_after(const char *line, const char *key, double *v, int max)
{
    const char *p = strstr(line, key);
    if (!p)
        return -1;
    p += strlen(key);
    int n = 0;
    while (*p && *p != ']') {
        if (n == max)
            return -1;
        if (strncmp(p, "null", 4) == 0) {
            v[n++] = NAN;
            p += 4;
        } else {
            char *end;
            v[n++] = strtod(p, &end);
            if (end == p)
                return -1;
            p = end;
        }
        if (*p == ',')
            p++;
    }
    return *p == ']' ? n : -1;
}

/* Writes the step records' losses and the evaluations' accuracies as
 * gnuplot data; *ret_k is the module count, *ret_last the last step. */
static int extract(const char *path, FILE *loss, FILE *acc, int *ret_k, double *ret_last)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "silactl plot: %s: %s\n", path, strerror(errno));
        return -1;
    }
    char *line = malloc(MAX_LINE);
    int lineno = 0, r = 0, k = 0, nloss = 0, nacc = 0;
    while (line && r == 0 && fgets(line, MAX_LINE, f)) {
        lineno++;
        double v[SILA_MAX_MODULES];
        bool step = strstr(line, "\"type\":\"step\"") != NULL;
        bool eval = strstr(line, "\"type\":\"eval\"") != NULL;
        if (!step && !eval)
            continue;
        double s = number_after(line, "\"step\":");
        int n = list_after(line, step ? "\"loss\":[" : "\"accuracy\":[", v, SILA_MAX_MODULES);
        if (isnan(s) || n < 1 || (k && n != k)) {
            fprintf(stderr, "silactl plot: %s:%d: not a step or eval record of sila\n", path,
                    lineno);
            r = -1;
            break;
        }
        k = n;
        *ret_last = s > *ret_last ? s : *ret_last;
        FILE *out = step ? loss : acc;
        fprintf(out, "%.0f", s);
        for (int i = 0; i < n; i++)
            fprintf(out, isnan(v[i]) ? " NaN" : " %.6g", step ? v[i] : 100.0 * v[i]);
        fprintf(out, "\n");
        step ? nloss++ : nacc++;
    }
    if (r == 0 && (!line || nloss + nacc == 0)) {
        fprintf(stderr, "silactl plot: %s: no step or eval records\n", path);
        r = -1;
    }
    free(line);
    fclose(f);
    *ret_k = k;
    return r;
}

static int run_gnuplot(const char *script)
{
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        execlp("gnuplot", "gnuplot", script, (char *)NULL);
        fprintf(stderr,
                "silactl plot: cannot run gnuplot (%s): install it (apt install "
                "gnuplot-nox)\n",
                strerror(errno));
        _exit(127);
    }
    int st;
    if (waitpid(pid, &st, 0) < 0)
        return -1;
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

static int plot(const char *metrics, const char *out)
{
    const char *dot = strrchr(out, '.');
    bool svg = dot && strcmp(dot, ".svg") == 0;
    if (!dot || (!svg && strcmp(dot, ".png") != 0)) {
        fprintf(stderr, "silactl plot: %s: the output must end in .png or .svg\n", out);
        return 2;
    }
    char dir[] = "/tmp/silactl-plot-XXXXXX";
    if (!mkdtemp(dir)) {
        fprintf(stderr, "silactl plot: cannot create a temporary directory: %s\n", strerror(errno));
        return 1;
    }
    char lp[64], ap[64], sp[64];
    snprintf(lp, sizeof lp, "%s/loss.dat", dir);
    snprintf(ap, sizeof ap, "%s/acc.dat", dir);
    snprintf(sp, sizeof sp, "%s/plot.gp", dir);
    FILE *loss = fopen(lp, "w"), *acc = fopen(ap, "w"), *gp = fopen(sp, "w");
    int k = 0;
    double last = 1;
    int r = loss && acc && gp ? extract(metrics, loss, acc, &k, &last) : -1;
    if (loss)
        fclose(loss);
    if (acc)
        fclose(acc);
    if (r == 0 && gp) {
        fprintf(gp, "set terminal %s size 1000,800\nset output '%s'\n",
                svg ? "svg dynamic" : "pngcairo", out);
        fprintf(gp,
                "set multiplot layout 2,1\nset grid\nset key outside right\n"
                "set xlabel 'step'\nset ylabel 'loss'\nset logscale y\n"
                "set xrange [0:%.0f]\n",
                last);
        fprintf(gp,
                "plot for [i=2:%d] '%s' using 1:i with lines title "
                "(i == %d ? 'classifier' : sprintf('module %%d', i - 1))\n",
                k + 1, lp, k + 1);
        fprintf(gp, "unset logscale y\nset ylabel 'test accuracy %%'\n");
        fprintf(gp,
                "plot for [i=2:%d] '%s' using 1:i with linespoints title "
                "(i == %d ? 'classifier' : sprintf('head %%d', i - 1))\n",
                k + 1, ap, k + 1);
        fprintf(gp, "unset multiplot\n");
    }
    if (gp)
        fclose(gp);
    if (r == 0 && (r = run_gnuplot(sp)))
        fprintf(stderr, "silactl plot: gnuplot failed to draw %s\n", out);
    unlink(lp);
    unlink(ap);
    unlink(sp);
    rmdir(dir);
    if (r == 0)
        printf("%s: loss of %d modules and accuracy of every head\n", out, k);
    return r ? 1 : 0;
}

int silactl_plot(int argc, char **argv)
{
    static const struct option longopts[] = {{"output", required_argument, NULL, 'o'}, {0}};
    const char *out = NULL;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "o:", longopts, NULL)) != -1) {
        if (c != 'o')
            return 2;
        out = optarg;
    }
    if (optind + 1 != argc || !out) {
        fprintf(stderr, "usage: silactl plot METRICS_LOG -o curves.png|curves.svg\n");
        return 2;
    }
    return plot(argv[optind], out);
}
