/* The file-system floor for `submit`: the least a durable, atomic drop of one job file
 * into a directory can cost. It does exactly the steps spool-layout.md prescribes for
 * `submit` and nothing else: create a dot-named temp file, write the bytes, fsync it,
 * rename it to its final name, fsync the directory.
 *
 * usage: floor DIR BYTES     (BYTES: the job file's text, as one argument)
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: floor DIR BYTES\n");
        return 2;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    char tmp[128], fin[128];
    snprintf(tmp, sizeof tmp, ".t%lld.%09ld.%d", (long long)ts.tv_sec, ts.tv_nsec, (int)getpid());
    snprintf(fin, sizeof fin, "t%lld.%09ld.%d.toml", (long long)ts.tv_sec, ts.tv_nsec, (int)getpid());
    int dir = open(argv[1], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir < 0) { perror(argv[1]); return 1; }
    int fd = openat(dir, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
    if (fd < 0) { perror("create"); return 1; }
    size_t len = strlen(argv[2]);
    if (write(fd, argv[2], len) != (ssize_t)len) { perror("write"); return 1; }
    if (fsync(fd) != 0) { perror("fsync"); return 1; }
    close(fd);
    if (renameat(dir, tmp, dir, fin) != 0) { perror("rename"); return 1; }
    if (fsync(dir) != 0) { perror("fsync dir"); return 1; }
    return 0;
}
