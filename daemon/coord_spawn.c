/* Workers started by silad itself (--spawn): one child process per module
 * range, each started again when it is killed during training (at most
 * MAX_RESPAWNS times), the run failed when one exits with an error. */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "coord_state.h"

#define MAX_RESPAWNS 10 /* per spawned worker: more is a crash loop */

static int spawn_child(struct coord *c, struct child *ch);

/* A child's handle is closed: a lost worker's slot starts a new one. */
static void on_child_closed(uv_handle_t *h)
{
    struct child *ch = h->data;
    struct coord *c = h->loop->data;
    if (!ch->respawn || c->finished)
        return;
    ch->respawn = false;
    ch->respawns++;
    char mods[32];
    printf("starting a new worker for %s (restart %d of at most %d)\n",
           sila_modules_text(ch->first, ch->last, mods, sizeof mods), ch->respawns, MAX_RESPAWNS);
    fflush(stdout);
    int r = spawn_child(c, ch);
    if (r)
        coord_finish(c, r);
}

/* A spawned worker ended. One killed by a signal during training is lost
 * and started again (at most MAX_RESPAWNS times); one that exited with an
 * error failed on its own, for a reason another would meet too (it said
 * which on its control link and its stderr): the run fails. */
static void on_child_exit(uv_process_t *proc, int64_t status, int signum)
{
    struct child *ch = proc->data;
    struct coord *c = proc->loop->data;
    ch->running = false;
    uv_close((uv_handle_t *)proc, on_child_closed);
    if (c->finished || (!status && !signum))
        return;
    char mods[32], why[96];
    sila_modules_text(ch->first, ch->last, mods, sizeof mods);
    if (signum)
        snprintf(why, sizeof why, "was killed by signal %d", signum);
    else
        snprintf(why, sizeof why, "exited with status %lld", (long long)status);
    struct peer *p = c->owner[ch->first] >= 0 ? c->peers[c->owner[ch->first]] : NULL;
    if (p && p->poll) /* its last words first */
        coord_on_peer_readable(p->poll, 0, UV_READABLE);
    if (c->finished)
        return;
    if (!signum || !p || p->pid != (uint32_t)proc->pid || ch->respawns >= MAX_RESPAWNS) {
        coord_fail(c, -ECHILD, "the worker for %s (pid %d) %s%s", mods, proc->pid, why,
                   ch->respawns >= MAX_RESPAWNS ? " (restarted too often)" : "");
        return;
    }
    coord_lose_peer(c, p, why);
    ch->respawn = !c->finished;
}

/* silaworker next to silad (installed, or in the build tree), or $SILAWORKER. */
static int find_worker(char *out, size_t len)
{
    const char *env = getenv("SILAWORKER");
    if (env && *env) {
        snprintf(out, len, "%s", env);
        return access(out, X_OK) == 0 ? 0 : -errno;
    }
    char self[SILA_PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n < 0)
        return -errno;
    self[n] = 0;
    char *slash = strrchr(self, '/');
    *slash = 0;
    static const char *const rel[] = {"silaworker", "../worker/silaworker", "../bin/silaworker"};
    for (size_t i = 0; i < sizeof rel / sizeof *rel; i++) {
        if ((size_t)snprintf(out, len, "%s/%s", self, rel[i]) < len && access(out, X_OK) == 0)
            return 0;
    }
    return -ENOENT;
}

/* The key options of a spawned worker into args (room for 6, NULL-ended). */
static void spawn_auth_args(const struct coord *c, char **args, char *win, size_t len)
{
    int n = 0;
    if (c->o->key) {
        args[n++] = "--key";
        args[n++] = (char *)c->o->key_path;
        if (c->o->encrypt)
            args[n++] = "--encrypt";
    } else if (c->o->insecure) {
        args[n++] = "--insecure";
    }
    if (c->o->auth_window_ms) {
        snprintf(win, len, "%u", (unsigned)(c->o->auth_window_ms / 1000));
        args[n++] = "--auth-window";
        args[n++] = win;
    }
    args[n] = NULL;
}

/* Starts the worker of child slot ch (modules ch->first..ch->last). */
static int spawn_child(struct coord *c, struct child *ch)
{
    char mods[32], thr[16], win[16];
    snprintf(mods, sizeof mods, "%d-%d", ch->first + 1, ch->last + 1);
    snprintf(thr, sizeof thr, "%d", c->worker_threads);
    char *args[16] = {c->worker_exe, "--module",          mods, "--connect",
                      c->base_url,   "--threads",         thr,  "--join-timeout",
                      "60",          "--exit-with-parent"};
    spawn_auth_args(c, args + 10, win, sizeof win);
    uv_stdio_container_t stdio[3] = {{.flags = UV_IGNORE},
                                     {.flags = UV_INHERIT_FD, .data.fd = 1},
                                     {.flags = UV_INHERIT_FD, .data.fd = 2}};
    uv_process_options_t po = {.exit_cb = on_child_exit,
                               .file = c->worker_exe,
                               .args = args,
                               .stdio_count = 3,
                               .stdio = stdio};
    ch->proc.data = ch;
    int r = uv_spawn(&c->loop, &ch->proc, &po);
    if (r)
        return sila_err_set(c->err, -ECHILD, "cannot start %s: %s", c->worker_exe, uv_strerror(r));
    ch->running = true;
    return 0;
}

int coord_spawn_workers(struct coord *c)
{
    if (find_worker(c->worker_exe, sizeof c->worker_exe))
        return sila_err_set(c->err, -ENOENT,
                            "cannot find silaworker next to silad (set "
                            "SILAWORKER to its path)");
    int n = c->o->spawn > c->K ? c->K : c->o->spawn;
    int threads = c->o->threads ? c->o->threads : (c->o->cores / n > 1 ? c->o->cores / n : 1);
    c->worker_threads = threads;
    for (int i = 0; i < n; i++) {
        struct child *ch = &c->children[i];
        ch->first = i * c->K / n;
        ch->last = (i + 1) * c->K / n - 1;
        int r = spawn_child(c, ch);
        if (r)
            return r;
        c->nchildren++;
    }
    printf("started %d local worker%s with %d thread%s each\n", n, n > 1 ? "s" : "", threads,
           threads > 1 ? "s" : "");
    if (n * threads > c->o->cores)
        printf("note: %d workers x %d threads on %d cores; --spawn=%d would not oversubscribe "
               "them\n",
               n, threads, c->o->cores, c->o->cores / threads > 0 ? c->o->cores / threads : 1);
    fflush(stdout);
    return 0;
}
