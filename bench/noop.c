/* A stand-in for Spack that does nothing, so a benchmark times only the queue.
 * Called as `noop install SPEC` (the worker runs `<spack> install <spec>`; nq, tsp and
 * the shell loop run the same argv).
 *
 * - With SPACK_BENCH_STAMP_DIR set, it first writes its start time (CLOCK_REALTIME, in
 *   nanoseconds) to $SPACK_BENCH_STAMP_DIR/SPEC.start, for the pick-up latency.
 * - When SPEC is `gate`, it waits until the file $SPACK_BENCH_GATE exists: the job that
 *   holds the queue while the drain benchmark fills it.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    const char *spec = argc > 2 ? argv[argc - 1] : "none";
    const char *dir = getenv("SPACK_BENCH_STAMP_DIR");
    if (dir) {
        char path[4096], buf[64];
        snprintf(path, sizeof path, "%s/%s.start", dir, spec);
        int n = snprintf(buf, sizeof buf, "%lld\n",
                         (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec);
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            if (write(fd, buf, n) < 0) { /* nothing to do */ }
            close(fd);
        }
    }
    if (strcmp(spec, "gate") == 0) {
        const char *gate = getenv("SPACK_BENCH_GATE");
        struct timespec ms = {0, 1000000};
        while (gate && access(gate, F_OK) != 0)
            nanosleep(&ms, NULL);
    }
    return 0;
}
