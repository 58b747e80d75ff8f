/* Runs a fuzz target over every file of the corpus directories given on
 * the command line, as a TAP test (one case per file): a crash or a
 * sanitizer report fails it. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"

static int replay(const char *path, int *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    static uint8_t buf[1 << 20];
    size_t len = fread(buf, 1, sizeof buf, f);
    fclose(f);
    LLVMFuzzerTestOneInput(buf, len);
    printf("ok %d - %s\n", ++*n, path);
    return 0;
}

int main(int argc, char **argv)
{
    int n = 0;
    for (int i = 1; i < argc; i++) {
        DIR *d = opendir(argv[i]);
        if (!d) {
            printf("not ok %d - cannot open corpus %s\n", ++n, argv[i]);
            return 1;
        }
        struct dirent *e;
        while ((e = readdir(d))) {
            if (e->d_name[0] == '.')
                continue;
            char path[4096];
            snprintf(path, sizeof path, "%s/%s", argv[i], e->d_name);
            if (replay(path, &n)) {
                printf("not ok %d - cannot read %s\n", ++n, path);
                closedir(d);
                return 1;
            }
        }
        closedir(d);
    }
    printf("1..%d\n", n);
    return n ? 0 : 1;
}
